"""Shared fixtures of the pruning-method tests: sklearn digits and a small CNN."""

import functools

import keras
import numpy as np
from keras import layers


@functools.lru_cache(maxsize=1)
def digits():
    """((x, y), (x_val, y_val), (x_test, y_test)) from sklearn's real 8x8 digits."""
    from kprune.datasets import load_digits

    (x, y), (xt, yt) = load_digits()
    return (x[:1200], y[:1200]), (x[1200:], y[1200:]), (xt, yt)


def small_cnn(seed=0, width=16, hidden=64, bn=True, name="small_cnn"):
    """Conv w - Conv w - [BN] - pool - Dense h - Dense 10 for 8x8x1 inputs
    (compiled)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.Conv2D(width, 3, padding="same", name="conv2")(x)
    if bn:
        x = layers.BatchNormalization(name="bn2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(hidden, activation="relu", name="fc1")(x)
    out = layers.Dense(10, activation="softmax", name="out")(x)
    model = keras.Model(inp, out, name=name)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


@functools.lru_cache(maxsize=1)
def _trained_weights():
    (x, y), _, _ = digits()
    model = small_cnn()
    model.fit(x, y, epochs=12, batch_size=48, verbose=0)
    return [np.array(w) for w in model.get_weights()]


def trained_cnn():
    """`small_cnn` trained on the digits (about 95% validation accuracy)."""
    model = small_cnn()
    model.set_weights(_trained_weights())
    return model
