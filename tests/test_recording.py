"""Activation recording: calibration pass and recording during fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kprune
from kprune.scoring.recording import RecordingCallback, RecordingModel, record_activations
from kprune.data import as_data
from kprune.methods.trainer import fit_once


def _model(bn=True):
    inp = keras.Input((10, 10, 2))
    x = layers.Conv2D(6, 3, padding="same", name="c1")(inp)
    if bn:
        x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="r1")(x)
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(x)
    b = layers.Conv2D(3, 1, activation="relu", name="b")(x)
    x = layers.Concatenate(name="cat")([a, b])
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Conv2D(5, 3, activation="relu", name="c2")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(7, activation="relu", name="d1")(x)
    out = layers.Dense(3, activation="softmax", name="out")(x)
    m = keras.Model(inp, out)
    m.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    return m


def _group(groups, name):
    return [g for g in groups if g.name == name][0]


def _reference(model, x, tensor_layer, channels=None, p=1.0):
    """float64 numpy reference of the spec's score on one layer's output."""
    a = keras.Model(model.inputs, model.get_layer(tensor_layer).output).predict(x, verbose=0)
    a = a.astype(np.float64)
    if channels is not None:
        a = a[..., channels]
    m = a.mean(axis=0) ** p
    axes = tuple(range(m.ndim - 1))
    score = m.mean(axis=axes) if axes else m
    apoz = (a <= 0).mean(axis=tuple(range(a.ndim - 1)))
    return score, apoz


def test_calibration_matches_numpy_reference_for_every_group():
    model = _model()
    x = np.random.default_rng(0).normal(size=(130, 10, 10, 2)).astype("float32")
    groups = kprune.dependency_groups(model)
    stats = record_activations(model, x, groups=groups, batch_size=32)
    assert stats.count == 130
    # c1 channels are post-activation after BN + ReLU.
    for p in (1.0, 2.0, 3.0):
        want, apoz = _reference(model, x, "r1", p=p)
        np.testing.assert_allclose(stats.mean_power(_group(groups, "c1"), p=p), want, rtol=1e-5)
    np.testing.assert_allclose(stats.apoz(_group(groups, "c1")), apoz, atol=1e-12)
    # Concatenated branches: each group reads its own slice of the concat output.
    want_a, _ = _reference(model, x, "cat", channels=slice(0, 4))
    want_b, _ = _reference(model, x, "cat", channels=slice(4, 7))
    np.testing.assert_allclose(stats.mean_power(_group(groups, "a")), want_a, rtol=1e-5)
    np.testing.assert_allclose(stats.mean_power(_group(groups, "b")), want_b, rtol=1e-5)
    # Dense units: mean over samples of the post-activation value.
    want_d, apoz_d = _reference(model, x, "d1")
    np.testing.assert_allclose(stats.mean_power(_group(groups, "d1")), want_d, rtol=1e-5)
    np.testing.assert_allclose(stats.apoz(_group(groups, "d1")), apoz_d, atol=1e-12)


def test_sample_mean_is_taken_before_the_power():
    # mean_n(A)**2 differs from mean_n(A**2): the spec takes the sample mean first.
    model = _model(bn=False)
    x = np.random.default_rng(1).normal(size=(64, 10, 10, 2)).astype("float32")
    groups = kprune.dependency_groups(model)
    stats = record_activations(model, x, groups=groups)
    a = keras.Model(model.inputs, model.get_layer("d1").output).predict(x, verbose=0)
    a = a.astype(np.float64)
    got = stats.mean_power(_group(groups, "d1"), p=2)
    np.testing.assert_allclose(got, a.mean(0) ** 2, rtol=1e-6)
    assert not np.allclose(got, (a ** 2).mean(0), rtol=1e-3)


def test_accumulation_is_float64_and_does_not_drift():
    # 100k samples in 2,000 batches: per-batch in-graph sums accumulated in
    # float64 stay within float32 rounding of one batch (~1e-7 relative); a
    # float32 running sum over the same batches drifts far more.
    inp = keras.Input((1,))
    h = layers.Dense(1, activation="relu", name="h", kernel_initializer="ones",
                     bias_initializer="zeros")(inp)
    model = keras.Model(inp, layers.Dense(2, name="o")(h))
    x = np.random.default_rng(5).uniform(0.5, 1.0, size=(100_000, 1)).astype("float32")
    stats = record_activations(model, x, batch_size=50)
    assert stats.points[0][0].position_sum.dtype == np.float64
    exact = x.astype(np.float64).mean()
    ours = stats.mean_power(stats.groups[0])[0]
    f32 = np.float32(0)
    for i in range(0, len(x), 50):
        f32 = np.float32(f32 + x[i:i + 50].sum(dtype=np.float32))
    f32_err = abs(float(f32) / len(x) - exact) / exact
    assert abs(ours - exact) / exact < 1e-6
    assert f32_err > 10 * abs(ours - exact) / exact


def test_recording_during_fit_equals_calibration_pass_when_weights_are_frozen():
    model = _model(bn=False)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(96, 10, 10, 2)).astype("float32")
    y = rng.integers(0, 3, 96)
    groups = kprune.dependency_groups(model)
    ref = record_activations(model, x, groups=groups)
    out = fit_once(model, as_data((x, y), batch_size=32), 2, model.get_compile_config(),
                   record_groups=groups)
    assert out.stats.count == 96  # last epoch only
    for g in groups:
        np.testing.assert_allclose(out.stats.mean_power(g, p=2), ref.mean_power(g, p=2), rtol=1e-5)
        np.testing.assert_allclose(out.stats.apoz(g), ref.apoz(g), atol=1e-9)


def test_recording_model_trains_the_original_weights_without_copies():
    model = _model()
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 10, 10, 2)).astype("float32")
    y = rng.integers(0, 3, 64)
    before = [w.copy() for w in model.get_weights()]
    rec = RecordingModel(model)
    # The wrapper's trainable variables are the original model's own objects.
    assert {id(v) for v in rec.trainable_variables} == {id(v) for v in model.trainable_variables}
    rec.compile_from_config(model.get_compile_config())
    cb = RecordingCallback(rec, scope="all")
    rec.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cb])
    after = model.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    # BatchNorm moving statistics of the original were updated too.
    assert not np.allclose(model.get_layer("bn1").moving_mean.numpy(), 0)
    assert cb.result.count == 128
    for g in cb.result.groups:
        s = cb.result.mean_power(g)
        assert s.shape == (g.channels,) and np.all(np.isfinite(s)) and np.all(s >= 0)
    # Wrapper output equals the original model's output.
    np.testing.assert_allclose(rec.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_recording_accepts_datasets_and_pydatasets():
    model = _model(bn=False)
    x = np.random.default_rng(4).normal(size=(50, 10, 10, 2)).astype("float32")
    y = np.zeros(50, "int64")
    ref = record_activations(model, x, batch_size=16)

    class Seq(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]

    for data in (tf.data.Dataset.from_tensor_slices((x, y)).batch(16), Seq()):
        got = record_activations(model, data)
        assert got.count == 50
        for g in ref.groups:
            np.testing.assert_allclose(got.mean_power(g), ref.mean_power(g), rtol=1e-5)
    limited = record_activations(model, x, batch_size=16, max_samples=20)
    assert limited.count == 20


def test_no_recordable_group_is_a_clear_error():
    inp = keras.Input((4,))
    model = keras.Model(inp, layers.Dense(2)(inp))
    with pytest.raises(ValueError, match="no prunable group"):
        record_activations(model, np.zeros((4, 4), "float32"))
