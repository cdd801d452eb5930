"""Argument checks shared by the option records: each returns the value
normalized or raises with a message that names the argument and the fix.

Example:
    >>> check_int("rounds", 5, 1)
    5
    >>> check_fraction("rate", 0.2)
    0.2
"""

import numbers

import keras
import numpy as np

from kprune.compat.keras_private import all_layers
from kprune.compat.tf_keras_bridge import require_model
from kprune.core.composite import functional_view
from kprune.core.graph import Graph, functional_of


def check_model(model, what="model"):
    """A built Functional or Sequential Keras 3 model, or a clear error."""
    require_model(model, what, allow_tf_keras=False)
    functional_of(model)  # subclassed / unbuilt models: ValueError with the fix
    if not model.outputs:
        raise ValueError(f"{what} '{model.name}' has no outputs; build it with "
                         "keras.Model(inputs, outputs)")
    for layer in all_layers(model):
        for w in layer.weights:
            values = keras.ops.convert_to_numpy(w)
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                raise ValueError(
                    f"{what}: weight '{w.path}' of layer '{layer.name}' holds "
                    f"{int((~np.isfinite(values)).sum())} NaN or infinite value(s); "
                    "training diverged or the file is damaged: reload a good checkpoint "
                    "(or lower the learning rate and train again) before pruning")


def check_int(name, value, minimum, allow_none=False, fix=""):
    """`value` as an int >= `minimum` (bools and floats refused)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} "
                        f"({type(value).__name__}){fix}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}{fix}")
    return int(value)


def check_fraction(name, value, low_open=True, high_closed=False, fix=""):
    """`value` as a float in (0, 1) (or (0, 1] with `high_closed`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){fix}")
    v = float(value)
    ok = (v > 0 if low_open else v >= 0) and (v <= 1 if high_closed else v < 1)
    if not ok:
        interval = ("(" if low_open else "[") + "0, 1" + ("]" if high_closed else ")")
        raise ValueError(f"{name} must be in {interval}, got {value}{fix}")
    return v


def check_positive(name, value, fix=""):
    """`value` as a positive finite float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r}{fix}")
    if not (float(value) > 0 and float(value) < float("inf")):
        raise ValueError(f"{name} must be a positive number, got {value!r}{fix}")
    return float(value)


def check_nonnegative(name, value, fix=""):
    """`value` as a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number >= 0{fix}, got {value!r}")
    if not 0 <= float(value) < float("inf"):
        raise ValueError(f"{name} must be a number >= 0{fix}, got {value!r}")
    return float(value)


def check_path(name, value):
    """`value` as a str path, or None; other types are a TypeError."""
    import os

    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a directory path (str or os.PathLike) or None, got "
                        f"{value!r} ({type(value).__name__})")
    return os.fspath(value)


def check_callable(name, value, signature):
    """`value` when callable (or None); otherwise a TypeError showing `signature`."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable {signature}, got {value!r}")
    return value


def check_bool(name, value):
    """`value` if it is True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name, value, choices, help_text):
    """`value` if it is one of `choices`, else ValueError with `help_text`."""
    try:
        ok = value in choices
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be {help_text}, got {value!r}")
    return value


def layer_names(model, names, arg):
    """`names` (a name or a list of names) checked against the model's layers.

    A bare string is one name, not a list of characters. Each name must be a
    layer of `model` (a nested layer may be given by its path ``'sub/conv'``,
    a layer inside a traced composite layer too: ``'block/conv1'``).
    """
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    try:
        names = list(names)
    except TypeError:
        raise TypeError(f"{arg} must be a layer name or a list of layer names, "
                        f"got {names!r}") from None
    graph, traced = Graph.from_model(model), None
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{arg} must hold layer names (strings), got {n!r}")
        try:
            graph.find_layer(n)
        except ValueError as e:
            # maybe a layer inside a composite layer: analysis sees the traced view
            traced = traced or Graph.from_model(functional_view(model))
            try:
                traced.find_layer(n)
            except ValueError:
                raise ValueError(f"{arg}: {e}") from None
    return names
