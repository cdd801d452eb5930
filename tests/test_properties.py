"""Property-based surgery tests: random graphs built from the supported
layer set must prune to exactly the masked reference."""

import keras

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from keras import layers

import kprune
from kprune.testing import (VacuousComparison, assert_surgery_equivalent,
                            random_removal)

BLOCKS = ["conv", "conv_bn_relu", "depthwise", "separable", "residual",
          "concat", "se", "pool", "pad_crop", "group_norm", "prelu",
          "dense_pointwise", "transpose", "ops", "max_merge", "dropout"]


def _block(kind, x, draw, idx):
    n = lambda: draw(st.integers(2, 8))  # noqa: E731
    name = f"{kind}{idx}"
    if kind == "conv":
        act = draw(st.sampled_from([None, "relu", "tanh", "sigmoid"]))
        return layers.Conv2D(n(), 3, padding="same", activation=act, name=name)(x)
    if kind == "conv_bn_relu":
        x = layers.Conv2D(n(), 1, name=name)(x)
        x = layers.BatchNormalization(name=name + "_bn")(x)
        return layers.ReLU(name=name + "_relu")(x)
    if kind == "depthwise":
        m = draw(st.integers(1, 2))
        return layers.DepthwiseConv2D(3, depth_multiplier=m, padding="same",
                                      name=name)(x)
    if kind == "separable":
        return layers.SeparableConv2D(n(), 3, padding="same",
                                      depth_multiplier=draw(st.integers(1, 2)),
                                      name=name)(x)
    if kind == "residual":
        c = x.shape[-1]
        y = layers.Conv2D(c, 3, padding="same", name=name + "_a")(x)
        y = layers.BatchNormalization(name=name + "_bn")(y)
        return layers.Add(name=name)([x, y])
    if kind == "concat":
        a = layers.Conv2D(n(), 1, name=name + "_a")(x)
        b = layers.Conv2D(n(), 3, padding="same", name=name + "_b")(x)
        parts = [a, b, x] if draw(st.booleans()) else [a, b]
        return layers.Concatenate(name=name)(parts)
    if kind == "se":
        c = x.shape[-1]
        s = layers.GlobalAveragePooling2D(name=name + "_gap")(x)
        s = layers.Dense(max(1, c // 2), activation="relu", name=name + "_sq")(s)
        s = layers.Dense(c, activation="sigmoid", name=name + "_ex")(s)
        s = layers.Reshape((1, 1, c), name=name + "_rs")(s)
        return layers.Multiply(name=name)([x, s])
    if kind == "pool":
        cls = draw(st.sampled_from([layers.MaxPooling2D, layers.AveragePooling2D]))
        return cls(2, padding="same", name=name)(x)
    if kind == "pad_crop":
        x = layers.ZeroPadding2D(1, name=name + "_pad")(x)
        return layers.Cropping2D(1, name=name)(x)
    if kind == "group_norm":
        c = x.shape[-1]
        groups = draw(st.sampled_from([g for g in (1, 2, c) if c % g == 0]))
        return layers.GroupNormalization(groups=groups, name=name)(x)
    if kind == "prelu":
        return layers.PReLU(shared_axes=[1, 2], name=name)(x)
    if kind == "dense_pointwise":
        return layers.Dense(n(), activation="relu", name=name)(x)
    if kind == "transpose":
        x = layers.Conv2DTranspose(n(), 2, strides=2, name=name)(x)
        return layers.AveragePooling2D(2, name=name + "_down")(x)
    if kind == "ops":
        return x * keras.ops.sigmoid(x) + 0.5
    if kind == "max_merge":
        a = layers.Conv2D(n(), 1, name=name + "_a")(x)
        b = layers.Conv2D(a.shape[-1], 1, name=name + "_b")(x)
        return layers.Maximum(name=name)([a, b])
    if kind == "dropout":
        return layers.SpatialDropout2D(0.3, name=name)(x)
    raise AssertionError(kind)


@st.composite
def random_models(draw):
    keras.utils.set_random_seed(draw(st.integers(0, 2**16)))
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(draw(st.integers(2, 8)), 3, padding="same", name="stem")(inp)
    kinds = draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=6))
    for i, kind in enumerate(kinds):
        x = _block(kind, x, draw, i)
    if draw(st.booleans()):
        x = layers.Flatten(name="flat")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(draw(st.integers(2, 8)), activation="relu", name="fc")(x)
    return keras.Model(inp, layers.Dense(3, name="out")(x))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(model=random_models(), fraction=st.floats(0.1, 0.7),
       seed=st.integers(0, 1000))
def test_random_graphs_prune_exactly(model, fraction, seed):
    groups = kprune.dependency_groups(model)
    assert groups  # at least the Dense 'fc' group
    removal = random_removal(model, fraction=fraction, seed=seed)
    if not removal:
        return
    try:
        pruned = assert_surgery_equivalent(model, removal)
    except VacuousComparison:
        assume(False)  # too many of these fails the health check
    assert pruned.count_params() < model.count_params()
    for g in groups:
        assert g.layers[0] in g.producers and g.channels >= 1
    # Widths after surgery agree with the group bookkeeping.
    after = {g.name: g.channels for g in kprune.dependency_groups(pruned)}
    removed_units = {}
    for g in groups:
        for layer, idx in removal.items():
            if layer in g.producers:
                cmap = g.channel_map(layer)
                removed_units.setdefault(g.name, set()).update(
                    int(cmap[i]) for i in idx)
    for g in groups:
        if g.name in after:
            assert after[g.name] == g.channels - len(removed_units.get(g.name, ()))

