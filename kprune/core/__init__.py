"""kprune's core: the layer graph, dependency groups, per-layer handlers,
channel surgery, profiles and complexity weights.

The core knows Keras layers and nothing of pruning methods: it imports
nothing from kprune outside this package (`tests/test_layering.py` checks),
and every use of Keras/TensorFlow private API lives in `kprune.compat.keras_private`.

Example:
    >>> from kprune.core import analyze, remove_channels
    >>> groups = analyze(model).groups
    >>> smaller = remove_channels(model, {"conv1": [0, 3]})
"""

from kprune.core.class_restore import inlined_reasons
from kprune.core.dependency import Analysis, Group, analyze, dependency_groups
from kprune.core.handlers import ChannelHandler, register_handler, unregister_handler
from kprune.core.profile import LayerProfile, Profile, profile
from kprune.core.surgery import masked_reference, remove_channels

__all__ = ["Analysis", "ChannelHandler", "Group", "LayerProfile", "Profile", "analyze",
           "dependency_groups", "inlined_reasons", "masked_reference", "profile", "register_handler",
           "remove_channels", "unregister_handler"]
