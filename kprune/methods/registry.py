"""Registry of pruning methods that `kprune.prune(method=...)` dispatches to.

A method is one record (`Method`): its function ``fn(run)`` (driving a
`kprune.methods.run.Run`), its options record (a
`kprune.methods.options.MethodOptions` dataclass with its defaults and
``validate()``) and its `MethodDefaults` for the run's target. ``kprune.prune``
accepts the common `RunOptions` plus the method's own options, nothing else;
the command line (``kprune prune --help``, flag --method) lists whatever is registered.

Third-party methods register on import; name their modules in the
``KPRUNE_PLUGINS`` environment variable (comma-separated) or in the
``kprune.methods`` entry-point group, and `load_plugins` imports them (the
CLI does, before it builds ``--method``).

Example:
    >>> @dataclasses.dataclass(frozen=True)
    ... class MyOptions(MethodOptions):
    ...     temperature: float = 1.0
    >>> @register_method("my_method", options=MyOptions)
    ... def my_method(run):
    ...     t = run.method_options.temperature
    ...     return run.finish("nothing to do")
"""

import dataclasses
import importlib
import os
from typing import Any, Callable, Dict, Optional, Tuple, Type

from kprune.methods.options import MethodOptions, RunOptions


@dataclasses.dataclass(frozen=True)
class MethodDefaults:
    """What a method sets for the run's target when the user gives none."""

    target: Optional[Tuple[str, float]] = ("accuracy_loss", 0.01)
    #: how a bare-number target reads for this method
    number_means: str = "accuracy_loss"
    #: whether ``target_arena_bytes`` / ``target_latency_ms`` become the run's
    #: `Target` (iterative methods) or are read by the method itself
    budget_targets: bool = True


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: name, function, options record, defaults."""

    name: str
    fn: Callable
    options: Type[MethodOptions]
    defaults: MethodDefaults

    @property
    def summary(self) -> str:
        """The first line of the function's docstring (for ``--help``)."""
        doc = (self.fn.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name

    def __call__(self, run):
        return self.fn(run)


#: name -> `Method`
METHODS: Dict[str, Method] = {}


def _options_class(name, options) -> Type[MethodOptions]:
    if options is None:
        return dataclasses.make_dataclass(f"{name}_options", [], bases=(MethodOptions,),
                                          frozen=True)
    if isinstance(options, dict):  # {option: default}: a record without checks
        for k in options:
            if not isinstance(k, str) or not k.isidentifier():
                raise ValueError(f"options of method {name!r}: {k!r} is not a valid option "
                                 "name (a Python identifier)")
        fields = [(k, Any, dataclasses.field(default=v)) for k, v in options.items()]
        return dataclasses.make_dataclass(f"{name}_options", fields, bases=(MethodOptions,),
                                          frozen=True)
    if isinstance(options, type) and issubclass(options, MethodOptions) and \
            dataclasses.is_dataclass(options):
        return options
    raise TypeError(f"options of method {name!r} must be a MethodOptions dataclass (or a "
                    f"dict {{option: default}}), got {options!r}")


def register_method(name: str, fn: Callable = None, *, options=None,
                    defaults: Optional[MethodDefaults] = None, replace: bool = False):
    """Register `fn` as method `name` (usable as a decorator), with its
    `options` record (a `MethodOptions` dataclass, or a dict ``{option:
    default}``) and its `defaults` for the target.

    An option name that the common `RunOptions` already has is refused (it
    would be ambiguous).

    Example:
        >>> @register_method("ilp", options=ILPOptions)
        ... def ilp(run): ...
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a method name must be an identifier string, got {name!r}")
    if defaults is not None and not isinstance(defaults, MethodDefaults):
        raise TypeError(f"defaults must be a MethodDefaults, got {defaults!r}")
    cls = _options_class(name, options)
    clash = sorted(set(cls.names()) & set(RunOptions.names()))
    if clash:
        raise ValueError(f"options {clash} of method {name!r} are common options of every "
                         "method (RunOptions); give them other names")

    def deco(f):
        if not callable(f):
            raise TypeError(f"method {name!r} must be a callable fn(run), got {f!r}")
        if name in METHODS and not replace and METHODS[name].fn is not f:
            raise ValueError(f"a pruning method named {name!r} is already registered "
                             "(pass replace=True to override it)")
        METHODS[name] = Method(name, f, cls, defaults or MethodDefaults())
        return f

    return deco(fn) if fn is not None else deco


def unregister_method(name: str):
    """Remove method `name` (a test or plugin cleaning up after itself)."""
    METHODS.pop(name, None)


def get_method(name: str) -> Method:
    """The method registered as `name`; ValueError listing the known ones.

    The built-in methods register when `kprune.methods` is imported (as
    `kprune.prune` does)."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown pruning method {name!r}; known methods: {sorted(METHODS)}")
    return METHODS[name]


def method_options(name: str) -> Dict[str, Any]:
    """{option: default} of the options only method `name` takes."""
    return get_method(name).options.defaults()


def method_defaults(name: str) -> MethodDefaults:
    """Method `name`'s target defaults."""
    return get_method(name).defaults


def owners_of(option: str):
    """Names of the registered methods whose own record declares `option`."""
    return sorted(m.name for m in METHODS.values() if option in m.options.names())


def load_plugins(env: str = "KPRUNE_PLUGINS"):
    """Import the third-party method modules named in the `env` variable
    (comma-separated) and the ``kprune.methods`` entry points; returns the
    names imported. An unimportable module is an ImportError naming it."""
    names = [m.strip() for m in os.environ.get(env, "").split(",") if m.strip()]
    loaded = []
    for mod in names:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ImportError(f"{env}: cannot import the method plugin {mod!r} ({e}); fix "
                              f"the module name or PYTHONPATH, or unset {env}") from e
        loaded.append(mod)
    from importlib.metadata import entry_points

    for ep in entry_points(group="kprune.methods"):
        try:
            ep.load()
        except Exception as e:
            raise ImportError(f"the 'kprune.methods' entry point {ep.name!r} ({ep.value}) "
                              f"failed to load: {e}; fix or uninstall that package") from e
        loaded.append(ep.name)
    return loaded
