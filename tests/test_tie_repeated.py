"""``tie_repeated``: repeated groups lose the same number of units per round,
so a class whose constructor shares one argument across them is kept after
`kprune.prune` (`kprune.methods.proposer.tie_sets`)."""

import functools

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.methods.proposer import tie_sets
from kprune.prune import prune


@keras.saving.register_keras_serializable("kprune_tests")
class Repeated(keras.Model):
    """A Functional subclass: `depth` convolutions of `width` filters, each
    named ``block_<i>_conv``, then a Dense of `hidden` units."""

    def __init__(self, width=12, depth=3, hidden=16, classes=3, **kwargs):
        x = keras.Input((8, 8, 2))
        y = x
        for i in range(depth):
            y = layers.Conv2D(width, 3, padding="same", activation="relu",
                              name=f"block_{i}_conv")(y)
        y = layers.GlobalAveragePooling2D(name="gap")(y)
        y = layers.Dense(hidden, activation="relu", name="fc")(y)
        super().__init__(x, layers.Dense(classes, activation="softmax", name="out")(y),
                         **kwargs)
        self.width, self.depth, self.hidden, self.classes = width, depth, hidden, classes

    def get_config(self):
        return {"width": self.width, "depth": self.depth, "hidden": self.hidden,
                "classes": self.classes, "name": self.name}


def _data(n=192, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 2)).astype("float32")
    y = (x[..., 0].mean((1, 2)) > 0).astype("int64") + (x[..., 1].mean((1, 2)) > 0)
    return x, y


@functools.lru_cache(maxsize=1)
def _trained_weights():
    model = _model(trained=False)
    x, y = _data()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return tuple(model.get_weights())


def _model(trained=True):
    keras.utils.set_random_seed(0)
    model = Repeated(name="repeated")
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    if trained:
        model.set_weights(list(_trained_weights()))
    return model


def _convs(model):
    return [model.get_layer(f"block_{i}_conv").filters for i in range(3)]


def test_tie_sets_join_names_equal_up_to_numbers_and_widths():
    groups = kprune.dependency_groups(_model())
    names = [[g.name for g in groups if g.index in s] for s in tie_sets(groups)]
    assert names == [["block_0_conv", "block_1_conv", "block_2_conv"]]
    # a key function decides instead (fc has another width: never tied to them)
    assert tie_sets(groups, key=lambda n: "all") == [
        [g.index for g in groups if g.name.startswith("block")]]
    assert tie_sets(groups, key=lambda n: None) == []


@pytest.mark.parametrize("method, options", [
    ("iap", dict(rate=0.3)),
    ("aiap", dict(target={"params_reduction": 0.4}, step=1.0)),
])
def test_tied_groups_lose_the_same_count_and_the_class_is_kept(method, options, tmp_path):
    x, y = _data()
    kw = dict(train_data=(x, y), val_data=_data(64, 1), epochs=1, rounds=2, seed=0,
              calibration_samples=64, **options)
    if method == "iap":
        kw["target"] = "none"
    free = prune(_model(), method, **kw).model
    tied = prune(_model(), method, tie_repeated=True, **kw).model
    # untied, the global ranking cuts the three convolutions differently: the
    # case where a tie is needed (this guards the test against a trivial pass)
    assert len(set(_convs(free))) > 1 and type(free) is not Repeated
    widths = _convs(tied)
    assert len(set(widths)) == 1 and widths[0] < 12
    assert type(tied) is Repeated and tied.width == widths[0], kprune.inlined_reasons(tied)
    path = tmp_path / "tied.keras"
    tied.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is Repeated and loaded.width == widths[0]
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0), tied.predict(x[:8], verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_bad_tie_repeated_is_refused_before_training():
    x, y = _data()
    with pytest.raises(ValueError, match="tie_repeated='yes' must be True, False or a function"):
        prune(_model(), "iap", train_data=(x, y), tie_repeated="yes")
    with pytest.raises(TypeError, match="tie_repeated"):
        prune(_model(), "complexity", train_data=(x, y), target=0.5, tie_repeated=True)


def test_keras_hub_encoder_layers_are_tied_per_role():
    pytest.importorskip("keras_hub")
    from tests.keras_hub_models import BUILDERS
    groups = kprune.dependency_groups(BUILDERS["bert"]())
    names = sorted(sorted(g.name for g in groups if g.index in s) for s in tie_sets(groups))
    roles = ["feedforward_intermediate_dense", "self_attention_layer:heads",
             "self_attention_layer:key_dim", "self_attention_layer:value_dim"]
    assert names == [[f"transformer_layer_{i}/{r}" for i in (0, 1)] for r in roles]
