"""The Keras 3 <-> tf_keras bridge: exact outputs, structure kept, clear errors."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from keras import layers

import kprune
from kprune import compat, zoo
from tests import models as test_models
from tests.test_properties import random_models


def _inputs(model, n=3, seed=0):
    rng = np.random.RandomState(seed)
    xs = [rng.rand(*((n,) + tuple(t.shape[1:]))).astype("float32") for t in model.inputs]
    return xs[0] if len(xs) == 1 else xs


def _out(y):
    ys = y if isinstance(y, (list, tuple)) else [y]
    return [keras.ops.convert_to_numpy(v) for v in ys]


def assert_round_trip(model):
    x = _inputs(model)
    m2 = compat.to_tf_keras(model)
    assert compat.is_tf_keras(m2) and not compat.is_tf_keras(model)
    back = compat.from_tf_keras(m2)
    assert isinstance(back, keras.Model) and not compat.is_tf_keras(back)
    ref = _out(model(x))
    for got in (_out(m2(x)), _out(back(x))):
        assert len(got) == len(ref)
        for a, b in zip(ref, got):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert [l.name for l in back.layers] == [l.name for l in model.layers]
    return m2, back


@pytest.mark.parametrize("build", [
    lambda: zoo.lenet5(), lambda: zoo.resnet20(),
    test_models.mobile, test_models.concat_norms, test_models.conv1d_3d,
    test_models.layer_norm, test_models.residual,
], ids=["lenet5", "resnet20", "mobile", "concat_norms", "conv1d_3d", "layer_norm", "residual"])
def test_round_trip_exact(build):
    assert_round_trip(build())


def test_mobilenet_v2_round_trip():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                           weights=None, classes=10)
    m2, _ = assert_round_trip(model)
    assert len(m2.layers) == len(model.layers)


def test_nested_and_shared_layers_stay_nested_and_shared():
    model = test_models.nested_shared()
    m2, back = assert_round_trip(model)
    for m in (m2, back):
        inner = m.get_layer("block")
        assert type(inner).__name__ == "Sequential"
        assert len(inner._inbound_nodes) == 2       # called twice, one layer
        assert len(m.get_layer("shared_c")._inbound_nodes) == 2
        assert len(m.weights) == len(model.weights)


def test_keras3_operations_round_trip():
    inp = keras.Input((6, 6, 2))
    x = layers.Conv2D(4, 3, padding="same", name="c")(inp)
    x = x * keras.ops.sigmoid(x) + 0.5
    x = keras.ops.relu(x) - keras.ops.abs(x) / 3.0
    out = layers.Dense(3, name="d")(layers.Flatten()(x))
    assert_round_trip(keras.Model(inp, out))


def test_tf_keras_ops_and_sequential_from_tf_keras():
    import tensorflow as tf
    import tf_keras
    inp = tf_keras.Input((5,))
    x = tf_keras.layers.Dense(4, name="a")(inp)
    x = tf.nn.relu(x) + x * 2.0
    out = tf_keras.layers.Dense(2, name="b")(x)
    m2 = tf_keras.Model(inp, out)
    back = compat.from_tf_keras(m2)
    x = _inputs(back)
    np.testing.assert_allclose(_out(back(x))[0], m2(x).numpy(), atol=1e-5)
    seq = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="relu"),
                               tf_keras.layers.LeakyReLU(0.2), tf_keras.layers.Dense(2)])
    back = compat.from_tf_keras(seq)
    assert type(back).__name__ == "Sequential"
    x = _inputs(back)
    np.testing.assert_allclose(_out(back(x))[0], seq(x).numpy(), atol=1e-5)
    assert back.layers[1].negative_slope == pytest.approx(0.2)


@settings(max_examples=6, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(model=random_models())
def test_random_graphs_round_trip(model):
    assert_round_trip(model)


def test_errors_name_the_layer():
    inp = keras.Input((4,))
    out = layers.Lambda(lambda t: t * 2, name="my_lambda")(inp)
    with pytest.raises(compat.UnsupportedLayerError, match="my_lambda"):
        compat.to_tf_keras(keras.Model(inp, out))

    class Custom(layers.Layer):
        def call(self, x):
            return x

    out = Custom(name="custom_one")(inp)
    with pytest.raises(compat.UnsupportedLayerError, match="custom_one.*no tf_keras equivalent"):
        compat.to_tf_keras(keras.Model(inp, out))
    with pytest.raises(TypeError, match="expects a keras.Model"):
        compat.to_tf_keras("model.keras")
    with pytest.raises(TypeError, match="expects a tf_keras model"):
        compat.from_tf_keras(zoo.lenet5())
    with pytest.raises(TypeError, match="already tf_keras"):
        compat.to_tf_keras(compat.to_tf_keras(zoo.lenet5()))
    with pytest.raises(compat.UnsupportedLayerError, match="not built"):
        compat.to_tf_keras(keras.Sequential([layers.Dense(2)]))


def test_import_kprune_imports_neither_tfmot_nor_tf_keras():
    code = ("import sys, kprune, kprune.compat, kprune.export;"
            "bad=[m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow_model_optimization','tf_keras')];"
            "import os; print(bad, os.environ.get('TF_USE_LEGACY_KERAS'))")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=os.path.dirname(os.path.dirname(kprune.__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[] None"


# ----------------------------------------------------- tf_keras models as input
def tf_keras_lenet():
    import tf_keras as k
    inp = k.Input((28, 28, 1))
    x = k.layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(inp)
    x = k.layers.MaxPooling2D(2, name="pool1")(x)
    x = k.layers.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = k.layers.Flatten(name="flat")(k.layers.MaxPooling2D(2, name="pool2")(x))
    x = k.layers.Dense(32, activation="relu", name="fc1")(x)
    out = k.layers.Dense(10, activation="softmax", name="out")(x)
    m = k.Model(inp, out, name="tfk_lenet")
    m.compile(optimizer=k.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def tf_keras_resnet():
    """A small tf_keras ResNet: BN, projection shortcut, `x + y` (a TFOpLambda)."""
    import tf_keras as k
    inp = k.Input((16, 16, 3))
    x = k.layers.ReLU(name="stem_relu")(k.layers.BatchNormalization(name="stem_bn")(
        k.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inp)))
    for i, (f, s) in enumerate([(8, 1), (16, 2)]):
        y = k.layers.Conv2D(f, 3, strides=s, padding="same", use_bias=False, name=f"b{i}_c1")(x)
        y = k.layers.ReLU(name=f"b{i}_r1")(k.layers.BatchNormalization(name=f"b{i}_bn1")(y))
        y = k.layers.BatchNormalization(name=f"b{i}_bn2")(
            k.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"b{i}_c2")(y))
        if s != 1:
            x = k.layers.Conv2D(f, 1, strides=s, use_bias=False, name=f"b{i}_proj")(x)
        x = k.layers.ReLU(name=f"b{i}_out")(k.layers.Add(name=f"b{i}_add")([y, x]) if i
                                            else y + x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    m = k.Model(inp, k.layers.Dense(10, name="logits")(x), name="tfk_resnet")
    m.compile(optimizer="sgd", loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
    return m


@pytest.mark.parametrize("build", [tf_keras_lenet, tf_keras_resnet], ids=["lenet5", "resnet"])
def test_tf_keras_models_are_first_class(build):
    model = build()
    rng = np.random.RandomState(0)
    x = rng.rand(96, *model.input_shape[1:]).astype("float32")
    y = rng.randint(0, 10, 96)
    groups = kprune.dependency_groups(model)
    assert groups and all(isinstance(g.layers[0], str) for g in groups)
    assert kprune.profile(model).params == model.count_params()
    first = groups[0].layers[0]
    removal = {first: [0, 1]}
    small = kprune.remove_channels(model, removal)
    ref = kprune.masked_reference(model, removal)
    assert compat.is_tf_keras(small) and compat.is_tf_keras(ref)
    assert small.count_params() < model.count_params()
    np.testing.assert_allclose(small(x[:4]).numpy(), ref(x[:4]).numpy(), atol=1e-5)
    assert small.get_compile_config()["metrics"] == ["accuracy"]

    result = kprune.prune(model, "iap", train_data=(x, y), val_data=(x[:32], y[:32]),
                          epochs=1, rounds=1, target="none", verbose=0)
    assert compat.is_tf_keras(result.model)
    assert result.model.count_params() < model.count_params()
    result.model.fit(x[:32], y[:32], epochs=1, verbose=0)  # compiled like the original
    flat = kprune.export.to_tflite(result.model, "int8", representative_data=x[:16])
    assert kprune.export.is_tflite(flat)
