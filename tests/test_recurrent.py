"""Recurrent layers and CRNNs: units of LSTM / GRU / SimpleRNN /
Bidirectional, pruned exactly against the masked reference."""

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.testing import assert_surgery_equivalent, random_removal

RNNS = [(layers.LSTM, {}), (layers.GRU, {"reset_after": True}),
        (layers.GRU, {"reset_after": False}), (layers.SimpleRNN, {})]


def _groups(model):
    return {g.name: g for g in kprune.dependency_groups(model, include_frozen=True)}


@pytest.mark.parametrize("cls,kwargs", RNNS, ids=["lstm", "gru", "gru_v1", "simple"])
def test_stacked_rnn_with_states_equals_masked_reference(cls, kwargs, tmp_path):
    i = keras.Input((7, 9))
    x = layers.Dense(10, activation="tanh", name="pre")(i)
    x = cls(8, return_sequences=True, name="r1", **kwargs)(x)
    outs = cls(6, return_state=True, name="r2", **kwargs)(x)
    y = layers.Concatenate(name="cat")(list(outs))
    model = keras.Model(i, layers.Dense(3, name="head")(y))
    groups = _groups(model)
    assert groups["pre"].layers == ["pre", "r1"]  # input features prunable upstream
    assert groups["r1"].channels == 8 and "r2" in groups["r1"].layers
    assert "cat" in groups["r2"].layers  # the sequence output and every state
    for seed in range(2):
        pruned = assert_surgery_equivalent(model, random_removal(model, 0.4, seed=seed))
    r2 = pruned.get_layer("r2")
    gates = {layers.LSTM: 4, layers.GRU: 3, layers.SimpleRNN: 1}[cls]
    assert r2.get_weights()[1].shape == (r2.units, gates * r2.units)
    pruned.save(tmp_path / "m.keras")
    keras.models.load_model(tmp_path / "m.keras")


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_every_merge_mode(mode):
    i = keras.Input((7, 9))
    b = layers.Bidirectional(layers.LSTM(5, return_sequences=True), merge_mode=mode,
                             name="bi")(i)
    if mode is None:
        b = layers.Concatenate()(b)
    b = layers.Bidirectional(layers.GRU(4), name="bi2")(b)
    model = keras.Model(i, layers.Dense(3, name="head")(b))
    groups = _groups(model)
    # Keras gives both directions one width: unit u of each goes together.
    assert "bi:backward" in groups["bi:forward"].layers and "bi:backward" not in groups
    assert groups["bi:forward"].channels == 5
    pruned = assert_surgery_equivalent(model, random_removal(model, 0.4, seed=0))
    pruned = assert_surgery_equivalent(model, {"bi:forward": [0, 1], "bi2:forward": [3]})
    bi = pruned.get_layer("bi")
    assert (bi.forward_layer.units, bi.backward_layer.units) == (3, 3)
    assert pruned.get_layer("bi2").backward_layer.units == 3


def test_bidirectional_states_and_initial_state_are_coupled():
    i = keras.Input((7, 9))
    h0 = keras.Input((5,))
    outs = layers.Bidirectional(layers.GRU(5, return_state=True), name="bi")(i)
    y = layers.Concatenate()(list(outs))
    init = layers.Dense(5, name="init")(h0)
    s = layers.GRU(5, name="g2")(layers.Dense(4, name="d")(i), initial_state=[init])
    model = keras.Model([i, h0], layers.Dense(3, name="head")(layers.Concatenate()([y, s])))
    groups = _groups(model)
    assert "g2" in groups["init"].layers  # the initial state carries g2's units
    assert_surgery_equivalent(model, {"init": [1, 3], "bi:forward": [0, 4], "d": [0]})


def test_crnn_conv_permute_reshape_gru():
    i = keras.Input((12, 10, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(i)
    x = layers.MaxPooling2D((2, 1))(x)
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="c2")(x)
    x = layers.Permute((2, 1, 3), name="perm")(x)          # (W, H, C)
    x = layers.Reshape((10, 6 * 5), name="rows")(x)        # (W, H * C)
    x = layers.GRU(7, name="gru")(x)
    model = keras.Model(i, layers.Dense(3, name="head")(x))
    groups = _groups(model)
    assert groups["c2"].layers == ["c2", "perm", "rows", "gru"]
    pruned = assert_surgery_equivalent(model, {"c2": [0, 3], "c1": [1], "gru": [2]})
    # rows follow channel x position: 6 positions x 3 channels
    assert pruned.get_layer("rows").get_config()["target_shape"] == (10, 18)
    assert pruned.get_layer("gru").get_weights()[0].shape == (18, 18)


def test_permute_moving_channels_is_a_boundary_with_the_reason():
    i = keras.Input((6, 5))
    x = layers.Dense(4, name="d")(i)
    x = layers.Permute((2, 1), name="swap")(x)
    model = keras.Model(i, layers.Dense(2, name="head")(layers.Flatten()(x)))
    assert "Permute 'swap' moves the channel axis" in _groups(model)["d"].frozen


def test_profile_counts_rnn_macs_at_pruned_widths():
    i = keras.Input((10, 8))
    x = layers.LSTM(16, return_sequences=True, name="lstm")(i)
    x = layers.Bidirectional(layers.GRU(4), name="bi")(x)
    model = keras.Model(i, layers.Dense(2, name="head")(x))
    small = kprune.remove_channels(model, {"lstm": list(range(6)), "bi:forward": [0]})
    prof = kprune.profile(small)
    assert prof.layer("lstm").macs == 10 * 4 * (8 * 10 + 10 * 10)
    assert prof.layer("bi").macs == 2 * 10 * 3 * (10 * 3 + 3 * 3)
