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
