"""kprune: structured (channel) pruning for Keras 3 models."""

from kprune.dependency import Group, analyze, dependency_groups
from kprune.handlers import ChannelHandler, register_handler, unregister_handler
from kprune.profile import LayerProfile, Profile, profile
from kprune.prune import prune
from kprune.result import PruneResult
from kprune.surgery import masked_reference, remove_channels
from kprune import bench, compat, export  # noqa: E402  (light: runtimes load on use)

__version__ = "0.1.0"

__all__ = [
    "ChannelHandler", "Group", "bench", "compat", "export", "LayerProfile", "Profile", "PruneResult", "analyze",
    "dependency_groups", "masked_reference", "profile", "prune", "register_handler",
    "remove_channels",
    "unregister_handler",
]
