"""Knowledge distillation from the unpruned model (``distill=``).

The student is trained on ``y_true = [one-hot labels, teacher outputs]``
(concatenated on the last axis) with `distillation_loss`. Two ways of getting
the teacher's outputs, one per kind of training data:

- numpy ``(x, y)``: once per sample before the first round (`distill_targets`
  on the whole array; the trainer caches them for every round);
- a stream (``tf.data.Dataset``, ``keras.utils.PyDataset``, a PyTorch
  ``DataLoader``): per batch, while training, by `DistillStream`, a
  ``PyDataset`` that wraps the stream and turns each batch ``(x, y)`` into
  ``(x, [onehot(y), teacher(x)])`` (``(x, y, w)`` keeps its sample weights).
  The teacher runs in inference mode through the backend's compiled forward
  pass (`kprune.compat.backend.forward`), so it works on TensorFlow, JAX and
  PyTorch alike.

Example:
    >>> stream = DistillStream(as_data(dataset), teacher)
    >>> x, y = stream[0]
    >>> y.shape                     # labels one-hot, then the teacher's outputs
    (32, 20)
"""

import numpy as np

import keras

from kprune.compat import backend

_KIND_NAMES = {"dataset": "tf.data.Dataset", "pydataset": "keras.utils.PyDataset",
               "loader": "torch DataLoader", "numpy": "numpy (x, y)"}


def from_logits(compile_config) -> bool:
    """True when the compiled loss takes logits (``from_logits=True``)."""
    loss = (compile_config or {}).get("loss")
    if isinstance(loss, dict):
        return bool(loss.get("config", {}).get("from_logits", False))
    return False


def distillation_loss(weight, temperature, from_logits=False):
    """Keras loss for knowledge distillation (Hinton et al. 2015).

    ``y_true`` is ``[one-hot labels, teacher outputs]`` concatenated on the
    last axis; the loss is ``(1 - weight) * CE(labels, student) + weight *
    T**2 * KL(softmax(teacher / T) || softmax(student / T))``. Outputs are
    probabilities unless `from_logits`.

    Example:
        >>> model.compile(optimizer="adam", loss=distillation_loss(0.5, 4.0))
    """
    from keras import ops

    def loss(y_true, y_pred):  # keras.ops only: the same loss on every backend
        c = ops.shape(y_pred)[-1]
        labels, teacher = y_true[..., :c], y_true[..., c:]
        if from_logits:
            s_log, t_log = y_pred, teacher
        else:
            s_log = ops.log(ops.clip(y_pred, 1e-7, 1.0))
            t_log = ops.log(ops.clip(teacher, 1e-7, 1.0))
        hard = -ops.sum(labels * ops.log_softmax(s_log, axis=-1), axis=-1)
        t_soft = ops.softmax(t_log / temperature, axis=-1)
        kl = ops.sum(t_soft * (ops.log_softmax(t_log / temperature, axis=-1)
                               - ops.log_softmax(s_log / temperature, axis=-1)), axis=-1)
        return (1.0 - weight) * hard + weight * temperature ** 2 * kl

    return loss


def one_hot_labels(y, n_classes: int, name: str = "train_data") -> np.ndarray:
    """`y` as float32 one-hot rows of `n_classes`: integer class ids (shape
    ``(N,)`` or ``(N, 1)``, within 0..n_classes-1) or rows already one-hot.
    Raises ValueError naming `name` for labels of any other form.

    Example:
        >>> one_hot_labels(np.array([2, 0]), 3)
        array([[0., 0., 1.],
               [1., 0., 0.]], dtype=float32)
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[-1] == n_classes and n_classes > 1:
        return y.astype(np.float32)
    if y.ndim == 1 or (y.ndim == 2 and y.shape[-1] == 1):
        ids = y.reshape(-1)
        integral = np.issubdtype(ids.dtype, np.integer) or (
            np.issubdtype(ids.dtype, np.floating) and np.all(np.mod(ids, 1) == 0))
        if integral and (ids.size == 0 or (ids.min() >= 0 and ids.max() < n_classes)):
            return np.eye(n_classes, dtype=np.float32)[ids.astype(np.int64)]
    raise ValueError(
        f"{name}: distill= needs class labels, one class id (0..{n_classes - 1}) per "
        f"sample or one-hot rows of the model's {n_classes} classes; got labels of "
        f"shape {y.shape[1:]} per batch and dtype {y.dtype} (first values "
        f"{y.reshape(-1)[:4].tolist()}): pass class ids or one-hot labels, or drop distill=")


def distill_targets(y, teacher_outputs, name: str = "train_data") -> np.ndarray:
    """``[one-hot labels, teacher outputs]`` (float32, concatenated on the
    last axis): the ``y_true`` of `distillation_loss`.

    Example:
        >>> distill_targets(np.array([1]), np.array([[0.2, 0.8]])).tolist()
        [[0.0, 1.0, 0.2, 0.8]]
    """
    teacher_outputs = np.asarray(teacher_outputs, np.float32)
    return np.concatenate([one_hot_labels(y, teacher_outputs.shape[-1], name),
                           teacher_outputs], -1)


def _stream_length(data) -> int:
    if data.kind == "dataset":
        import tensorflow as tf

        n = int(data.source.cardinality())
        if n < 0 or n == int(tf.data.INFINITE_CARDINALITY):
            raise ValueError(
                "train_data: distill= on a tf.data.Dataset needs its number of batches "
                "(the teacher runs per batch in passes of known length); this dataset's "
                "cardinality is unknown: add .apply(tf.data.experimental.assert_cardinality("
                "n_batches)), or pass numpy arrays (x, y)")
        return n
    try:
        return len(data.source)
    except TypeError as e:
        raise ValueError(f"train_data: distill= needs a {_KIND_NAMES[data.kind]} of known "
                         "length (it defines __len__)") from e


def check_distill_data(data, n_classes: int, name: str = "train_data"):
    """Raises ValueError before any training when `data` (a `kprune.data.Data`)
    cannot be distilled: labels that are not class ids or one-hot rows of
    `n_classes` (checked on the first batch of a stream, on all of numpy
    labels), a stream of unknown length, or elements other than ``(x, y)`` /
    ``(x, y, sample_weight)``."""
    from kprune.data import first_batch

    if data.kind == "numpy":
        one_hot_labels(data.y, n_classes, name)
        return
    _stream_length(data)
    element = _first_element(data)
    if not isinstance(element, (tuple, list)) or len(element) not in (2, 3):
        size = len(element) if isinstance(element, (tuple, list)) else 1
        raise ValueError(
            f"{name}: distill= needs stream elements (x, y) or (x, y, sample_weight); "
            f"got {size} part(s) per batch")
    one_hot_labels(first_batch(data)[1], n_classes, name)


def _first_element(data):
    if data.kind == "pydataset":
        return data.source[0]
    for element in (data.source.take(1) if data.kind == "dataset" else data.source):
        return element
    raise ValueError(f"train_data: the {_KIND_NAMES[data.kind]} is empty")


class DistillStream(keras.utils.PyDataset):
    """A stream of training batches with the teacher's outputs added per batch.

    Wraps the stream of `data` (a `kprune.data.Data` of kind ``'dataset'``,
    ``'pydataset'`` or ``'loader'``): batch ``i`` is the source's batch ``i``
    with its labels replaced by `distill_targets` of the labels and
    ``teacher(x, training=False)``; a third element (sample weights) is kept.
    A PyDataset is read by index; a ``tf.data.Dataset`` or ``DataLoader`` is
    read in order (an index below the last one read starts a new pass, as at
    each epoch), so its own shuffling per pass is kept. One worker: the
    teacher runs in the training process. Epoch hooks reach a PyDataset
    source.

    Example:
        >>> model.fit(DistillStream(as_data(loader), teacher), epochs=2)
    """

    def __init__(self, data, teacher, name: str = "train_data"):
        super().__init__()
        self._data = data
        self._name = name
        self._teacher = backend.forward(teacher, training=False)
        self._length = _stream_length(data)
        self._iterator = None
        self._next = 0
        self.teacher_batches = 0  # teacher forward passes so far

    def __len__(self):
        return self._length

    def _element(self, index):
        if self._data.kind == "pydataset":
            return self._data.source[index]
        if self._iterator is None or index < self._next:
            self._iterator = iter(self._data.source)
            self._next = 0
        while self._next < index:  # skipping ahead (Keras reads in order)
            next(self._iterator)
            self._next += 1
        self._next += 1
        return next(self._iterator)

    def __getitem__(self, index):
        if index >= self._length:
            raise IndexError(f"batch {index} of a stream of {self._length}")
        element = backend.numpy_structure(self._element(index))
        if not isinstance(element, (tuple, list)) or len(element) not in (2, 3):
            raise ValueError(f"{self._name}: distill= needs stream elements (x, y) or "
                             "(x, y, sample_weight)")
        x, y = element[0], element[1]
        teacher = self._teacher(x)[0]
        self.teacher_batches += 1
        return (x, distill_targets(y, teacher, self._name)) + tuple(element[2:])

    def on_epoch_begin(self):
        if self._data.kind == "pydataset":
            self._data.source.on_epoch_begin()

    def on_epoch_end(self):
        if self._data.kind == "pydataset":
            self._data.source.on_epoch_end()
