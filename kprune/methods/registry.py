"""Registry of pruning methods that `kprune.prune(method=...)` dispatches to.

A method is a function ``fn(run)`` taking a `kprune.methods.run.Run` (the
run's config, data, trainer, state and checkpoint) that drives its rounds
with ``run.propose`` / ``run.try_round`` / ``run.commit`` and ends with
``run.finish(reason)``.

A method declares the options only it takes (with their defaults) and its
defaults for the common options (`MethodDefaults`); ``kprune.prune`` accepts a
method's own options for that method only.

Example:
    >>> from kprune.methods.registry import register_method
    >>> @register_method("my_method", options={"temperature": 1.0})
    ... def my_method(run):
    ...     t = run.method_options["temperature"]
    ...     return run.finish("nothing to do")
"""

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

METHODS: Dict[str, Callable] = {}
#: method name -> {option: default} of the options only that method takes.
METHOD_OPTIONS: Dict[str, Dict[str, Any]] = {}


@dataclasses.dataclass(frozen=True)
class MethodDefaults:
    """What a method sets for common options the user left unset."""

    criterion: str = "l1"
    allocation: str = "layer"
    target: Optional[Tuple[str, float]] = ("accuracy_loss", 0.01)
    #: how a bare-number target reads for this method
    number_means: str = "accuracy_loss"
    #: whether ``target_arena_bytes`` / ``target_latency_ms`` become the run's
    #: `Target` (iterative methods) or are read by the method itself
    budget_targets: bool = True


METHOD_DEFAULTS: Dict[str, MethodDefaults] = {}


def register_method(name: str, fn: Callable = None, *, options: Optional[Dict] = None,
                    defaults: Optional[MethodDefaults] = None, replace: bool = False):
    """Register `fn` as method `name` (usable as a decorator), with the
    `options` (name -> default) that only this method takes and its
    `defaults` for the common ones.

    Example:
        >>> @register_method("ilp", defaults=MethodDefaults(criterion="l1"))
        ... def ilp(run): ...
    """
    if defaults is not None and not isinstance(defaults, MethodDefaults):
        raise TypeError(f"defaults must be a MethodDefaults, got {defaults!r}")

    def deco(f):
        if name in METHODS and not replace and METHODS[name] is not f:
            raise ValueError(f"a pruning method named {name!r} is already registered "
                             "(pass replace=True to override it)")
        METHODS[name] = f
        METHOD_OPTIONS[name] = dict(options or {})
        METHOD_DEFAULTS[name] = defaults or MethodDefaults()
        return f

    return deco(fn) if fn is not None else deco


def method_options(name: str) -> Dict[str, Any]:
    """{option: default} of the options only method `name` takes."""
    get_method(name)
    return dict(METHOD_OPTIONS.get(name, {}))


def method_defaults(name: str) -> MethodDefaults:
    """Method `name`'s defaults for the common options."""
    get_method(name)
    return METHOD_DEFAULTS.get(name, MethodDefaults())


def owners_of(option: str):
    """Names of the registered methods that declare `option` as their own."""
    return sorted(m for m, opts in METHOD_OPTIONS.items() if option in opts)


def get_method(name: str) -> Callable:
    """The method registered as `name`; ValueError listing the known ones.

    The built-in methods register when `kprune.methods` is imported (as
    `kprune.prune` does)."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown pruning method {name!r}; known methods: {sorted(METHODS)}")
    return METHODS[name]
