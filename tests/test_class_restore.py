"""Surgery keeps the class of a composite layer or a Functional subclass
where its constructor arguments express the pruned widths, and returns the
inlined plain graph with a reason otherwise (`kprune.core.class_restore`)."""

import keras
import numpy as np
import pytest
from keras import layers, ops

import kprune
from kprune.testing import assert_surgery_equivalent


@keras.saving.register_keras_serializable("kprune_tests")
class ConvBNReLU(layers.Layer):
    """conv-bn-relu with a `filters` argument."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = layers.Conv2D(filters, 3, padding="same", name="conv")
        self.bn = layers.BatchNormalization(name="bn")

    def call(self, x):
        return ops.relu(self.bn(self.conv(x)))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable("kprune_tests")
class MLPBlock(layers.Layer):
    """Dense(units, relu) -> Dense(out) with a residual add when out fits."""

    def __init__(self, units, out, **kwargs):
        super().__init__(**kwargs)
        self.units, self.out = units, out
        self.hidden = layers.Dense(units, activation="relu", name="hidden")
        self.proj = layers.Dense(out, name="proj")

    def call(self, x):
        return self.proj(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "out": self.out}


@keras.saving.register_keras_serializable("kprune_tests")
class WideNet(keras.Model):
    """A Functional subclass: two convs of `width`, an MLP of `hidden`."""

    def __init__(self, width=8, hidden=12, classes=3, **kwargs):
        x = keras.Input((8, 8, 3))
        y = layers.Conv2D(width, 3, activation="relu", name="c1")(x)
        y = layers.Conv2D(width, 3, activation="relu", name="c2")(y)
        y = layers.GlobalAveragePooling2D(name="gap")(y)
        y = layers.Dense(hidden, activation="relu", name="fc")(y)
        super().__init__(x, layers.Dense(classes, name="out")(y), **kwargs)
        self.width, self.hidden, self.classes = width, hidden, classes

    def get_config(self):
        return {"width": self.width, "hidden": self.hidden, "classes": self.classes,
                "name": self.name}


def _blocks_model():
    x = keras.Input((8, 8, 3))
    y = ConvBNReLU(12, name="cbr1")(x)
    y = ConvBNReLU(10, name="cbr2")(y)
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, MLPBlock(20, 4, name="mlp")(y))


def _round_trip(model, tmp_path, x):
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(keras.tree.flatten(model(x)), keras.tree.flatten(loaded(x))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    return loaded


def test_composite_layers_keep_their_class(tmp_path):
    model = _blocks_model()
    removal = {"cbr1/conv": [0, 5, 7], "cbr2/conv": [1, 2], "mlp/hidden": [3, 4, 9, 11, 19]}
    pruned = assert_surgery_equivalent(model, removal)
    assert kprune.inlined_reasons(pruned) == {}
    assert type(pruned.get_layer("cbr1")) is ConvBNReLU
    assert pruned.get_layer("cbr1").filters == 9
    assert pruned.get_layer("cbr2").filters == 8
    assert type(pruned.get_layer("mlp")) is MLPBlock
    assert pruned.get_layer("mlp").units == 15 and pruned.get_layer("mlp").out == 4
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    loaded = _round_trip(pruned, tmp_path, x)
    assert type(loaded.get_layer("cbr2")) is ConvBNReLU
    assert loaded.get_layer("mlp").units == 15
    # and it prunes again, from the kept classes
    again = assert_surgery_equivalent(pruned, {"cbr2/conv": [0]})
    assert again.get_layer("cbr2").filters == 7


def test_keep_classes_false_returns_the_inlined_graph():
    model = _blocks_model()
    pruned = kprune.remove_channels(model, {"cbr1/conv": [0]}, keep_classes=False)
    assert type(pruned.get_layer("cbr1")).__name__ == "Functional"
    assert pruned.get_layer("cbr1").get_layer("conv").filters == 11


@keras.saving.register_keras_serializable("kprune_tests")
class TwoConvs(layers.Layer):
    """Two convs sharing one `filters` argument: only a uniform cut fits."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.a = layers.Conv2D(filters, 3, padding="same", name="a")
        self.b = layers.Conv2D(filters, 3, padding="same", name="b")

    def call(self, x):
        return self.b(ops.relu(self.a(x)))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def test_composite_falls_back_to_inlined_graph_with_reason(tmp_path):
    x = keras.Input((8, 8, 3))
    y = TwoConvs(8, name="two")(x)
    model = keras.Model(x, layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(y)))
    # 'two/a' loses 2 channels and 'two/b' 1: one `filters` cannot say that
    pruned = assert_surgery_equivalent(model, {"two/a": [0, 1], "two/b": [3]})
    reasons = kprune.inlined_reasons(pruned)
    assert "two" in reasons and "width 8 was pruned to 2 different widths" in reasons["two"]
    assert "prune uniformly" in reasons["two"]
    assert type(pruned.get_layer("two")).__name__ == "Functional"
    _round_trip(pruned, tmp_path, np.ones((1, 8, 8, 3), "float32"))
    # a uniform cut keeps the class
    kept = assert_surgery_equivalent(model, {"two/a": [0, 1], "two/b": [3, 4]})
    assert type(kept.get_layer("two")) is TwoConvs and kept.get_layer("two").filters == 6
    assert kprune.inlined_reasons(kept) == {}


def test_functional_subclass_keeps_its_class(tmp_path):
    model = WideNet(width=8, hidden=12, name="wide")
    pruned = assert_surgery_equivalent(model, {"c1": [0, 3], "c2": [1, 6], "fc": [0, 1, 2]})
    assert type(pruned) is WideNet
    assert (pruned.width, pruned.hidden, pruned.classes) == (6, 9, 3)
    assert pruned.name == "wide" and kprune.inlined_reasons(pruned) == {}
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    loaded = _round_trip(pruned, tmp_path, x)
    assert type(loaded) is WideNet and loaded.width == 6


def test_functional_subclass_falls_back_with_reason(tmp_path):
    model = WideNet(width=8, hidden=12, name="wide")
    pruned = assert_surgery_equivalent(model, {"c1": [0, 3], "c2": [1]})
    assert type(pruned) is not WideNet and isinstance(pruned, keras.Model)
    assert pruned.get_layer("c1").filters == 6 and pruned.get_layer("c2").filters == 7
    why = kprune.inlined_reasons(pruned)["wide"]
    assert "width 8 was pruned to 2 different widths (6, 7)" in why, why
    _round_trip(pruned, tmp_path, np.ones((1, 8, 8, 3), "float32"))


def _uniform(analysis, pick, fraction=0.25, seed=0):
    """Removes the same number of random units from every group `pick` names."""
    rng = np.random.default_rng(seed)
    removal = {}
    for g in analysis.groups:
        if pick(g.name):
            units = rng.choice(g.channels, size=int(g.channels * fraction), replace=False)
            for layer, idx in g.to_layer_indices(sorted(units)).items():
                removal.setdefault(layer, []).extend(idx)
    return removal


@pytest.mark.parametrize("name, pick, check", [
    ("bert", lambda n: "feedforward" in n, lambda m: m.intermediate_dim == 24),
    ("llama", lambda n: "feedforward" in n, lambda m: m.intermediate_dim == 48),
    ("vgg", lambda n: n.startswith("block1"), lambda m: m.stackwise_num_filters == [12, 32]),
])
def test_keras_hub_backbone_keeps_its_class(name, pick, check, tmp_path):
    pytest.importorskip("keras_hub")
    from kprune.testing import calibrate_batchnorm
    from tests.keras_hub_models import BUILDERS, sample_inputs
    model = BUILDERS[name]()
    x = sample_inputs(model)
    calibrate_batchnorm(model, x)
    analysis = kprune.analyze(model)
    removal = _uniform(analysis, pick)
    pruned = assert_surgery_equivalent(model, removal, inputs=x)
    assert type(pruned) is type(model), kprune.inlined_reasons(pruned)
    assert check(pruned)
    loaded = _round_trip(pruned, tmp_path, x)
    assert type(loaded) is type(model) and check(loaded)


def test_keras_hub_backbone_non_uniform_falls_back_with_reason():
    pytest.importorskip("keras_hub")
    from tests.keras_hub_models import BUILDERS, sample_inputs
    model = BUILDERS["bert"]()
    removal = {"transformer_layer_0/feedforward_intermediate_dense": [0, 1, 2],
               "transformer_layer_1/feedforward_intermediate_dense": [5]}
    pruned = assert_surgery_equivalent(model, removal, inputs=sample_inputs(model))
    assert type(pruned) is not type(model)
    why = kprune.inlined_reasons(pruned)
    assert "width 32 was pruned to 2 different widths" in why.get(model.name, ""), why
    # each encoder layer still keeps its own class with its own width
    layer0 = pruned.get_layer("transformer_layer_0")
    assert type(layer0).__name__ == "TransformerEncoder" and layer0.intermediate_dim == 29
    assert pruned.get_layer("transformer_layer_1").intermediate_dim == 31


def test_nested_functional_subclass_keeps_its_class(tmp_path):
    inner = WideNet(width=8, hidden=12, classes=5, name="inner")
    x = keras.Input((8, 8, 3))
    model = keras.Model(x, layers.Dense(2, name="top")(inner(x)))
    pruned = assert_surgery_equivalent(model, {"c1": [2], "c2": [5], "fc": [1, 2]})
    assert type(pruned.get_layer("inner")) is WideNet, kprune.inlined_reasons(pruned)
    assert (pruned.get_layer("inner").width, pruned.get_layer("inner").hidden) == (7, 10)
    loaded = _round_trip(pruned, tmp_path, np.ones((2, 8, 8, 3), "float32"))
    assert type(loaded.get_layer("inner")) is WideNet
    # non-uniform: the nested model is a plain graph, with the reason
    plain = assert_surgery_equivalent(model, {"c1": [2, 3], "c2": [5]})
    assert type(plain.get_layer("inner")) is not WideNet
    assert "2 different widths" in kprune.inlined_reasons(plain)["inner"]
