"""kprune: structured (channel) pruning for Keras 3 models.

Layout (the data path): `kprune.core` (graph, dependency groups, handlers,
surgery, profile) -> `kprune.scoring` (criteria, activation recording) ->
`kprune.methods` (the run loop, checkpoints, ILP / IAP / AIAP / complexity)
-> `kprune.reporting` (result, plots, TensorBoard); `kprune.export` and
`kprune.bench` sit beside the core; `kprune.cli` on top.
"""

from kprune.core.class_restore import inlined_reasons
from kprune.core.dependency import Group, analyze, dependency_groups
from kprune.core.handlers import ChannelHandler, register_handler, unregister_handler
from kprune.core.profile import LayerProfile, Profile, profile
from kprune.core.surgery import masked_reference, remove_channels
from kprune.methods.callbacks import LambdaRoundCallback, RoundCallback
from kprune.prune import prune
from kprune.reporting.result import PruneResult
from kprune import bench, compat, export, scoring  # noqa: E402  (light: runtimes load on use)

__version__ = "0.1.0"

__all__ = [
    "ChannelHandler", "Group", "LambdaRoundCallback", "LayerProfile", "Profile",
    "PruneResult", "RoundCallback", "analyze", "bench", "compat", "dependency_groups",
    "export", "inlined_reasons", "masked_reference", "profile", "prune", "register_handler", "remove_channels",
    "scoring", "unregister_handler",
]
