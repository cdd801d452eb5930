"""Pruning methods behind `kprune.prune`: ILP, IAP, AIAP and the
complexity-driven method, registered in `registry.METHODS` when this package
is imported; `run.Run` is the loop they drive.

Example:
    >>> from kprune.methods import METHODS
    >>> sorted(METHODS)
    ['aiap', 'complexity', 'iap', 'ilp']
"""

from kprune.methods.registry import METHODS, MethodDefaults, get_method, register_method
from kprune.methods import aiap, complexity, iap, ilp  # noqa: F401,E402  (register)

__all__ = ["METHODS", "MethodDefaults", "get_method", "register_method"]
