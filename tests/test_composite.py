"""Composite layers (a Layer whose call composes Keras layers and keras.ops)
are traced into their inner graph; Functional subclasses are pruned as the
plain graph behind them."""

import keras
import numpy as np
import pytest
from keras import layers, ops

import kprune
from kprune.core.composite import functional_view, untraced_reason
from kprune.testing import assert_surgery_equivalent, random_removal


class ResidualBlock(layers.Layer):
    """conv-bn-relu-conv-bn + identity, then relu (a keras.ops add)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv1 = layers.Conv2D(filters * 2, 3, padding="same", name="conv1")
        self.bn1 = layers.BatchNormalization(name="bn1")
        self.conv2 = layers.Conv2D(filters, 3, padding="same", name="conv2")

    def call(self, x):
        y = ops.relu(self.bn1(self.conv1(x)))
        return ops.relu(ops.add(self.conv2(y), x))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


class OwnWeights(layers.Layer):
    """Uses its own weight in call: cannot be traced."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


class Branchy(layers.Layer):
    """Python branching on a tensor value: cannot be traced."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(8)

    def build(self, shape):
        self.dense.build(shape)

    def compute_output_shape(self, shape):
        return tuple(shape[:-1]) + (8,)

    def call(self, x):
        if ops.sum(x) > 0:
            return self.dense(x)
        return self.dense(-x)


def _model(block):
    x = keras.Input((8, 8, 3))
    y = layers.Conv2D(8, 3, padding="same", name="stem")(x)
    y = block(y)
    y = layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, layers.Dense(4, name="head")(y))


def test_composite_is_traced_and_pruned_exactly(tmp_path):
    model = _model(ResidualBlock(8, name="block"))
    groups = kprune.dependency_groups(model)
    names = [g.name for g in groups]
    assert "block/conv1" in names  # the inner conv is prunable
    assert any("block/conv2" in g.layers and "stem" in g.layers for g in groups)
    removal = random_removal(model, fraction=0.3, seed=0)
    pruned = assert_surgery_equivalent(model, removal)
    inner = pruned.get_layer("block")
    assert inner.get_layer("conv1").filters < 16
    pruned.save(tmp_path / "m.keras")  # no custom object needed to load it
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), pruned(x), rtol=1e-6, atol=1e-6)


def test_shared_composite_is_one_sub_model():
    block = ResidualBlock(8, name="shared")
    x = keras.Input((8, 8, 3))
    y = layers.Conv2D(8, 3, padding="same", name="stem")(x)
    y = block(block(y))
    model = keras.Model(x, layers.Dense(4)(layers.GlobalAveragePooling2D()(y)))
    view = functional_view(model)
    assert sum(1 for l in view.layers if l.name == "shared") == 1
    assert_surgery_equivalent(model, random_removal(model, fraction=0.3, seed=2))


@pytest.mark.parametrize("block, words", [
    (OwnWeights(name="own"), "uses its own weights"),
    (Branchy(name="branchy"), "cannot be traced"),
])
def test_untraceable_composite_is_a_boundary_with_reason(block, words):
    model = _model(block)
    groups = kprune.dependency_groups(model, include_frozen=True)
    stem = [g for g in groups if g.name == "stem"][0]
    assert stem.frozen is not None and words in stem.frozen, stem.frozen
    assert block.name in stem.frozen
    assert words in untraced_reason(block)
    with pytest.raises(ValueError, match=words):
        kprune.remove_channels(model, {"stem": [0]})


class TinyNet(keras.Model):
    """A Functional subclass whose config holds constructor arguments."""

    def __init__(self, width=8, **kwargs):
        x = keras.Input((8, 8, 3))
        y = layers.Conv2D(width, 3, name="c1", activation="relu")(x)
        y = layers.Conv2D(width, 3, name="c2", activation="relu")(y)
        y = layers.GlobalAveragePooling2D()(y)
        super().__init__(x, layers.Dense(3, name="out")(y), **kwargs)
        self.width = width

    def get_config(self):
        return {"width": self.width, "name": self.name}


def test_functional_subclass_prunes_to_a_plain_model(tmp_path):
    model = TinyNet(width=8, name="tiny")
    pruned = assert_surgery_equivalent(model, {"c1": [0, 3], "c2": [1]})
    assert type(pruned) is not TinyNet and isinstance(pruned, keras.Model)
    assert pruned.get_layer("c1").filters == 6
    assert pruned.get_layer("c2").filters == 7
    assert pruned.name == "tiny"
    pruned.save(tmp_path / "t.keras")
    loaded = keras.saving.load_model(tmp_path / "t.keras")
    x = np.ones((1, 8, 8, 3), "float32")
    np.testing.assert_allclose(loaded(x), pruned(x), rtol=1e-6, atol=1e-6)


def test_plain_models_are_left_as_they_are():
    model = _model(layers.ReLU())
    assert functional_view(model) is model


def test_token_select_and_pad_keep_channels():
    """x[:, 0, :] (a pooler's first token) and ops.pad over positions pass
    channels through; over the channel axis they are boundaries."""
    x = keras.Input((6, 4))
    h = layers.Dense(8, name="d1")(x)
    first = h[:, 0, :]
    padded = ops.pad(h, ((0, 0), (1, 1), (0, 0)))
    y = layers.Dense(3, name="o1")(first)
    z = layers.Dense(3, name="o2")(layers.Flatten()(padded))
    model = keras.Model(x, [y, z])
    assert [g.name for g in kprune.dependency_groups(model)] == ["d1"]
    assert_surgery_equivalent(model, {"d1": [1, 5]})
    x2 = keras.Input((6, 4))
    h2 = layers.Dense(8, name="d2")(x2)
    cut = layers.Dense(3)(ops.pad(h2, ((0, 0), (0, 0), (0, 2))))
    groups = kprune.dependency_groups(keras.Model(x2, cut), include_frozen=True)
    assert "pads along the channel axis" in [g for g in groups if g.name == "d2"][0].frozen


def test_random_composite_models_prune_exactly():
    """Random models of composite layers (tests/random_graphs.py): traced
    composites prune exactly, untraceable ones stay whole, and the pruned
    model round-trips through .keras."""
    from tests.random_graphs import random_composite_model
    from tests.surgery_fuzz import FAILURES, check_model

    statuses = []
    for seed in range(8):
        result = check_model(random_composite_model(seed), seed)
        assert result["status"] not in FAILURES, (seed, result.get("error"),
                                                  result.get("traceback"))
        statuses.append(result["status"])
        keras.backend.clear_session(free_memory=False)
    assert statuses.count("ok") >= 4, statuses


def test_ignored_layers_may_name_a_layer_inside_a_composite():
    """`ignored_layers='block/conv1'` keeps that inner conv whole (checked
    against the traced view, before any training); a wrong inner name is
    still refused with the argument's name."""
    model = _model(ResidualBlock(8, name="block"))
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 4, size=64)
    res = kprune.prune(model, "ilp", train_data=(x[:48], y[:48]), val_data=(x[48:], y[48:]),
                       rounds=1, target="none", ignored_layers=["block/conv1"])
    assert res.model.get_layer("block").get_layer("conv1").filters == 16
    assert res.final["params"] < res.baseline["params"]  # the rest was pruned
    with pytest.raises(ValueError, match=r"ignored_layers: .*block/nope"):
        kprune.prune(model, "ilp", train_data=(x, y), ignored_layers=["block/nope"])


class ScoredBlock(layers.Layer):
    """Returns `(y, None)` like keras-hub DeiT's encoder block."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(12, activation="relu", name="hidden")
        self.out = layers.Dense(6, name="out")

    def call(self, x):
        return self.out(self.hidden(x)), None


class PlaceholderEncoder(layers.Layer):
    """Calls a `(y, None)` block and returns an `ops.empty` placeholder next
    to its output, like DeiT's encoder."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.block = ScoredBlock(name="block")

    def call(self, x):
        y, _ = self.block(x)
        return y, ops.empty((0, 6), dtype=x.dtype)

    def compute_output_shape(self, shape):
        return tuple(shape[:-1]) + (6,), (0, 6)


def test_composite_returning_none_and_placeholders_is_traced():
    x = keras.Input((5, 6))
    y, _ = PlaceholderEncoder(name="enc")(layers.Dense(6, name="stem")(x))
    model = keras.Model(x, layers.Dense(3, name="head")(y))
    names = [g.name for g in kprune.dependency_groups(model)]
    assert "enc/block/hidden" in names, names
    pruned = assert_surgery_equivalent(model, {"enc/block/hidden": [0, 4, 7]})
    assert pruned.get_layer("enc").get_layer("block").get_layer("hidden").units == 9
