"""Pruning methods behind `kprune.prune`: ILP, IAP, AIAP (and, when
installed, the complexity-driven method), registered in `registry.METHODS`."""

from kprune.methods.registry import METHODS, get_method, register_method
from kprune.methods import ilp, iap, aiap  # noqa: F401  (register)

try:  # the complexity-driven method registers itself when present
    from kprune.methods import complexity  # noqa: F401
except ImportError:
    pass

__all__ = ["METHODS", "get_method", "register_method"]
