"""Channel surgery: exact equivalence against the masked reference, plain
Keras results, and clear errors."""

import os

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.testing import assert_surgery_equivalent, random_removal
from tests import models


def _randomize_bn(model, seed=0):
    """Non-trivial BN statistics, so that slicing mistakes show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers if not hasattr(model, "_flatten_layers") else \
            model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, layers.BatchNormalization):
            w = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, v.shape).astype("float32")
                               if i in (0, 3) else
                               rng.normal(0, 0.3, v.shape).astype("float32")
                               for i, v in enumerate(w)])


@pytest.mark.parametrize("name", sorted(models.ALL))
@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_equivalent_to_masked_reference(name, fraction):
    model = models.ALL[name]()
    _randomize_bn(model)
    removal = random_removal(model, fraction=fraction, seed=1)
    assert removal, "every test model has prunable groups"
    pruned = assert_surgery_equivalent(model, removal)
    assert pruned.count_params() < model.count_params()


def test_lenet_groups_and_widths():
    model = models.lenet()
    groups = kprune.dependency_groups(model)
    assert [g.layers for g in groups] == [
        ["c1", "p1", "c2"], ["c2", "p2", "flat", "d1"], ["d1", "d2"],
        ["d2", "out"]]
    assert [g.channels for g in groups] == [6, 16, 120, 84]
    assert "channels=16" in repr(groups[1])
    pruned = kprune.remove_channels(model, {"c2": [0, 1, 2, 3], "d1": list(range(60))})
    assert pruned.get_layer("c2").filters == 12
    assert pruned.get_layer("d1").units == 60
    # Flatten -> Dense rows follow spatial x channel positions: 5*5*12 rows.
    assert pruned.get_layer("d1").kernel.shape == (300, 60)
    assert pruned.get_layer("out").units == 10


def test_residual_add_couples_channels():
    model = models.residual()
    groups = {g.name: g for g in kprune.dependency_groups(model)}
    stream = groups["stem"]
    for member in ("stem", "stem_bn", "b1_c2", "b1_bn2", "b1_add", "b1_out"):
        assert member in stream.layers
    assert stream.producers == ["stem", "b1_c2"]
    # Shortcut conv and block output are coupled through Subtract.
    assert groups["b2_short"].producers == ["b2_short", "b2_c2"]
    pruned = kprune.remove_channels(model, {"b1_c2": [1, 2]})
    assert pruned.get_layer("stem").filters == 6
    assert pruned.get_layer("b1_c2").filters == 6


def test_depthwise_multiplier_and_se():
    model = models.mobile()
    groups = {g.name: g for g in kprune.dependency_groups(model)}
    g = groups["stem"]
    assert g.channels == 8
    # Depthwise x2: output channel 2c and 2c+1 both belong to stem channel c.
    np.testing.assert_array_equal(g.channel_map("dw"), np.repeat(np.arange(8), 2))
    # SE: the expand conv is coupled with the depthwise output via Multiply.
    assert "se_expand" in g.producers
    pruned = kprune.remove_channels(model, {"stem": [0, 7]})
    assert pruned.get_layer("se_expand").filters == 12
    assert pruned.get_layer("dw").kernel.shape == (3, 3, 6, 2)


def test_concat_offsets_and_group_norm_blocks():
    model = models.concat_norms()
    groups = {g.name: g for g in kprune.dependency_groups(model)}
    # GroupNormalization(3) over 6 channels: units are blocks of 2 channels.
    assert groups["a"].channels == 3
    np.testing.assert_array_equal(groups["a"].channel_map("cat")[:6], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(groups["b"].channel_map("cat")[6:], [0, 1, 2, 3])
    pruned = kprune.remove_channels(model, {"a": [2], "b": [0, 3]})
    assert pruned.get_layer("a").filters == 4  # the whole GN block of channel 2
    assert pruned.get_layer("a_gn").groups == 2
    assert pruned.get_layer("c").kernel.shape[-2] == 6


def test_nested_sequential_and_shared_layers():
    model = models.nested_shared()
    groups = kprune.dependency_groups(model)
    names = [g.name for g in groups]
    assert "block/inner_c" in names and "shared_c" in names
    pruned = assert_surgery_equivalent(model, {"inner_c": [0, 4], "shared_c": [1]})
    assert isinstance(pruned.get_layer("block"), keras.Sequential)
    assert pruned.get_layer("block").get_layer("inner_c").filters == 4


def test_layer_norm_over_channels_is_inexact_but_correct():
    model = models.layer_norm()
    (group,) = kprune.dependency_groups(model)
    assert not group.exact and "LayerNormalization" in group.inexact_reasons[0]
    ln = model.get_layer("ln")
    ln.set_weights([np.linspace(0.5, 2, 6).astype("float32"),
                    np.linspace(-1, 1, 6).astype("float32")])
    pruned = kprune.remove_channels(model, {"c": [1, 4]})
    keep = [0, 2, 3, 5]
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    conv = keras.ops.convert_to_numpy(
        keras.Model(model.input, model.get_layer("c").output)(x))[..., keep]
    mean, var = conv.mean(-1, keepdims=True), conv.var(-1, keepdims=True)
    gamma, beta = [w[keep] for w in ln.get_weights()]
    ln_ref = (conv - mean) / np.sqrt(var + ln.epsilon) * gamma + beta
    got = keras.ops.convert_to_numpy(keras.Model(pruned.input, pruned.get_layer("ln").output)(x))
    np.testing.assert_allclose(got, ln_ref, atol=1e-4)


def test_input_model_unchanged_and_plain_keras(tmp_path):
    model = models.mobile()
    before = [w.copy() for w in model.get_weights()]
    pruned = kprune.remove_channels(model, random_removal(model, 0.5))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not any(type(l).__module__.startswith("kprune")
                   for l in pruned._flatten_layers(recursive=True))
    path = os.path.join(tmp_path, "pruned.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(pruned(x)), atol=1e-6)


def test_compiled_model_stays_compiled():
    model = models.lenet()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    pruned = kprune.remove_channels(model, {"d1": [0]})
    assert pruned.compiled
    assert pruned.optimizer is not model.optimizer
    assert isinstance(pruned.optimizer, keras.optimizers.Adam)


# -- bad input --------------------------------------------------------------

def test_removing_every_channel_is_an_error():
    model = models.lenet()
    with pytest.raises(ValueError, match="every channel of layer 'c1'"):
        kprune.remove_channels(model, {"c1": range(6)})


def test_out_of_range_index():
    with pytest.raises(ValueError, match="index 6 is out of range for layer 'c1'"):
        kprune.remove_channels(models.lenet(), {"c1": [6]})


def test_output_layer_not_prunable():
    with pytest.raises(ValueError, match="layer 'out'.*model output"):
        kprune.remove_channels(models.lenet(), {"out": [0]})


def test_unknown_layer_name():
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        kprune.remove_channels(models.lenet(), {"nope": [0]})


def test_ignored_layers_freeze_their_group():
    model = models.lenet()
    groups = kprune.dependency_groups(model, ignored_layers=["c2"])
    assert [g.name for g in groups] == ["c1", "d1", "d2"]
    with pytest.raises(ValueError, match="ignored_layers"):
        kprune.analyze(model, ["c2"]).resolve_removal({"c2": [0]})


class _Opaque(layers.Layer):
    def call(self, x):
        return x * 2.0


class _OpaqueWeighted(layers.Layer):
    """Uses its own weight in call: kprune cannot trace it."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def test_unsupported_layer_is_a_boundary_with_a_clear_error():
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, name="c1")(inp)
    x = _OpaqueWeighted(name="opaque")(x)
    x = layers.Conv2D(4, 3, name="c2")(x)
    x = layers.Flatten()(x)
    model = keras.Model(inp, layers.Dense(2)(x))
    assert [g.name for g in kprune.dependency_groups(model)] == ["c2"]
    with pytest.raises(ValueError, match=r"'opaque' \(_OpaqueWeighted\).*register_handler"):
        kprune.remove_channels(model, {"c1": [0]})


def _opaque_model():
    """c1 -> a weightless custom layer (x * 2) -> c2 -> Dense."""
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, name="c1")(inp)
    x = _Opaque(name="opaque")(x)
    x = layers.Conv2D(4, 3, name="c2")(x)
    return keras.Model(inp, layers.Dense(2)(layers.Flatten()(x)))


def test_weightless_custom_layer_is_traced_through():
    """A custom layer of keras.ops only (x * 2) is traced into its graph."""
    model = _opaque_model()
    assert [g.name for g in kprune.dependency_groups(model)] == ["c1", "c2"]
    assert_surgery_equivalent(model, {"c1": [0]})


def test_custom_handler_makes_a_custom_layer_prunable():
    class Scale(kprune.ChannelHandler):
        layer_types = (_Opaque,)

        def propagate(self, call, ctx):
            return [ctx.input_layout(call)]

    handler = kprune.register_handler(Scale())
    try:
        model = _opaque_model()
        assert [g.name for g in kprune.dependency_groups(model)] == ["c1", "c2"]
        assert_surgery_equivalent(model, {"c1": [0]})
    finally:
        kprune.unregister_handler(handler)


def test_subclassed_model_needs_a_graph():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = layers.Dense(3)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="Functional or Sequential"):
        kprune.dependency_groups(net)


def test_channels_first_is_rejected_by_name():
    inp = keras.Input((3, 8, 8))
    x = layers.Conv2D(4, 3, data_format="channels_first", name="cf")(inp)
    model = keras.Model(inp, layers.Dense(2)(layers.Flatten()(x)))
    with pytest.raises(ValueError, match="'cf'.*channels_last"):
        kprune.dependency_groups(model)


def test_register_handler_validates():
    with pytest.raises(TypeError, match="ChannelHandler instance"):
        kprune.register_handler(object())
    with pytest.raises(ValueError, match="layer_types is empty"):
        kprune.register_handler(kprune.ChannelHandler())


def test_per_channel_preprocessing_is_sliced():
    model = models.preprocessing_mid_graph()
    pruned = assert_surgery_equivalent(model, {"c": [1, 2]})
    assert pruned.get_layer("scale").scale == [0.5, 3.0]
    assert pruned.get_layer("flat").target_shape == (72,)
    np.testing.assert_allclose(pruned.get_layer("norm").get_weights()[0], [0.1, 0.4])


def _swiglu(sections=2):
    """Dense -> ops.split -> value * silu(gate) -> Dense (a SwiGLU FFN)."""
    i = keras.Input((5, 6))
    h = layers.Dense(8, name="up")(i)
    parts = keras.ops.split(h, sections, axis=-1)
    x = parts[0] * keras.ops.silu(parts[1])
    return keras.Model(i, layers.Dense(3, name="down")(x))


def test_split_into_equal_sections_couples_them():
    """ops.split into equal sections along the channels: unit i is channel
    i of every section, so the sections stay equal and the split's config
    is unchanged."""
    model = _swiglu()
    group = {g.name: g for g in kprune.dependency_groups(model)}["up"]
    assert group.channels == 4
    pruned = assert_surgery_equivalent(model, {"up": [0, 3]})
    assert pruned.get_layer("up").units == 4
    x = np.random.default_rng(0).normal(size=(2, 5, 6)).astype("float32")
    want = keras.ops.convert_to_numpy(model(x))
    assert keras.ops.convert_to_numpy(pruned(x)).shape == want.shape


def test_split_at_fixed_indices_is_a_boundary_with_the_reason():
    model = _swiglu(sections=[4])
    frozen = {g.name: g.frozen for g in kprune.dependency_groups(model, include_frozen=True)}
    assert "splits the channel axis at fixed indices" in frozen["up"]


def test_nearest_handler_class_wins_over_an_earlier_registered_base():
    """find_handler takes the handler of the layer's nearest class: a
    handler for a subclass also serves that subclass's subclasses, ahead of
    a handler registered earlier for the base class."""
    from kprune.core.handlers import find_handler

    class Base(layers.Layer):
        pass

    class Mid(Base):
        pass

    class Leaf(Mid):
        pass

    class ForBase(kprune.ChannelHandler):
        layer_types = (Base,)

    class ForMid(kprune.ChannelHandler):
        layer_types = (Mid,)

    base = kprune.register_handler(ForBase(), first=True)
    mid = kprune.register_handler(ForMid(), first=False)
    try:
        assert find_handler(Leaf()) is mid
        assert find_handler(Base()) is base
    finally:
        kprune.unregister_handler(base)
        kprune.unregister_handler(mid)
