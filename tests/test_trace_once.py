"""Run-cost cuts keep results: the passes that trace once per round
(`kprune.compat.backend.BatchFunction`: Taylor scores, BatchNorm re-estimation) and
the train step traced once per round (`build_for_training`) remove the same
channels, with the same accuracies, as the tracing they replace."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kprune
import kprune.methods.trainer as trainer_module
from kprune import data as data_module
from kprune.compat import backend as backend_module
from kprune.data import BatchFunction
from kprune.methods.trainer import recalibrate_batchnorm


class _PerShape:
    """The previous behaviour: a tf.function traced per new batch shape."""

    def __init__(self, fn):
        self._function = tf.function(fn, reduce_retracing=True)

    def __call__(self, *args):
        return self._function(*args)


def _bn_model():
    inp = keras.Input((10, 10, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="b1")(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    y = keras.layers.BatchNormalization(name="b2")(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", name="c3")(x)
    x = keras.layers.BatchNormalization(name="b3")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax", name="out")(x)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # metric variables: what made fit trace twice
    return model


def _data(n=230, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10, 10, 1)).astype("float32")
    y = (x[:, :5].mean(axis=(1, 2, 3)) > 0).astype("int64") + (x[:, 5:].mean(
        axis=(1, 2, 3)) > 0.1)
    return x, y


def test_batch_function_traces_once_and_computes_the_same():
    keras.utils.set_random_seed(0)
    model = _bn_model()
    x, _ = _data()
    fn = BatchFunction(lambda a: tf.reduce_sum(model(a, training=False), 0))
    plain = tf.function(lambda a: tf.reduce_sum(model(a, training=False), 0))
    for i in range(0, len(x), 64):  # 4 batches, the last one of 38
        np.testing.assert_allclose(fn(x[i:i + 64]).numpy(), plain(x[i:i + 64]).numpy(),
                                   rtol=1e-6)
    assert fn.traces == 1
    # another structure falls back to the per-shape function
    assert fn(x[:3, :5, :5]).shape == (3,)


def test_train_step_traced_once_per_fit():
    from keras.src.backend.tensorflow import trainer as tf_trainer

    from kprune.compat.keras_private import build_for_training
    from kprune.methods.trainer import fit_once

    x, y = _data()
    counts = []
    for build in (True, False):
        keras.utils.set_random_seed(0)
        model = _bn_model()
        traces = []
        original = tf_trainer.TensorFlowTrainer.train_step

        def counting(self, batch, _original=original):
            traces.append(1)
            return _original(self, batch)

        import unittest.mock as mock
        with mock.patch.object(tf_trainer.TensorFlowTrainer, "train_step", counting), \
                mock.patch.object(trainer_module, "build_for_training",
                                  build_for_training if build else (lambda *a: False)):
            fit_once(model, data_module.as_data((x, y), batch_size=64), 1,
                     model.get_compile_config())
        counts.append(len(traces))
    assert counts == [1, 2]  # built beforehand: one trace; lazily: two


def test_batchnorm_reestimation_unchanged(monkeypatch):
    keras.utils.set_random_seed(0)
    model = _bn_model()
    x, _ = _data()
    weights = model.get_weights()
    recalibrate_batchnorm(model, x, batch_size=64)
    new = model.get_weights()
    model.set_weights(weights)
    monkeypatch.setattr(backend_module, "BatchFunction", _PerShape)
    recalibrate_batchnorm(model, x, batch_size=64)
    for a, b in zip(new, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _run(method, **kw):
    keras.utils.set_random_seed(0)
    model = _bn_model()
    x, y = _data()
    xv, yv = _data(80, seed=1)
    model.fit(x, y, epochs=1, verbose=0, batch_size=32)
    res = kprune.prune(model, method, train_data=(x, y), val_data=(xv, yv), epochs=1,
                       rounds=2, target="none", seed=0, batch_size=32, rate=0.25,
                       calibration_samples=150, **kw)
    return [(e["round"], e.get("removed_by_group"), e["val_accuracy"]) for e in res.history]


@pytest.mark.parametrize("method", ["iap"])  # Taylor scores + BN re-estimation
def test_same_channels_removed_as_per_shape_tracing(method, monkeypatch):
    new = _run(method)
    monkeypatch.setattr(backend_module, "BatchFunction", _PerShape)
    monkeypatch.setattr(data_module, "BatchFunction", _PerShape)
    monkeypatch.setattr(trainer_module, "build_for_training", lambda *args: False)
    old = _run(method)
    assert [r[1] for r in new] == [r[1] for r in old]
    assert any(r[1] for r in new)  # channels were removed
    np.testing.assert_allclose([r[2] for r in new], [r[2] for r in old], atol=1e-12)
