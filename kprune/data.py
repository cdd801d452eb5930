"""Data for kprune: adapters for the kinds users pass, whole-data validation,
batch iteration, seeded subsets and splits, top-1 evaluation.

Data may be a ``(x, y)`` tuple of numpy arrays, a batched ``tf.data.Dataset``
of ``(x, y)``, a ``keras.utils.PyDataset`` or (with PyTorch installed, on any
Keras backend, as Keras' own ``fit`` takes it) a ``torch.utils.data.DataLoader``
of ``(x, y)`` batches.

Example:
    >>> data = as_data((x_train, y_train))
    >>> check_data(model, data, "train_data")
    >>> evaluate_accuracy(model, as_data((x_val, y_val)))
    0.91
"""

import dataclasses
import weakref
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from kprune.compat import backend
from kprune.compat.backend import BatchFunction


@dataclasses.dataclass
class Data:
    """A training/validation source in one of the supported kinds."""

    kind: str  # 'numpy' | 'dataset' | 'pydataset' | 'loader' (torch DataLoader)
    x: Any = None
    y: Any = None
    source: Any = None
    batch_size: int = 32

    def __len__(self):
        if self.kind == "numpy":
            return len(_first(self.y)) if self.y is not None else len(_first(self.x))
        raise TypeError("only numpy data has a known length")


def _first(x):
    return tf.nest.flatten(x)[0]


def as_labels(y):
    """Labels as numpy: one array, or (multi-output models) a list / tuple of
    arrays (one per output) or a dict {output name: array}.

    Example:
        >>> [a.shape for a in as_labels([np.zeros(4), np.zeros((4, 1))])]
        [(4,), (4, 1)]
    """
    if y is None:
        return None
    if isinstance(y, dict) or (isinstance(y, (list, tuple)) and y and all(
            isinstance(a, (np.ndarray, tf.Tensor)) for a in y)):
        return tf.nest.map_structure(np.asarray, y)
    return np.asarray(y)


def label_leaves(y):
    """The label arrays of `y` (one per output for multi-output labels)."""
    return [np.asarray(a) for a in tf.nest.flatten(y)] if y is not None else []


def take_labels(y, index):
    """`y` (one array or one per output) at `index` (a slice or index array)."""
    return None if y is None else tf.nest.map_structure(lambda a: a[index], y)


def as_data(data, batch_size=32, name="data") -> Optional[Data]:
    """Wraps a user data argument into `Data` (None stays None).

    Accepts ``(x, y)`` numpy tuples (or a dict ``{'x':..., 'y':...}``), a
    batched ``tf.data.Dataset`` and a ``keras.utils.PyDataset``.

    Example:
        >>> as_data((x, y)).kind
        'numpy'
    """
    if data is None or isinstance(data, Data):
        return data
    if isinstance(data, tf.data.Dataset):
        return Data("dataset", source=data, batch_size=batch_size)
    if isinstance(data, keras.utils.PyDataset):
        return Data("pydataset", source=data, batch_size=batch_size)
    if backend.is_torch_loader(data):
        return Data("loader", source=data, batch_size=batch_size)
    if isinstance(data, dict) and "x" in data:
        data = (data["x"], data.get("y"))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        x = tf.nest.map_structure(np.asarray, x)
        y = as_labels(y)
        return Data("numpy", x=x, y=y, batch_size=batch_size)
    if isinstance(data, np.ndarray):
        raise ValueError(
            f"{name}: got a single array; pass a tuple (x, y) of inputs and labels")
    raise TypeError(
        f"{name}: unsupported type {type(data).__name__}; pass (x, y) numpy arrays, "
        "a batched tf.data.Dataset of (x, y), a keras.utils.PyDataset or a "
        "torch.utils.data.DataLoader")


def _loader_batches(loader):
    """(x, y-or-None) numpy batches of a torch DataLoader."""
    for element in loader:
        element = backend.numpy_structure(element)
        if isinstance(element, (tuple, list)):
            yield element[0], element[1] if len(element) > 1 else None
        else:
            yield element, None


def first_batch(data: Data):
    """(x, y) of the first batch (numpy)."""
    if data.kind == "numpy":
        n = min(data.batch_size, len(data))
        x = tf.nest.map_structure(lambda a: a[:n], data.x)
        return x, take_labels(data.y, slice(0, n))
    if data.kind == "dataset":
        for element in data.source.take(1):
            element = tf.nest.map_structure(lambda t: t.numpy(), element)
            if isinstance(element, (tuple, list)):
                return element[0], element[1] if len(element) > 1 else None
            return element, None
        raise ValueError("the tf.data.Dataset is empty")
    if data.kind == "loader":
        for x, y in _loader_batches(data.source):
            return x, y
        raise ValueError("the torch DataLoader is empty")
    element = data.source[0]
    if isinstance(element, (tuple, list)):
        return element[0], element[1] if len(element) > 1 else None
    return element, None


def sample_input_shapes(data):
    """The input shapes (batch axis excluded) of `data`'s first batch, shaped
    like its inputs: a tuple, a list of tuples or a dict by input name; None
    when `data` is None or cannot be read (its checks report that later).

    Example:
        >>> sample_input_shapes((np.zeros((8, 128), "int32"), y))
        (128,)
    """
    try:
        x, _ = first_batch(as_data(data))
    except Exception:  # noqa: BLE001 - bad data gets its own error from check_data
        return None
    if isinstance(x, dict):
        return {k: tuple(np.shape(v))[1:] for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [tuple(np.shape(v))[1:] for v in x]
    return tuple(np.shape(x))[1:]


def check_data(model, data: Data, name="train_data", need_labels=True):
    """Raises ValueError when `data` cannot feed `model` (checked on one batch).

    Checks: inputs numeric, their per-sample shape equals the model's input
    shape (known dims), labels present and, for sparse integer labels, within
    the number of classes; numpy x and y of equal length.
    """
    if data.kind == "numpy" and len(_first(data.x)) == 0:
        raise ValueError(f"{name} is empty (0 samples); pass at least one batch of (x, y)")
    if data.kind == "dataset":
        card = int(data.source.cardinality())
        if card == int(tf.data.INFINITE_CARDINALITY):
            raise ValueError(
                f"{name} is an infinite tf.data.Dataset (.repeat() without a count); "
                "kprune trains for whole passes over it, so pass a finite dataset: drop "
                ".repeat() or bound it with .take(n_batches)")
        if card == 0:
            raise ValueError(f"{name} is an empty tf.data.Dataset")
    x, y = first_batch(data)
    xs = tf.nest.flatten(x)
    if len(xs) != len(model.inputs):
        raise ValueError(
            f"{name}: the model has {len(model.inputs)} inputs but the data gives {len(xs)}")
    for arr, inp in zip(xs, model.inputs):
        arr = np.asarray(arr)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(
                f"{name}: input dtype {arr.dtype} is not numeric; the model input "
                f"'{inp.name}' expects {inp.dtype}")
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"{name}: complex input dtype {arr.dtype} is not supported "
                             f"(model input '{inp.name}' expects {inp.dtype})")
        expected = tuple(inp.shape[1:])
        got = tuple(arr.shape[1:])
        if len(got) != len(expected) or any(
                e is not None and e != g for e, g in zip(expected, got)):
            hint = ""
            if data.kind == "dataset" and len(arr.shape) == len(expected):
                hint = " (is the dataset batched? call .batch(n))"
            raise ValueError(
                f"{name}: samples have shape {got} but model input '{inp.name}' "
                f"expects {expected}{hint}")
    if data.kind == "numpy" and data.y is not None:
        nx = len(xs[0]) if data.kind == "numpy" else None
        nx = len(_first(data.x))
        for leaf in label_leaves(data.y):
            if nx != len(leaf):
                raise ValueError(f"{name}: {nx} input samples but {len(leaf)} labels")
    if need_labels:
        if y is None:
            raise ValueError(f"{name}: no labels; pass (x, y)")
        for leaf in label_leaves(y):
            if not np.issubdtype(leaf.dtype, np.number):
                raise ValueError(f"{name}: labels of dtype {leaf.dtype} are not numeric")
    _scan_values(model, data, name, need_labels)


def _label_range_applies(model, y):
    n_classes = model.outputs[0].shape[-1]
    return (n_classes and n_classes > 1 and np.issubdtype(y.dtype, np.integer)
            and y.ndim <= 2 and (y.ndim == 1 or y.shape[-1] == 1)), n_classes


def _scan_values(model, data: Data, name, need_labels):
    """Every input finite and every sparse label a valid class, over the whole
    data (datasets of unknown cardinality: the first batch only, since they may
    be endless generators)."""
    if data.kind == "numpy":
        batches = [(data.x, data.y)]
    elif data.kind == "dataset" and int(data.source.cardinality()) < 0:
        batches = [first_batch(data)]
    else:
        batches = iterate_batches(data)
    lo = hi = None
    start = 0
    for x, y in batches:
        for arr in tf.nest.flatten(x):
            arr = np.asarray(arr)
            if np.issubdtype(arr.dtype, np.floating):
                bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
                if bad.any():
                    raise ValueError(
                        f"{name}: {int(bad.sum())} sample(s) have NaN or infinite inputs "
                        f"(the first is sample {start + int(np.argmax(bad))}); clean or "
                        "drop them before pruning")
        leaves = label_leaves(y) if need_labels else []
        for leaf in leaves:
            if np.issubdtype(leaf.dtype, np.floating) and not np.isfinite(leaf).all():
                raise ValueError(f"{name}: labels contain NaN or infinite values")
        if len(leaves) == 1:  # class ranges: single-output labels only
            y = leaves[0]
            applies, n_classes = _label_range_applies(model, y)
            if applies and y.size:
                lo = y.min() if lo is None else min(lo, y.min())
                hi = y.max() if hi is None else max(hi, y.max())
                if lo < 0 or hi >= n_classes:
                    raise ValueError(
                        f"{name}: label values span [{lo}, {hi}] but the model has "
                        f"{n_classes} output classes (labels must be 0..{n_classes - 1}"
                        f"{'; are they 1-based? subtract 1' if lo >= 1 and hi == n_classes else ''})")
        start += len(tf.nest.flatten(x)[0])


def check_label_format(model, data: Data, compile_config, name="train_data"):
    """Sparse labels with a categorical loss, or one-hot labels with a sparse
    loss, give a ValueError that says which to change."""
    if not compile_config:
        return
    loss = compile_config.get("loss")
    if isinstance(loss, dict):
        loss = loss.get("class_name") or loss.get("config", {}).get("name")
    if not isinstance(loss, str):
        return
    key = "".join(ch for ch in loss.lower() if ch.isalpha())
    _, y = first_batch(data)
    if y is None or len(model.outputs) > 1 or len(label_leaves(y)) > 1:
        return
    y = np.asarray(y)
    n_classes = model.outputs[0].shape[-1]
    if not n_classes or n_classes < 2:
        return
    one_hot = y.ndim >= 2 and y.shape[-1] == n_classes
    sparse = y.ndim == 1 or (y.ndim == 2 and y.shape[-1] == 1)
    if key.startswith("sparsecategorical") and one_hot:
        raise ValueError(
            f"{name}: labels have shape {y.shape[1:]} (one-hot) but the loss is {loss}; "
            "pass integer class ids (y.argmax(-1)) or compile with "
            "categorical_crossentropy")
    if key.startswith("sparsecategorical") and not sparse:
        raise ValueError(
            f"{name}: labels have shape {y.shape[1:]} per sample but the loss is {loss}, "
            f"which takes one class id per sample (labels shaped (N,)); the model has "
            f"{n_classes} outputs. Pass y of shape (N,) with ids 0..{n_classes - 1}")
    if key.startswith("sparsecategorical") and np.issubdtype(y.dtype, np.floating) \
            and y.size and not np.all(np.mod(y, 1) == 0):
        raise ValueError(
            f"{name}: labels are fractional (e.g. {y.reshape(-1)[np.argmax(np.mod(y, 1) != 0)]}"
            f") but the loss is {loss}, which takes integer class ids; pass "
            f"y.astype(int) ids 0..{n_classes - 1}, or one-hot targets with "
            "categorical_crossentropy")
    if key.startswith("categorical") and sparse:
        raise ValueError(
            f"{name}: labels are integer class ids (shape {y.shape[1:]}) but the loss is "
            f"{loss}; one-hot them (keras.utils.to_categorical(y, {n_classes})) or compile "
            "with sparse_categorical_crossentropy")


def iterate_inputs(data, batch_size=256):
    """Yields input batches (labels dropped) of numpy arrays or tensors."""
    if not isinstance(data, Data):
        if isinstance(data, np.ndarray):
            data = Data("numpy", x=data, y=None, batch_size=batch_size)
        else:
            data = as_data(data, batch_size=batch_size)
    if data.kind == "numpy":
        n = len(_first(data.x))
        for i in range(0, n, batch_size):
            yield tf.nest.map_structure(lambda a: a[i:i + batch_size], data.x)
    elif data.kind == "dataset":
        for element in data.source:
            yield element[0] if isinstance(element, (tuple, list)) else element
    elif data.kind == "loader":
        for x, _ in _loader_batches(data.source):
            yield x
    else:
        for i in range(len(data.source)):
            element = data.source[i]
            yield element[0] if isinstance(element, (tuple, list)) else element


def iterate_batches(data: Data, batch_size=256):
    """Yields (x, y) numpy batches."""
    if data.kind == "numpy":
        n = len(data)
        for i in range(0, n, batch_size):
            yield (tf.nest.map_structure(lambda a: a[i:i + batch_size], data.x),
                   take_labels(data.y, slice(i, i + batch_size)))
    elif data.kind == "dataset":
        for element in data.source:  # (x, y) or (x, y, sample_weight)
            if not isinstance(element, (tuple, list)) or len(element) < 2:
                raise ValueError("a tf.data.Dataset of (x, y) batches is needed here; its "
                                 "elements have no labels")
            yield element[0], tf.nest.map_structure(np.asarray, element[1])
    elif data.kind == "loader":
        for x, y in _loader_batches(data.source):
            yield x, as_labels(y)
    else:
        for i in range(len(data.source)):
            x, y = data.source[i][:2]
            yield x, as_labels(y)


def subset(data: Data, max_samples: int, seed: int = 0) -> Data:
    """At most `max_samples` samples of `data` (numpy: a seeded random slice;
    datasets: the first batches). Used for calibration data."""
    if data.kind == "numpy":
        n = len(data)
        if n <= max_samples:
            return data
        idx = np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))
        return Data("numpy", x=tf.nest.map_structure(lambda a: a[idx], data.x),
                    y=take_labels(data.y, idx), batch_size=data.batch_size)
    xs, ys, seen = [], [], 0
    try:  # keep the labels when the elements have them (the 'taylor' criterion uses them)
        for x, y in iterate_batches(data):
            xs.append(np.asarray(x))
            ys.append(as_labels(y))
            seen += len(xs[-1])
            if seen >= max_samples:
                break
    except (TypeError, ValueError, IndexError):
        xs, ys, seen = [], [], 0
        for x in iterate_inputs(data):
            x = np.asarray(x)
            xs.append(x)
            seen += len(x)
            if seen >= max_samples:
                break
    return Data("numpy", x=np.concatenate(xs)[:max_samples],
                y=(tf.nest.map_structure(lambda *a: np.concatenate(a)[:max_samples], *ys)
                   if ys else None),
                batch_size=data.batch_size)


def split_validation(data: Data, fraction=0.1, seed=0):
    """Split numpy `data` into (train, validation) with a seeded permutation."""
    if data.kind != "numpy":
        raise ValueError("val_data is required when train_data is not numpy arrays")
    n = len(data)
    idx = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    take = lambda ids: Data("numpy", x=tf.nest.map_structure(lambda a: a[ids], data.x),  # noqa: E731
                            y=take_labels(data.y, ids), batch_size=data.batch_size)
    return take(np.sort(idx[n_val:])), take(np.sort(idx[:n_val]))


def evaluate_accuracy(model, data: Data, batch_size=256) -> float:
    """Top-1 accuracy of `model` on labelled `data` (no compile needed).

    Sparse integer or one-hot labels; a single sigmoid output is thresholded at
    0.5. Returns NaN if the model outputs non-finite values.

    Example:
        >>> evaluate_accuracy(model, as_data((x_val, y_val)))
    """
    return accuracy_and_count(model, data, batch_size)[0]


#: model -> its inference function traced once for every batch size (`_predict`).
_FORWARD = weakref.WeakKeyDictionary()


def _predict(model, x, batch_size):
    """``model.predict(x)`` in batches of `batch_size` through one
    `BatchFunction` per model (cached while the model lives): one trace, where
    Keras' predict function traces the last, smaller batch a second time.
    Under a multi-replica strategy: Keras' predict."""
    if backend.name() != "tensorflow":  # jax / torch: Keras' predict compiles its own
        return model.predict(x, batch_size=batch_size, verbose=0)
    replicas = getattr(getattr(model, "distribute_strategy", None), "num_replicas_in_sync", 1)
    try:
        fn = _FORWARD.get(model)
    except TypeError:  # not weakly referable
        return model.predict(x, batch_size=batch_size, verbose=0)
    if replicas != 1:
        return model.predict(x, batch_size=batch_size, verbose=0)
    if fn is None:
        ref = weakref.ref(model)  # the cache must not keep the model alive
        fn = _FORWARD[model] = BatchFunction(lambda a: ref()(a, training=False))
    n = len(_first(x))
    parts = [tf.nest.map_structure(np.asarray, fn(tf.nest.map_structure(
        lambda a: a[i:i + batch_size], x))) for i in range(0, n, batch_size)]
    if not parts:
        return model.predict(x, batch_size=batch_size, verbose=0)
    return tf.nest.map_structure(lambda *a: np.concatenate(a, axis=0), *parts)


def predictions(model, data: Data, batch_size=256):
    """Yields ``(predictions, labels)`` of `model` over `data` in chunks
    (numpy data: one pass through a function traced once per model, see
    `_predict`); predictions hold every output of a multi-output model.

    Example:
        >>> for p, y in predictions(model, as_data((x_val, y_val))): ...
    """
    if data.kind == "numpy":
        yield _predict(model, data.x, batch_size), data.y
        return
    # Keras' predict_on_batch returns every replica's copy of the batch
    # under a multi-replica tf.distribute strategy; predict splits it.
    replicas = getattr(getattr(model, "distribute_strategy", None), "num_replicas_in_sync", 1)
    foreign = backend.name() != "tensorflow"  # jax / torch take numpy, not tf tensors
    for x, y in iterate_batches(data, batch_size):
        if foreign:
            x = tf.nest.map_structure(np.asarray, x)
        yield (model.predict_on_batch(x) if replicas == 1 else model.predict(x, verbose=0)), y


def top1_counts(p, y):
    """``(correct, samples)`` of top-1 predictions `p` against labels `y`
    (sparse or one-hot; one sigmoid unit: thresholded at 0.5).

    Example:
        >>> top1_counts(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))
        (1, 2)
    """
    p, y = np.asarray(p), np.asarray(y)
    if p.shape[-1] == 1:
        pred = (p.reshape(-1) > 0.5).astype(np.int64)
        true = y.reshape(-1).astype(np.int64)
    else:
        pred = p.argmax(-1).reshape(-1)
        true = y.argmax(-1).reshape(-1) if (y.ndim == p.ndim and y.shape[-1] == p.shape[-1]) \
            else y.reshape(-1).astype(np.int64)
    return int((pred == true).sum()), len(true)


def accuracy_and_count(model, data: Data, batch_size=256):
    """``(top-1 accuracy, number of samples evaluated)`` of `model` (its
    first output) on `data`, as `evaluate_accuracy` (accuracy NaN for
    non-finite outputs).

    Example:
        >>> accuracy_and_count(model, as_data((x_val, y_val)))
        (0.91, 5000)
    """
    data = as_data(data, batch_size=batch_size)
    correct, total = 0, 0
    for p, y in predictions(model, data, batch_size):
        p = np.asarray(p[0] if isinstance(p, (list, tuple)) else p)
        if not np.all(np.isfinite(p)):
            return float("nan"), total + len(p)
        c, n = top1_counts(p, y)
        correct, total = correct + c, total + n
    return correct / max(total, 1), total


# -- model files ------------------------------------------------------------------

#: file kind (by content) -> what it is, in words.
MODEL_FILE_KINDS = {".keras": "a Keras .keras archive", ".h5": "an HDF5 (.h5) model",
                    ".tflite": "a TFLite flatbuffer"}


def model_file_kind(path) -> Optional[str]:
    """'.keras', '.h5' or '.tflite' from a file's first bytes (None: none of them)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == b"PK\x03\x04":
        return ".keras"
    if head == b"\x89HDF\r\n\x1a\n":
        return ".h5"
    if head[4:8] == b"TFL3":
        return ".tflite"
    return None


def check_model_file(path, arg: str = "model", kinds=(".keras", ".h5")) -> str:
    """Check that `path` is a readable, undamaged model file of one of `kinds`
    (judged by its content, not only its name) before anything is loaded or
    written; returns its kind. Errors name `arg`, the file and the fix.

    Example:
        >>> check_model_file("pruned.keras")
        '.keras'
    """
    import os
    import zipfile

    want = " or ".join(kinds)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{arg} must be a path to a {want} file, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{arg} '{path}': no such file (pass a {want} model file)")
    if os.path.isdir(path):
        raise ValueError(f"{arg} '{path}' is a directory; pass a {want} model file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{arg} '{path}' is empty (0 bytes); pass a {want} model file")
    kind = model_file_kind(path)
    if kind is None:
        raise ValueError(f"{arg} '{path}' is not a model file (neither a .keras archive, "
                         f"an .h5 model nor a TFLite flatbuffer); pass a {want} file")
    if kind not in kinds:
        fix = (" Convert the Keras model instead (kprune.export.to_tflite), or pass the "
               ".keras file it came from." if kind == ".tflite" else "")
        raise ValueError(f"{arg} '{path}' is {MODEL_FILE_KINDS[kind]}, but {arg} takes a "
                         f"{want} file.{fix}")
    ext = os.path.splitext(path)[1].lower()
    if kind == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                names, bad = z.namelist(), z.testzip()
        except zipfile.BadZipFile as e:
            raise ValueError(f"{arg} '{path}' is a damaged or truncated .keras archive ({e}); "
                             f"save the model again with model.save('{path}')") from e
        if bad is not None or "config.json" not in names:
            raise ValueError(f"{arg} '{path}' is a damaged .keras archive ("
                             + (f"'{bad}' fails its checksum" if bad else "no config.json")
                             + f"); save the model again with model.save('{path}')")
    if ext != kind and not (kind == ".h5" and ext == ".hdf5"):
        raise ValueError(f"{arg} '{path}' holds {MODEL_FILE_KINDS[kind]} but is named "
                         f"'{ext or '(no extension)'}'; rename it to end in {kind}")
    return kind


def load_model_file(path, arg: str = "model", compile: bool = False, safe_mode: bool = True,
                    check: bool = True):
    """`check_model_file` (skipped with ``check=False``, for a caller that
    has just checked the file), then ``keras.saving.load_model``; a load
    failure is a ValueError naming `arg` and the file."""
    if check:
        check_model_file(path, arg)
    import os

    try:
        return keras.saving.load_model(os.fspath(path), compile=compile, safe_mode=safe_mode)
    except Exception as e:  # noqa: BLE001 - Keras raises many types
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot load {arg} '{os.fspath(path)}' as a Keras model: {text}") \
            from e
