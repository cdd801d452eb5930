"""Registry of pruning methods that `kprune.prune(method=...)` dispatches to.

A method is a function ``fn(ctx)`` taking a `kprune.methods.context.PruneContext`
(data, options, training/evaluation/checkpoint helpers) that runs its rounds
through ``ctx.run_round`` / ``ctx.commit`` and finally calls ``ctx.finish``.

Example:
    >>> from kprune.methods.registry import register_method
    >>> @register_method("my_method")
    ... def my_method(ctx):
    ...     ...
"""

from typing import Callable, Dict

METHODS: Dict[str, Callable] = {}


def register_method(name: str, fn: Callable = None, *, replace: bool = False):
    """Register `fn` as method `name` (usable as a decorator).

    Example:
        >>> @register_method("ilp")
        ... def ilp(ctx): ...
    """
    def deco(f):
        if name in METHODS and not replace and METHODS[name] is not f:
            raise ValueError(f"a pruning method named {name!r} is already registered "
                             "(pass replace=True to override it)")
        METHODS[name] = f
        return f

    return deco(fn) if fn is not None else deco


def get_method(name: str) -> Callable:
    """The method registered as `name`; ValueError listing the known ones."""
    import kprune.methods  # noqa: F401  (registers built-ins)

    if name not in METHODS:
        raise ValueError(f"unknown pruning method {name!r}; known methods: {sorted(METHODS)}")
    return METHODS[name]
