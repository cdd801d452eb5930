"""Checks of `kprune.prune`'s arguments, run once before any training.

Every check raises with a message that names the argument (or layer) and says
what to pass instead, so a mistake costs seconds, not a retraining run.

Example:
    >>> opts = check_prune_arguments(model, epochs=1, rounds=5,
    ...                              options={"ignored_layers": "conv1"})
    >>> opts["ignored_layers"]
    ['conv1']
"""

import numbers
from typing import Dict

import keras

from kprune.graph import Graph, functional_of


def check_model(model, what="model"):
    """A built Functional or Sequential Keras 3 model, or a clear error."""
    if not isinstance(model, keras.Model):
        kind = type(model).__module__.split(".")[0]
        hint = (" (a tf_keras / Keras 2 model: convert it with "
                "kprune.compat.from_tf_keras, or save and load it with Keras 3)"
                if kind in ("tf_keras", "keras") else "")
        raise TypeError(f"{what} must be a keras.Model, got {type(model).__name__}{hint}")
    functional_of(model)  # subclassed / unbuilt models: ValueError with the fix
    if not model.outputs:
        raise ValueError(f"{what} '{model.name}' has no outputs; build it with "
                         "keras.Model(inputs, outputs)")


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


def layer_names(model, names, arg):
    """`names` (a name or a list of names) checked against the model's layers.

    A bare string is one name, not a list of characters. Each name must be a
    layer of `model` (a nested layer may be given by its path ``'sub/conv'``).
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
    graph = Graph.from_model(model)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{arg} must hold layer names (strings), got {n!r}")
        try:
            graph.find_layer(n)
        except ValueError as e:
            raise ValueError(f"{arg}: {e}") from None
    return names


def check_prune_arguments(model, epochs, rounds, options) -> Dict:
    """Validate `kprune.prune` arguments; returns `options` normalized.

    Checks the model kind, `epochs` / `rounds` and every option kprune reads
    whose value can be wrong on its own (integers, fractions, layer names).
    Options of other kinds are left to the method.
    """
    check_model(model)
    if len(model.outputs) > 1:
        raise ValueError(
            f"model '{model.name}' has {len(model.outputs)} outputs; kprune.prune decides on "
            "the top-1 accuracy of one output, so prune a single-output model (e.g. "
            "keras.Model(model.inputs, model.outputs[0])) and reattach the other heads "
            "afterwards, or use kprune.remove_channels, which handles any number of outputs")
    check_int("epochs", epochs, 1,
              fix="; it is the number of retraining epochs per round (complexity: training "
                  "epochs of the pruned model), so at least 1")
    check_int("rounds", rounds, 1, fix="; pass the number of pruning rounds, e.g. rounds=5")
    opts = dict(options)
    for key, minimum in (("batch_size", 1), ("calibration_samples", 1), ("min_channels", 1),
                         ("pretrain_epochs", 0), ("patience", 0), ("max_retries", 0),
                         ("rewind_epoch", 1), ("finetune_epochs", 0)):
        if key in opts:
            opts[key] = check_int(key, opts[key], minimum)
    if opts.get("round_to") is not None:
        opts["round_to"] = check_int("round_to", opts["round_to"], 1)
    if opts.get("seed") is not None:
        opts["seed"] = check_int("seed", opts["seed"], 0, fix="; or seed=None for no seeding")
    if "rate" in opts:
        opts["rate"] = check_fraction("rate", opts["rate"],
                                      fix="; the fraction of each group removed per round")
    for key, fix in (("max_round_fraction", "; None for no per-round cap"),
                     ("max_round_reduction", "; None for the default 0.5, 1.0 for no cap")):
        if opts.get(key) is not None:
            opts[key] = check_fraction(key, opts[key], high_closed=True, fix=fix)
    if "validation_split" in opts:
        opts["validation_split"] = check_fraction("validation_split", opts["validation_split"])
    if opts.get("p") is not None:
        p = opts["p"]
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p > 0:
            raise ValueError(f"p must be a positive number (the activation power), got {p!r}")
    if "ignored_layers" in opts:
        opts["ignored_layers"] = layer_names(model, opts["ignored_layers"], "ignored_layers")
    mf = opts.get("max_fraction")
    if isinstance(mf, dict):
        layer_names(model, list(mf), "max_fraction")
        opts["max_fraction"] = {k: check_fraction(f"max_fraction['{k}']", v, low_open=False,
                                                  high_closed=True) for k, v in mf.items()}
    elif mf is not None:
        opts["max_fraction"] = check_fraction("max_fraction", mf, low_open=False,
                                              high_closed=True,
                                              fix="; or a dict {layer name: fraction}")
    return opts
