"""Embedding: the output dimension is prunable and coupled to its readers;
tied weights stay tied (frozen, with the reason)."""

import keras
import numpy as np
import pytest
from keras import layers, ops

import kprune
from kprune.testing import assert_surgery_equivalent


def _groups(model):
    return {g.name: g for g in kprune.dependency_groups(model, include_frozen=True)}


def test_embedding_width_coupled_to_readers_and_shared_layer(tmp_path):
    a = keras.Input((6,), dtype="int32")
    b = keras.Input((4,), dtype="int32")
    emb = layers.Embedding(20, 8, mask_zero=True, name="tok")
    x = layers.GRU(6, name="gru")(emb(a))
    y = layers.GlobalAveragePooling1D()(emb(b))
    y = layers.Dense(6, name="d")(y)
    model = keras.Model([a, b], layers.Dense(3, name="head")(layers.Add()([x, y])))
    groups = _groups(model)
    assert {"tok", "gru", "d"} <= set(groups["tok"].layers)
    assert groups["tok"].channels == 8
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 20, (2, 6)), rng.integers(0, 20, (2, 4))]
    pruned = assert_surgery_equivalent(model, {"tok": [0, 5, 7], "gru": [1]}, inputs=inputs)
    assert pruned.get_layer("tok").embeddings.shape == (20, 5)
    pruned.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(inputs), pruned(inputs), atol=1e-6)


class TiedLogits(layers.Layer):
    """Output logits from the input embedding's table (weight tying)."""

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def call(self, x):
        return ops.matmul(x, ops.transpose(self.embedding.embeddings))


def test_tied_input_output_embeddings_are_frozen_with_the_reason():
    t = keras.Input((5,), dtype="int32")
    emb = layers.Embedding(30, 8, name="tok")
    x = emb(t)
    h = layers.Dense(12, activation="relu", name="ffn")(x)
    x = layers.Add()([x, layers.Dense(8, name="ffn_out")(h)])
    model = keras.Model(t, TiedLogits(emb, name="logits")(x))
    groups = _groups(model)
    reason = groups["tok"].frozen
    assert "tied weights" in reason and "'logits'" in reason
    assert groups["ffn"].frozen is None  # the FFN's hidden units still prune
    with pytest.raises(ValueError, match=r"channel 0 of layer 'tok'.*tied weights"):
        kprune.remove_channels(model, {"tok": [0]})


def _reversible_lm(tie=True, norm=False):
    """token embedding -> 2 residual FFN blocks -> logits from the same
    ReversibleEmbedding (reverse=True): a causal-LM head over the vocab."""
    ids = keras.Input((8,), dtype="int32", name="ids")
    emb = layers.ReversibleEmbedding(100, 32, tie_weights=tie, name="tokens")
    x = emb(ids)
    for i in range(2):
        h = layers.LayerNormalization(name=f"ln{i}")(x) if norm else x
        h = layers.Dense(64, activation="gelu", name=f"ff{i}_in")(h)
        x = layers.Add(name=f"res{i}")([x, layers.Dense(32, name=f"ff{i}_out")(h)])
    model = keras.Model(ids, emb(x, reverse=True))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.3
                       for w in model.get_weights()])
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_reversible_embedding_model_width_prunes_and_stays_tied(tie, tmp_path):
    """The model width (token embedding, residual stream, every Dense that
    reads or writes it, the reverse projection to logits) is one group,
    prunable because the model output is the logits over the vocabulary;
    a tied table stays one variable, sliced once."""
    model = _reversible_lm(tie)
    groups = _groups(model)
    width = groups["tokens:dim"]
    assert width.frozen is None and width.exact and width.channels == 32
    assert {"ff0_out", "ff1_out", "ff0_in", "ff1_in"} <= set(width.layers)
    assert "vocabulary" in groups["tokens"].frozen  # the logits keep the vocab
    ids = np.random.default_rng(1).integers(0, 100, size=(2, 8))
    removal = {"tokens:dim": list(range(0, 32, 4)), "ff0_in": [0, 5, 9]}
    pruned = assert_surgery_equivalent(model, removal, inputs=ids)
    tokens = pruned.get_layer("tokens")
    assert tokens.output_dim == 24 and tokens.tie_weights is tie
    assert [tuple(w.shape) for w in tokens.weights] == (
        [(100, 24)] if tie else [(100, 24), (24, 100)])
    kept = [c for c in range(32) if c % 4]
    np.testing.assert_array_equal(np.asarray(tokens.embeddings),
                                  np.asarray(model.get_layer("tokens").embeddings)[:, kept])
    assert pruned.get_layer("ff0_out").kernel.shape == (61, 24)
    pruned.save(tmp_path / "lm.keras")
    again = keras.models.load_model(tmp_path / "lm.keras")
    np.testing.assert_allclose(again(ids), pruned(ids), rtol=1e-6, atol=1e-6)


def test_reversible_embedding_width_through_layer_norm_is_inexact():
    groups = _groups(_reversible_lm(norm=True))
    assert groups["tokens:dim"].frozen is None
    assert not groups["tokens:dim"].exact  # LayerNormalization over the width
