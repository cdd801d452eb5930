"""Reproductions from issue 13 (holes found by a random-graph test): each
graph is pruned exactly, or its channels are frozen with a reason."""

import keras
import numpy as np
import pytest
from keras import layers as L

import kprune
from kprune.core.dependency import analyze
from kprune.testing import assert_surgery_equivalent, random_removal


def _group_of(model, layer):
    return [g for g in kprune.dependency_groups(model) if layer in g.layers]


def test_group_norm_without_center_and_scale():
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c")(i)
    x = L.GroupNormalization(groups=4, center=False, scale=False, name="gn")(x)
    m = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    pruned = assert_surgery_equivalent(m, {"c": [0, 1]})
    assert pruned.get_layer("c").filters == 6
    assert pruned.get_layer("gn").groups == 3


@pytest.mark.parametrize("activation", ["softmax", "log_softmax", "sparsemax"])
@pytest.mark.parametrize("kind", ["conv", "dense", "separable", "transpose"])
def test_channel_mixing_activation_freezes_outputs(kind, activation):
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(5, 1, name="pre")(i)
    make = {"conv": lambda: L.Conv2D(8, 3, padding="same", activation=activation, name="c"),
            "dense": lambda: L.Dense(8, activation=activation, name="c"),
            "separable": lambda: L.SeparableConv2D(8, 3, padding="same",
                                                   activation=activation, name="c"),
            "transpose": lambda: L.Conv2DTranspose(8, 3, padding="same",
                                                   activation=activation, name="c")}
    x = make[kind]()(x)
    m = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(4, 1)(x))))
    assert not _group_of(m, "c") or all(g.name != "c" for g in kprune.dependency_groups(m))
    with pytest.raises(ValueError, match=f"'c'.*activation '{activation}'.*mixes channels"):
        kprune.remove_channels(m, {"c": [0, 1]})
    # The input side of the layer is still prunable, exactly.
    assert_surgery_equivalent(m, {"pre": [0, 2]})


@pytest.mark.parametrize("activation", ["softmax", "log_softmax", "sparsemax"])
def test_mixing_activation_layer_freezes_its_group(activation):
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="c")(i)
    x = L.Activation(activation, name="act")(x)
    m = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(4, 1)(x))))
    with pytest.raises(ValueError, match=f"'act'.*'{activation}'.*mixes channels"):
        kprune.remove_channels(m, {"c": [0]})


def test_elementwise_activations_stay_prunable():
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", activation="gelu", name="c")(i)
    x = L.Activation("hard_swish")(x)
    m = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    assert [g.name for g in kprune.dependency_groups(m)] == ["c"]
    assert_surgery_equivalent(m, {"c": [0, 3]})


def test_unknown_activation_is_treated_as_mixing():
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", activation=lambda t: t * 2.0, name="c")(i)
    m = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    with pytest.raises(ValueError, match="'c'.*mixes channels"):
        kprune.remove_channels(m, {"c": [0]})


def test_op_with_per_channel_constant_is_frozen_with_a_reason():
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="c")(i)
    x = x * np.array([1., 2., 3., 4.], "float32")
    m = keras.Model(i, L.Dense(2, name="d")(L.Flatten()(x)))
    assert "c" not in [g.name for g in kprune.dependency_groups(m)]
    frozen = {g.name: g.frozen for g in kprune.dependency_groups(m, include_frozen=True)}
    assert "constant of shape (4,)" in frozen["c"]
    assert "frozen: " in repr(kprune.dependency_groups(m, include_frozen=True)[-1])
    with pytest.raises(ValueError, match=r"channel 0 of layer 'c'.*constant of shape \(4,\)"):
        kprune.remove_channels(m, {"c": [0]})


def test_op_with_a_column_constant_as_long_as_the_channels_is_frozen():
    # Keras's TensorFlow `add` treats a (C, 1) constant as a per-channel bias
    # when the channel axis also has C entries (not numpy's broadcasting):
    # slicing the channels would change what it adds.
    i = keras.Input((8, 3))
    x = L.Conv1D(8, 1, name="c")(i)
    x = x + np.arange(8, dtype="float32").reshape(8, 1)
    m = keras.Model(i, L.Dense(2, name="d")(L.Flatten()(x)))
    with pytest.raises(ValueError, match=r"'c'.*constant of shape \(8, 1\)"):
        kprune.remove_channels(m, {"c": [0]})


def test_add_of_a_column_constant_over_positions_is_frozen():
    """Random-graph seed 9782107: `x + c` with c of shape (4, 1) over 4
    positions and 5 channels. Keras's TensorFlow `add` adds c along
    whichever axis its length matches (bias_add); with one channel pruned
    the channels are 4 long and c would be added along them. kprune
    freezes the channels such an `add` reads."""
    i = keras.Input((4, 3))
    x = L.Conv1D(5, 1, name="c")(i)
    x = x + np.arange(4, dtype="float32").reshape(4, 1)
    m = keras.Model(i, L.Dense(2, name="d")(L.Flatten()(x)))
    frozen = {g.name: g.frozen for g in kprune.dependency_groups(m, include_frozen=True)}
    assert "constant of shape (4, 1)" in frozen["c"]
    # what surgery would have done: a different sum on the pruned width
    y = np.ones((1, 4, 4), "float32")
    np.testing.assert_raises(AssertionError, np.testing.assert_allclose,
                             keras.ops.add(y, np.arange(4, dtype="float32").reshape(4, 1)),
                             y + np.arange(4, dtype="float32").reshape(4, 1))


def test_op_with_scalar_or_broadcast_constant_stays_prunable():
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="c")(i)
    x = x * np.full((6, 6, 1), 0.5, "float32") + 2.0
    m = keras.Model(i, L.Dense(2, name="d")(L.Flatten()(x)))
    assert "c" in [g.name for g in kprune.dependency_groups(m)]
    assert_surgery_equivalent(m, {"c": [0, 2]})


def test_layer_norm_over_a_non_channel_axis_keeps_its_weights():
    i = keras.Input((4, 3))
    x = L.Conv1D(4, 1, name="c")(i)
    x = L.LayerNormalization(axis=1, name="ln")(x)
    m = keras.Model(i, L.Dense(2)(L.Flatten()(x)))
    ln = m.get_layer("ln")
    ln.set_weights([np.arange(1, 5, dtype="float32"), np.arange(4, dtype="float32")])
    pruned = assert_surgery_equivalent(m, {"c": [0]})
    assert pruned.get_layer("ln").gamma.shape == (4,)
    np.testing.assert_array_equal(pruned.get_layer("ln").gamma.numpy(), [1, 2, 3, 4])


def test_layer_norm_over_two_axes_slices_only_the_channel_axis():
    i = keras.Input((4, 3))
    x = L.Conv1D(5, 1, name="c")(i)
    x = L.LayerNormalization(axis=[1, 2], name="ln")(x)
    m = keras.Model(i, L.Dense(2)(L.Flatten()(x)))
    group = [g for g in kprune.dependency_groups(m) if g.name == "c"][0]
    assert not group.exact  # statistics over the channels change
    pruned = kprune.remove_channels(m, {"c": [0, 1]})
    assert pruned.get_layer("ln").gamma.shape == (4, 3)


def test_nested_model_called_twice_ties_pass_through_inputs():
    si, sj = keras.Input((8, 8, 4)), keras.Input((8, 8, 4))
    sub = keras.Model([si, sj], [L.Conv2D(3, 1)(si), sj], name="sub")
    i = keras.Input((8, 8, 3))
    a, b, c = (L.Conv2D(4, 1, name=n)(i) for n in "abc")
    o1, p1 = sub([a, b])
    o2, p2 = sub([a, c])
    m = keras.Model(i, L.Dense(2)(L.Flatten()(L.Concatenate()([o1, p1, o2, p2]))))
    group = [g for g in kprune.dependency_groups(m) if "b" in g.layers][0]
    assert "c" in group.producers
    pruned = assert_surgery_equivalent(m, {"b": [0]})
    assert pruned.get_layer("b").filters == 3 and pruned.get_layer("c").filters == 3


def test_uncompiled_model_comes_back_uncompiled():
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="c")(i)
    m = keras.Model(i, L.Dense(2)(L.Flatten()(x)))
    pruned = kprune.remove_channels(m, {"c": [0]})
    assert not pruned.compiled
    m.compile(optimizer="adam", loss="mse")
    pruned = kprune.remove_channels(m, {"c": [0]})
    assert pruned.compiled and pruned.loss == "mse"
    assert type(pruned.optimizer).__name__ == "Adam"


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_norm_over_a_spatial_axis_freezes_only_its_group(norm):
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="c")(i)
    if norm == "batch":
        x = L.BatchNormalization(axis=1, name="bn")(x)
    else:
        x = L.GroupNormalization(groups=3, axis=1, name="bn")(x)
    x = L.Conv2D(5, 1, name="d")(x)
    m = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    names = [g.name for g in kprune.dependency_groups(m)]
    assert "c" not in names and "d" in names
    frozen = {g.name: g.frozen for g in kprune.dependency_groups(m, include_frozen=True)}
    assert "'bn'" in frozen["c"] and frozen["d"] is None
    with pytest.raises(ValueError, match="'bn'.*axis 1, not the channel axis"):
        kprune.remove_channels(m, {"c": [0]})
    assert_surgery_equivalent(m, {"d": [1, 3]})


def test_analysis_reasons_name_the_layer():
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", activation="softmax", name="c")(i)
    m = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    reasons = set(analyze(m).fixed.values())
    assert any("'c'" in r and "softmax" in r for r in reasons)



def test_random_removal_never_empties_a_layer_inside_a_wider_group():
    # pw1's 3 channels are 3 of the 10 units of the group that Add joins:
    # drawing 9 of 10 units often takes all of them (fuzzer seed 1707).
    i = keras.Input((6, 6, 3))
    a = L.Conv2D(3, 1, name="pw1")(i)
    b = L.Conv2D(7, 1, name="pw2")(i)
    c = L.Conv2D(10, 1, name="pw3")(i)
    x = L.Add()([L.Concatenate()([a, b]), c])
    m = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    analysis = analyze(m)
    for seed in range(20):
        removal = random_removal(m, fraction=0.9, seed=seed, analysis=analysis)
        assert sum(len(v) for v in removal.values()) >= 8
        analysis.resolve_removal(removal)  # raises if a layer loses everything
    assert_surgery_equivalent(m, random_removal(m, fraction=0.9, seed=3))


def test_expand_dims_before_the_channel_axis_keeps_channels():
    i = keras.Input((6, 3))
    x = L.Conv1D(5, 1, name="c")(i)
    y = L.Conv2D(4, 1, name="c2")(keras.ops.expand_dims(x, 1))
    z = L.Conv1D(2, 1, name="e")(i)
    z = L.Flatten()(keras.ops.expand_dims(z, -1))
    m = keras.Model(i, [L.Dense(2, name="d")(L.Flatten()(y)), z])
    groups = {g.name: g.frozen for g in kprune.dependency_groups(m, include_frozen=True)}
    assert groups["c"] is None and "adds an axis after the channels" in groups["e"]
    assert_surgery_equivalent(m, {"c": [0, 3]})
