"""The identity of a pruning run, used to decide whether an ``out_dir`` may be
resumed: the model's architecture *and weights*, a digest of the data, and the
run's settings, all in values that are stable across processes.

Auto-generated layer names (``flatten_3``) and memory addresses in reprs
(``<function f at 0x7f...>``) are left out, so the same run started again in
a new process resumes; other weights or other data never do.

Example:
    >>> fp = run_fingerprint(model, "iap", opts, epochs=1, rounds=5,
    ...                      target=("accuracy_loss", 0.01), data=[train, val])
    >>> len(fp)
    16
"""

import hashlib
import json
import re

import numpy as np

from kprune.compat.keras_private import all_layers, first_output_shapes

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def stable(value):
    """A JSON-able, process-independent form of an option value."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): stable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [stable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, np.ndarray):
        return {"array": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16],
                "shape": list(value.shape)}
    get_config = getattr(value, "get_config", None)
    if callable(get_config):
        try:
            return {"class": _qualname(type(value)), "config": stable(get_config())}
        except Exception:  # noqa: BLE001 - fall back to the class name
            pass
    if callable(value):
        return {"callable": _qualname(value)}
    return _ADDRESS.sub("", repr(value))


def _qualname(obj):
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def weights_digest(model) -> str:
    """sha256 over every weight array of `model` (shape, dtype and bytes)."""
    h = hashlib.sha256()
    for w in model.weights:
        a = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def architecture(model):
    """Layer classes and output shapes in order (no auto-generated names)."""
    out = []
    for layer in all_layers(model):
        try:
            shape = first_output_shapes(layer)
        except Exception:  # noqa: BLE001
            shape = None
        out.append([type(layer).__name__, stable(shape)])
    return out


def data_digest(data) -> str:
    """A digest of a `kprune.data.Data`: all numpy bytes; for datasets, the
    first batch and the cardinality (they may be too large to read twice)."""
    from kprune import data as training

    if data is None:
        return "none"
    h = hashlib.sha256(data.kind.encode())
    if data.kind == "numpy":
        import tensorflow as tf

        for a in tf.nest.flatten(data.x) + (tf.nest.flatten(data.y) if data.y is not None else []):
            a = np.asarray(a)
            h.update(f"{a.shape}{a.dtype}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()
    x, y = training.first_batch(data)
    import tensorflow as tf

    for a in tf.nest.flatten(x) + (tf.nest.flatten(y) if y is not None else []):
        a = np.asarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    if data.kind == "dataset":
        h.update(str(int(data.source.cardinality())).encode())
    else:
        h.update(str(len(data.source)).encode())
    return h.hexdigest()


def run_fingerprint(model, method, opts, epochs, rounds, target, data=()) -> str:
    """16 hex digits identifying a run (see the module docstring)."""
    blob = json.dumps({
        "method": method,
        "opts": stable({k: v for k, v in opts.items() if k != "verbose"}),
        "epochs": epochs, "rounds": rounds, "target": stable(target),
        "architecture": architecture(model),
        "weights": weights_digest(model),
        "data": [data_digest(d) for d in data],
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
