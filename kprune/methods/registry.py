"""Registry of pruning methods that `kprune.prune(method=...)` dispatches to.

A method is a function ``fn(ctx)`` taking a `kprune.methods.context.PruneContext`
(data, options, training/evaluation/checkpoint helpers) that runs its rounds
through ``ctx.run_round`` / ``ctx.commit`` and finally calls ``ctx.finish``.

A method may declare options of its own (with their defaults) beside the
ones every method understands (`kprune.methods.context.DEFAULT_OPTIONS`);
``kprune.prune`` accepts a method's own options for that method only.

Example:
    >>> from kprune.methods.registry import register_method
    >>> @register_method("my_method", options={"temperature": 1.0})
    ... def my_method(ctx):
    ...     t = ctx.opts["temperature"]
"""

from typing import Any, Callable, Dict, Optional

METHODS: Dict[str, Callable] = {}
#: method name -> {option: default} of the options only that method takes.
METHOD_OPTIONS: Dict[str, Dict[str, Any]] = {}


def register_method(name: str, fn: Callable = None, *, options: Optional[Dict] = None,
                    replace: bool = False):
    """Register `fn` as method `name` (usable as a decorator), with the
    `options` (name -> default) that only this method takes.

    Example:
        >>> @register_method("ilp")
        ... def ilp(ctx): ...
    """
    def deco(f):
        if name in METHODS and not replace and METHODS[name] is not f:
            raise ValueError(f"a pruning method named {name!r} is already registered "
                             "(pass replace=True to override it)")
        METHODS[name] = f
        METHOD_OPTIONS[name] = dict(options or {})
        return f

    return deco(fn) if fn is not None else deco


def method_options(name: str) -> Dict[str, Any]:
    """{option: default} of the options only method `name` takes."""
    get_method(name)
    return dict(METHOD_OPTIONS.get(name, {}))


def owners_of(option: str):
    """Names of the registered methods that declare `option` as their own."""
    return sorted(m for m, opts in METHOD_OPTIONS.items() if option in opts)


def get_method(name: str) -> Callable:
    """The method registered as `name`; ValueError listing the known ones."""
    import kprune.methods  # noqa: F401  (registers built-ins)

    if name not in METHODS:
        raise ValueError(f"unknown pruning method {name!r}; known methods: {sorted(METHODS)}")
    return METHODS[name]
