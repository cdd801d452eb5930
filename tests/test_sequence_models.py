"""kprune.prune end to end on a small ViT (Fashion-MNIST rows as patches)
and on GRU / LSTM models (images as rows), then LiteRT float and int8."""

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.runtime.litert import predict
from kprune.datasets import load_fashion_mnist


@pytest.fixture(scope="module")
def rows():
    (x, y), _ = load_fashion_mnist()
    x = x[:640].reshape(-1, 28, 28).astype("float32")
    return (x[:448], y[:448]), (x[448:], y[448:640])


def with_position(x):
    """Rows as patches, each with a one-hot row index: the patch Dense then
    learns a position embedding (pure Keras, no custom layer)."""
    eye = np.broadcast_to(np.eye(28, dtype="float32"), (len(x), 28, 28))
    return np.concatenate([x, eye], axis=-1)


def vit(d=24, heads=4, key_dim=6):
    i = keras.Input((28, 56))
    x = layers.Dense(d, name="embed")(i)
    for b in range(2):
        h = layers.LayerNormalization(name=f"ln{b}a")(x)
        h = layers.MultiHeadAttention(heads, key_dim, name=f"mha{b}")(h, h)
        x = layers.Add()([x, h])
        h = layers.LayerNormalization(name=f"ln{b}b")(x)
        h = layers.Dense(2 * d, activation="gelu", name=f"ffn{b}")(h)
        x = layers.Add()([x, layers.Dense(d, name=f"ffn{b}_out")(h)])
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization(name="ln_f")(x))
    return keras.Model(i, layers.Dense(10, activation="softmax", name="head")(x))


def rnn(cls):
    i = keras.Input((28, 28))
    x = cls(24, return_sequences=True, name="r1")(i)
    x = cls(24, name="r2")(x)
    return keras.Model(i, layers.Dense(10, activation="softmax", name="head")(x))


BUILDERS = {"vit": vit, "gru": lambda: rnn(layers.GRU), "lstm": lambda: rnn(layers.LSTM)}
CASES = [("vit", "ilp"), ("vit", "iap"), ("vit", "aiap"), ("gru", "iap"),
         ("lstm", "aiap")]


def _trained(kind, rows):
    (x, y), (xv, yv) = rows
    if kind == "vit":
        x, xv = with_position(x), with_position(xv)
    keras.utils.set_random_seed(0)
    model = BUILDERS[kind]()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model, (x, y), (xv, yv)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:kprune. val_data has")
@pytest.mark.parametrize("kind,method", CASES, ids=[f"{k}-{m}" for k, m in CASES])
def test_prune_sequence_models_and_run_in_litert(kind, method, rows):
    model, train, val = _trained(kind, rows)
    kw = {"rounds": 1} if method != "aiap" else {
        "rounds": 2, "target": {"accuracy_loss": 0.5}}
    result = kprune.prune(model, method=method, train_data=train, val_data=val,
                          epochs=1, **kw)
    small = result.model
    assert small.count_params() < model.count_params()
    if kind == "vit" and method == "ilp":  # heads, head dims and width all shrink
        mha = small.get_layer("mha0")
        assert mha.num_heads < 4 or mha.key_dim < 6
        assert small.get_layer("embed").units < 24
    if method != "iap":
        return
    x = val[0][:4]
    for quantization in (None, "int8"):
        flat = kprune.export.to_tflite(small, quantization, representative_data=train[0][:32])
        got = predict(flat, x)[0]
        want = small.predict(x, verbose=0)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < (1e-4 if quantization is None else 0.08)


def test_recurrent_layers_are_unrolled_for_conversion():
    from kprune.export.tflite import unrolled

    i = keras.Input((5, 3))
    x = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bi")(i)
    model = keras.Model(i, layers.GRU(2, name="gru")(x))
    flat = unrolled(model)
    assert flat.get_layer("gru").unroll and flat.get_layer("bi").forward_layer.unroll
    assert not model.get_layer("gru").unroll  # the original is left alone
    xs = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    np.testing.assert_allclose(flat(xs), model(xs), atol=1e-5)
    free = keras.Input((None, 3))
    dynamic = keras.Model(free, layers.GRU(2)(free))
    assert unrolled(dynamic) is dynamic  # unknown time steps: left rolled
