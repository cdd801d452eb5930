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
    with pytest.raises(ValueError, match="unknown dimension.*input_shape=.*fixed input shape"):
        kprune.profile(model)


def _text_model(seq=None, mask=True):
    L = keras.layers
    ids = keras.Input((seq,), dtype="int32", name="ids")
    pos = keras.Input((seq,), dtype="int32", name="pos")
    x = L.Add(name="emb")([L.Embedding(50, 8, name="tok")(ids), L.Embedding(64, 8, name="p")(pos)])
    kwargs = {"attention_mask": L.Lambda(lambda t: t[:, None, :] > 0, name="m")(ids)} if mask else {}
    x = L.MultiHeadAttention(2, 4, name="mha")(x, x, **kwargs)
    x = L.Conv1D(6, 3, strides=2, name="conv")(x)
    x = L.GRU(5, name="gru")(x)
    return keras.Model({"ids": ids, "pos": pos}, L.Dense(3, name="out")(x))


def test_unknown_sequence_length_is_measured_at_a_given_input_shape():
    var = _text_model()
    fixed = _text_model(seq=12)
    fixed.set_weights(var.get_weights())
    want = kprune.profile(fixed)
    for shape in ((12,), [(12,), (12,)], {"ids": (12,), "pos": (12,)}):
        got = kprune.profile(var, input_shape=shape)
        assert (got.params, got.macs, got.peak_activation_bytes) == (
            want.params, want.macs, want.peak_activation_bytes)
        assert [r.macs for r in got.layers] == [r.macs for r in want.layers]
    # strided conv over the sequence: (12 - 3) // 2 + 1 = 5 steps into the GRU
    assert want.layer("gru").macs == 5 * 3 * (6 * 5 + 5 * 5)
    # an attention mask does not count as the value: q, k, v, o projections
    # + scores and weighted sum over 12 x 12 positions
    assert want.layer("mha").macs == 4 * 12 * 8 * 2 * 4 + 2 * 12 * 12 * (4 + 4)
    from kprune.core.profile import model_size
    assert model_size(var, input_shape=(24,))["macs"] > want.macs
    with pytest.raises(ValueError, match="unknown dimension.*input_shape"):
        kprune.profile(var)


@pytest.mark.parametrize("shape, match", [
    ({"ids": (12,)}, r"no shape for input\(s\) \['pos'\]"),
    ({"ids": (12,), "pos": (12,), "tokens": (12,)}, r"names \['tokens'\].*not model inputs"),
    ([(12,)], "1 shapes for a model with 2 inputs"),
    ({"ids": (12, 3), "pos": (12,)}, "does not fit model input 'ids'"),
])
def test_bad_input_shape_names_the_input_and_the_fix(shape, match):
    with pytest.raises(ValueError, match=match):
        kprune.profile(_text_model(), input_shape=shape)


def test_prune_measures_a_variable_length_model_at_its_data_shape():
    import numpy as np

    model = _text_model(mask=False)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = {"ids": rng.integers(1, 50, (64, 10)), "pos": np.tile(np.arange(10), (64, 1))}
    y = rng.integers(0, 3, 64)
    result = kprune.prune(model, "ilp", train_data=(x, y), val_data=(x, y), rounds=1,
                          target={"macs_reduction": 0.2}, verbose=0)
    base, last = result.history[0], result.history[-1]
    assert base["macs"] == kprune.profile(model, input_shape=(10,)).macs
    assert last["macs"] == kprune.profile(result.model, input_shape=(10,)).macs < base["macs"]
    assert result.model.inputs[0].shape[1] is None  # still takes any length


def test_recurrent_attention_and_einsum_macs_by_hand():
    L = keras.layers
    i = keras.Input((10, 8))
    x = L.LSTM(16, return_sequences=True, name="lstm")(i)          # 10*4*(8*16+16*16)
    x = L.Bidirectional(L.GRU(4, return_sequences=True), name="bi")(x)  # 2*10*3*(16*4+4*4)
    x = L.SimpleRNN(5, return_sequences=True, name="rnn")(x)       # 10*(8*5+5*5)
    a = L.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")(x, x)
    e = L.EinsumDense("abc,cd->abd", output_shape=(10, 7), name="ein")(a)  # 10*7*5
    s = keras.ops.einsum("bqd,bkd->bqk", e, e)  # scores: 10 * 10 * 7
    model = keras.Model(i, [e, s])
    p = kprune.profile(model)
    assert p.layer("lstm").macs == 10 * 4 * (8 * 16 + 16 * 16)
    assert p.layer("bi").macs == 2 * 10 * 3 * (16 * 4 + 4 * 4)
    assert p.layer("rnn").macs == 10 * (8 * 5 + 5 * 5)
    # q, k, v projections (10*5*2*3 each), scores + weighted sum (2*10*10*(3+3)),
    # output projection back to 5 features (10*2*3*5).
    assert p.layer("mha").macs == 3 * 10 * 5 * 2 * 3 + 2 * 10 * 10 * 6 + 10 * 2 * 3 * 5
    assert p.layer("ein").macs == 10 * 7 * 5
    # the op's name is Keras' automatic one ('einsum', 'einsum_1' after another
    # einsum in this process)
    op = s._keras_history.operation.name
    assert op.startswith("einsum") and p.layer(op).macs == 10 * 10 * 7
    assert p.uncounted == []


def test_unmodelled_layers_are_named_not_silently_zero():
    L = keras.layers
    i = keras.Input((4, 6, 3))
    x = L.ConvLSTM1D(2, 3, name="convlstm")(i)
    model = keras.Model(i, L.Dense(2)(L.Flatten()(x)))
    with pytest.warns(RuntimeWarning, match="MACs of convlstm are not modelled.*lower bound"):
        p = kprune.profile(model)
    assert p.uncounted == ["convlstm"]


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_keras_hub_backbone_macs_at_a_sequence_length(name):
    pytest.importorskip("keras_hub")
    from tests import keras_hub_models

    backbone = getattr(keras_hub_models, name)()
    short = kprune.profile(backbone, input_shape=(8,))
    long = kprune.profile(backbone, input_shape=(16,))
    assert short.uncounted == [] and long.params == short.params == backbone.count_params()
    # linear layers double with the length; attention scores and weighted
    # sums (MultiHeadAttention, or ops.einsum in Llama's traced attention) quadruple
    assert 2 * short.macs < long.macs < 4 * short.macs
