"""Distillation (``distill=``) on streamed training data: tf.data.Dataset,
keras.utils.PyDataset and a PyTorch DataLoader, on whatever Keras backend this
process uses (CI runs this file on TensorFlow, JAX and PyTorch).

A stream's teacher outputs are computed per batch while training
(`kprune.methods.distillation.DistillStream`); numpy data gets them once per
sample. With the same batches in the same order both must train the same.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kprune.compat import backend
from kprune.data import as_data
from kprune.methods import distillation, trainer
from kprune.prune import prune

N, BATCH, CLASSES = 44, 16, 3  # a last batch of 12


def _xy(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5).astype("int64")
    return x, y


def _model(seed, logits=False, lr=0.1):
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(CLASSES, activation=None if logits else "softmax",
                             name="head")(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits))
    return model


class _Batches(keras.utils.PyDataset):
    def __init__(self, *arrays):
        super().__init__()
        self.arrays = arrays

    def __len__(self):
        return -(-len(self.arrays[0]) // BATCH)

    def __getitem__(self, i):
        return tuple(a[i * BATCH:(i + 1) * BATCH] for a in self.arrays)


def _stream(kind, *arrays):
    if kind == "dataset":
        return tf.data.Dataset.from_tensor_slices(arrays).batch(BATCH)
    if kind == "pydataset":
        return _Batches(*arrays)
    torch = pytest.importorskip("torch")
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
        *[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]), batch_size=BATCH)


@pytest.mark.parametrize("kind", ["dataset", "pydataset", "loader"])
@pytest.mark.parametrize("labels, logits", [("sparse", False), ("onehot", True)])
def test_stream_distillation_trains_like_numpy(kind, labels, logits):
    """The same batches in the same order: equal losses and equal weights."""
    x, y = _xy()
    if labels == "onehot":
        y = np.eye(CLASSES, dtype="float32")[y]
    teacher = _model(7, logits)
    distill = (0.6, 2.0)
    ref = _model(1, logits)
    cfg = trainer.compile_config_of(ref)
    t_out = backend.to_numpy(teacher(x, training=False))
    want = trainer.fit_once(ref, as_data((x, y), BATCH), 2, cfg, shuffle=False,
                            distill=distill, teacher_outputs=t_out)
    student = _model(1, logits)
    got = trainer.fit_once(student, as_data(_stream(kind, x, y)), 2, cfg,
                           distill=distill, teacher=teacher)
    assert len(got.losses) == 2 and not got.nan
    assert want.losses[0] > want.losses[1]  # it trained
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-5)
    for a, b in zip(student.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The student is back on its own compiled loss after the distilled fit.
    assert trainer.compile_config_of(student)["loss"] == cfg["loss"]


def test_stream_batches_carry_labels_teacher_outputs_and_weights():
    x, y = _xy()
    w = np.linspace(0.5, 2.0, N).astype("float32")
    teacher = _model(7)
    stream = distillation.DistillStream(as_data(_Batches(x, y, w)), teacher)
    bx, targets, bw = stream[1]
    np.testing.assert_array_equal(bx, x[BATCH:2 * BATCH])
    np.testing.assert_array_equal(targets[:, :CLASSES], np.eye(CLASSES)[y[BATCH:2 * BATCH]])
    np.testing.assert_allclose(targets[:, CLASSES:],
                               backend.to_numpy(teacher(bx, training=False)), rtol=1e-6)
    np.testing.assert_array_equal(bw, w[BATCH:2 * BATCH])
    # A tf.data stream read out of order restarts its pass (as a new epoch does).
    ordered = distillation.DistillStream(as_data(_stream("dataset", x, y)), teacher)
    firsts = [ordered[i][0][0, 0] for i in (0, 1, 2, 0, 2)]
    assert firsts == [x[0, 0], x[16, 0], x[32, 0], x[0, 0], x[32, 0]]


@pytest.mark.parametrize("kind", ["dataset", "pydataset", "loader"])
def test_sample_weights_of_a_stream_weight_the_distillation_loss(kind):
    x, y = _xy()
    teacher = _model(7)
    losses = {}
    for scale in (1.0, 2.5):  # learning rate 0: the same weights, losses scale
        student = _model(1, lr=0.0)
        w = np.full(N, scale, "float32")
        out = trainer.fit_once(student, as_data(_stream(kind, x, y, w)), 1,
                               trainer.compile_config_of(student), distill=(0.5, 4.0),
                               teacher=teacher)
        losses[scale] = out.losses[0]
    assert losses[2.5] == pytest.approx(2.5 * losses[1.0], rel=1e-5)


def test_prune_distills_a_stream_from_the_unpruned_model(monkeypatch):
    x, y = _xy()
    xv, yv = _xy(1)
    seen = []
    original = distillation.DistillStream.__getitem__

    def spy(self, i):
        batch = original(self, i)
        seen.append((self._data.kind, len(batch), batch[1].shape))
        return batch

    monkeypatch.setattr(distillation.DistillStream, "__getitem__", spy)
    model = _model(3)
    weighted = _stream("dataset", x, y, np.ones(N, "float32"))  # (x, y, sample_weight)
    res = prune(model, "ilp", train_data=weighted, val_data=(xv, yv),
                rounds=1, rate=0.25, epochs=1, target="none", seed=0, distill=0.5,
)
    assert res.history[-1]["round"] == 1
    assert res.model.get_layer("hidden").kernel.shape[-1] == 6  # a quarter of 8 removed
    # Every batch of the round's epoch went through the teacher, labels one-hot
    # and the teacher's 3 outputs side by side.
    assert len(seen) >= 3 and set(seen) >= {("dataset", 3, (BATCH, 2 * CLASSES))}


@pytest.mark.parametrize("kind", ["dataset", "pydataset", "numpy"])
def test_labels_that_cannot_be_one_hot_are_refused_before_training(kind):
    x, _ = _xy()
    y = np.zeros((N, 2), "float32")  # two columns for a three-class model
    model = _model(3)
    model.compile(optimizer="sgd", loss="mse")  # a loss whose label format is not checked
    data = (x, y) if kind == "numpy" else _stream(kind, x, y)
    with pytest.raises(ValueError, match=r"train_data: distill= needs class labels, one "
                                         r"class id \(0..2\) per sample or one-hot rows"):
        prune(model, "ilp", train_data=data, val_data=(x, np.zeros(N, "int64")), rounds=1,
              distill=0.5)


def test_a_dataset_of_unknown_length_is_refused_with_the_fix():
    x, y = _xy()
    stream = _stream("dataset", x, y).filter(lambda a, b: True)
    with pytest.raises(ValueError, match=r"distill= on a tf.data.Dataset needs its number of "
                                         r"batches.*assert_cardinality"):
        prune(_model(3), "ilp", train_data=stream, val_data=_xy(1), rounds=1, distill=0.5)
