"""MultiHeadAttention: heads, key / value head dims and the model width are
dependency groups, pruned exactly against the masked reference."""

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.testing import assert_surgery_equivalent, random_removal


def vit(d=16, heads=4, key_dim=8, tokens=7, features=10, blocks=2, norm=True,
        **mha_kwargs):
    """A small pre-norm ViT: patch Dense, blocks of (LN, MHA, Add, LN, FFN, Add)."""
    i = keras.Input((tokens, features))
    x = layers.Dense(d, name="embed")(i)
    for b in range(blocks):
        h = layers.LayerNormalization(name=f"ln{b}a")(x) if norm else x
        h = layers.MultiHeadAttention(heads, key_dim, name=f"mha{b}", **mha_kwargs)(h, h)
        x = layers.Add(name=f"add{b}a")([x, h])
        h = layers.LayerNormalization(name=f"ln{b}b")(x) if norm else x
        h = layers.Dense(2 * d, activation="gelu", name=f"ffn{b}")(h)
        h = layers.Dense(d, name=f"ffn{b}_out")(h)
        x = layers.Add(name=f"add{b}b")([x, h])
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(i, layers.Dense(3, name="head")(x))


def _groups(model, **kw):
    return {g.name: g for g in kprune.dependency_groups(model, **kw)}


def test_vit_heads_dims_and_width_are_groups():
    model = vit()
    groups = _groups(model)
    assert sorted(groups) == sorted(
        ["embed", "ffn0", "ffn1"] + [f"mha{b}:{s}" for b in (0, 1)
                                     for s in ("heads", "key_dim", "value_dim")])
    assert groups["mha0:heads"].channels == 4
    assert groups["mha1:key_dim"].channels == 8
    width = groups["embed"]
    for member in ("embed", "ln0a", "mha0", "add0a", "ffn0", "ffn0_out", "mha1", "add1b"):
        assert member in width.layers
    assert not width.exact  # LayerNormalization normalizes over the width
    assert groups["mha0:heads"].exact


def test_vit_exact_groups_equal_masked_reference_and_width_prunes():
    model = vit()
    for seed in range(2):
        removal = random_removal(model, 0.4, seed=seed, exact_only=True)
        assert "mha0:heads" in removal and "mha1:value_dim" in removal
        assert_surgery_equivalent(model, removal)
    small = kprune.remove_channels(model, {"embed": [0, 1, 2, 3], "mha0:heads": [1],
                                           "mha1:key_dim": [0, 5]})
    mha0, mha1 = small.get_layer("mha0"), small.get_layer("mha1")
    assert (mha0.num_heads, mha0.key_dim, mha1.key_dim) == (3, 8, 6)
    assert small.get_layer("embed").units == 12
    assert small.get_layer("ln1b").gamma.shape == (12,)
    assert small.get_layer("ffn1").kernel.shape == (12, 32)
    assert small(np.zeros((1, 7, 10), "float32")).shape == (1, 3)


@pytest.mark.parametrize("kwargs", [
    {},
    {"value_dim": 5, "use_bias": False},
    {"output_shape": 16},
    {"use_gate": True, "value_dim": 6},
])
def test_width_group_is_exact_without_layernorm(kwargs, tmp_path):
    model = vit(norm=False, **kwargs)
    groups = _groups(model)
    # With output_shape the output has channels of its own, coupled to the
    # width by the residual Add.
    assert groups["embed"].exact and "mha0" in groups["embed"].layers
    for seed in range(2):
        pruned = assert_surgery_equivalent(model, random_removal(model, 0.4, seed=seed))
    if "output_shape" in kwargs:
        units = pruned.get_layer("embed").units
        assert units < 16
        assert tuple(pruned.get_layer("mha1").get_config()["output_shape"]) == (units,)
    pruned.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(size=(2, 7, 10)).astype("float32")
    np.testing.assert_allclose(again(x), pruned(x), atol=1e-5)


def test_cross_attention_key_and_value_from_other_sources():
    q = keras.Input((5, 8))
    kv = keras.Input((6, 7))
    k_src = layers.Dense(9, name="k_src")(kv)
    v_src = layers.Dense(11, name="v_src")(kv)
    qq = layers.Dense(10, name="q_src")(q)
    a = layers.MultiHeadAttention(3, 4, value_dim=5, name="cross")(qq, v_src, key=k_src)
    out = layers.Dense(2, name="head")(layers.Flatten()(a))
    model = keras.Model([q, kv], out)
    groups = _groups(model)
    assert {"k_src", "v_src", "q_src", "cross:heads"} <= set(groups)
    assert "cross" in groups["q_src"].layers  # output width follows the query
    removal = {"k_src": [0, 3], "v_src": [1, 2, 10], "q_src": [4], "cross:heads": [2],
               "cross:key_dim": [1], "cross:value_dim": [0, 4]}
    pruned = assert_surgery_equivalent(model, removal)
    cross = pruned.get_layer("cross")
    assert (cross.num_heads, cross.key_dim, cross.value_dim) == (2, 3, 3)
    assert pruned.get_layer("head").kernel.shape == (5 * 9, 2)


def test_attention_over_image_axes_and_a_mask_input():
    img = keras.Input((4, 5, 6))
    mask = keras.Input((4, 5, 4, 5), dtype="bool")
    x = layers.Conv2D(8, 1, name="conv")(img)
    a = layers.MultiHeadAttention(2, 3, attention_axes=(1, 2), name="mha")(
        x, x, attention_mask=mask)
    x = layers.Add()([x, a])
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model([img, mask], out)
    groups = _groups(model)
    assert groups["conv"].exact and "mha" in groups["conv"].layers
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(2, 4, 5, 6)).astype("float32"),
              rng.random((2, 4, 5, 4, 5)) > 0.3]
    assert_surgery_equivalent(model, {"conv": [1, 6], "mha:heads": [0],
                                      "mha:key_dim": [2]}, inputs=inputs)


def test_returned_scores_freeze_the_heads_with_the_reason():
    i = keras.Input((5, 8))
    out, scores = layers.MultiHeadAttention(2, 4, name="mha")(
        i, i, return_attention_scores=True)
    model = keras.Model(i, [layers.Dense(2, name="head")(out), scores])
    frozen = {g.name: g.frozen for g in kprune.dependency_groups(model, include_frozen=True)}
    assert "returns its attention scores" in frozen["mha:heads"]
    assert frozen["mha:key_dim"] is None  # still prunable
    assert_surgery_equivalent(model, {"mha:key_dim": [0], "mha:value_dim": [3]})


def test_ignored_attention_layer_keeps_its_heads():
    model = vit(blocks=1)
    names = {g.name for g in kprune.dependency_groups(model, ignored_layers=["mha0"])}
    assert not any(n.startswith("mha0:") for n in names)


def test_clear_errors_for_heads():
    model = vit(blocks=1)
    with pytest.raises(ValueError, match=r"takes every unit of 'mha0:heads'"):
        kprune.remove_channels(model, {"mha0:heads": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match=r"has no unit set 'head'.*\['heads', 'key_dim', "
                                         r"'value_dim'\]"):
        kprune.remove_channels(model, {"mha0:head": [0]})
    with pytest.raises(ValueError, match=r"out of range for layer 'mha0:heads', which has 4"):
        kprune.remove_channels(model, {"mha0:heads": [7]})


def test_profile_counts_attention_macs_at_pruned_widths():
    model = vit(blocks=1, norm=False)
    small = kprune.remove_channels(model, {"embed": [0, 1, 2, 3], "mha0:heads": [0],
                                           "mha0:key_dim": [0, 1], "mha0:value_dim": [7]})
    d, h, kd, vd, t = 12, 3, 6, 7, 7
    # Q, K, V projections, QK^T and AV per head, output projection.
    want = t * d * h * kd * 2 + t * d * h * vd + h * t * t * (kd + vd) + t * h * vd * d
    assert kprune.profile(small).layer("mha0").macs == want
    assert kprune.profile(small).layer("mha0").params == small.get_layer("mha0").count_params()
