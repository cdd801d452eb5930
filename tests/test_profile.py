"""kprune.profile: parameters, MACs and activation memory checked by hand."""

import keras
import pytest
from keras import layers

import kprune
from tests import models


def test_lenet5_by_hand():
    p = kprune.profile(models.lenet())
    assert p.params == 61706
    assert p.weight_bytes == 4 * 61706
    macs = {"c1": 28 * 28 * 6 * 25, "c2": 10 * 10 * 16 * 150, "d1": 400 * 120,
            "d2": 120 * 84, "out": 84 * 10}
    for name, expected in macs.items():
        assert p.layer(name).macs == expected, name
    assert p.macs == sum(macs.values()) == 416520
    assert p.flops == 2 * p.macs
    # Peak: conv1 output (4704) + pool1 output (1176) elements; the input
    # (784) is dead once conv1 has read it, as in a TFLite-Micro arena.
    assert p.peak_activation_bytes_int8 == 4704 + 1176
    assert p.peak_activation_bytes == 4 * (4704 + 1176)
    assert p.peak_after == "p1"
    assert p.layer("c1").activation_bytes == 4 * (784 + 4704)
    text = str(p)
    assert "61,706" in text and "416,520" in text and "c2" in text


def test_branches_keep_tensors_alive_and_elementwise_layers_reuse_buffers():
    inp = keras.Input((4, 4, 2))
    a = layers.Conv2D(3, 1, name="a")(inp)           # 48
    a = layers.BatchNormalization(name="a_bn")(a)   # in place
    a = layers.ReLU(name="a_relu")(a)               # in place
    b = layers.Conv2D(3, 1, name="b")(inp)           # 48
    s = layers.Add(name="add")([a, b])               # 48
    out = layers.Dense(5, name="out")(layers.Flatten(name="flat")(s))
    p = kprune.profile(keras.Model(inp, out))
    # At 'add': a 48 + b 48 + sum 48 (the input died after 'b' read it;
    # at 'b' only input 32 + a 48 + b 48 were alive).
    assert p.peak_activation_bytes_int8 == 48 * 3
    assert p.peak_after == "add"
    assert p.layer("a_bn").macs == 48  # scale-and-shift per element
    assert p.layer("add").macs == 0
    assert p.layer("b").macs == 16 * 3 * 2


def test_depthwise_separable_transpose_and_groups():
    inp = keras.Input((8, 8, 4))
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(inp)
    x = layers.SeparableConv2D(6, 3, padding="same", name="sep")(x)
    x = layers.Conv2D(6, 3, padding="same", groups=3, name="grouped")(x)
    x = layers.Conv2DTranspose(2, 2, strides=2, name="tconv")(x)
    p = kprune.profile(keras.Model(inp, x))
    assert p.layer("dw").macs == 8 * 8 * 8 * 9
    assert p.layer("sep").macs == 8 * 8 * 8 * 9 + 8 * 8 * 8 * 6
    assert p.layer("grouped").macs == 8 * 8 * 6 * 9 * 2
    assert p.layer("tconv").macs == 8 * 8 * 6 * 4 * 2


def test_shared_layer_params_once_macs_per_call():
    inp = keras.Input((10,))
    dense = layers.Dense(10, name="shared")
    out = dense(dense(inp))
    p = kprune.profile(keras.Model(inp, out))
    assert p.params == 110
    assert p.macs == 200


def test_pruning_shrinks_every_measure():
    model = models.lenet()
    small = kprune.remove_channels(model, {"c1": [0, 1, 2], "d1": list(range(60))})
    before, after = kprune.profile(model), kprune.profile(small)
    assert after.params == small.count_params() < before.params
    assert after.macs < before.macs
    assert after.peak_activation_bytes < before.peak_activation_bytes


def test_unknown_dimension_is_a_clear_error():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, layers.Conv2D(2, 3)(inp))
    with pytest.raises(ValueError, match="unknown dimension.*fixed input shape"):
        kprune.profile(model)


def test_recurrent_attention_and_einsum_macs_by_hand():
    L = keras.layers
    i = keras.Input((10, 8))
    x = L.LSTM(16, return_sequences=True, name="lstm")(i)          # 10*4*(8*16+16*16)
    x = L.Bidirectional(L.GRU(4, return_sequences=True), name="bi")(x)  # 2*10*3*(16*4+4*4)
    x = L.SimpleRNN(5, return_sequences=True, name="rnn")(x)       # 10*(8*5+5*5)
    a = L.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")(x, x)
    e = L.EinsumDense("abc,cd->abd", output_shape=(10, 7), name="ein")(a)  # 10*7*5
    model = keras.Model(i, e)
    p = kprune.profile(model)
    assert p.layer("lstm").macs == 10 * 4 * (8 * 16 + 16 * 16)
    assert p.layer("bi").macs == 2 * 10 * 3 * (16 * 4 + 4 * 4)
    assert p.layer("rnn").macs == 10 * (8 * 5 + 5 * 5)
    # q, k, v projections (10*5*2*3 each), scores + weighted sum (2*10*10*(3+3)),
    # output projection back to 5 features (10*2*3*5).
    assert p.layer("mha").macs == 3 * 10 * 5 * 2 * 3 + 2 * 10 * 10 * 6 + 10 * 2 * 3 * 5
    assert p.layer("ein").macs == 10 * 7 * 5
    assert p.uncounted == []


def test_unmodelled_layers_are_named_not_silently_zero():
    L = keras.layers
    i = keras.Input((4, 6, 3))
    x = L.ConvLSTM1D(2, 3, name="convlstm")(i)
    model = keras.Model(i, L.Dense(2)(L.Flatten()(x)))
    with pytest.warns(RuntimeWarning, match="MACs of convlstm are not modelled.*lower bound"):
        p = kprune.profile(model)
    assert p.uncounted == ["convlstm"]
