"""kprune.runtime.resize.WidthMap (a converted flatbuffer re-widthed without
the converter) and the latency planner that prices its candidates with it."""

import math

import keras
import numpy as np
import pytest

import kprune
import kprune.zoo
from kprune.bench import flatbuffer
from kprune.core.surgery import remove_channels
from kprune.methods.complexity import plan_latency_pruning
from kprune.methods.device_budget import flatbuffer_for
from kprune.runtime import litert
from kprune.runtime.resize import WidthMap, probe_widths


def _cut(model, analysis, widths):
    removal = {}
    for g in analysis.groups:
        if g.name in widths and widths[g.name] < g.channels:
            removal.update(g.to_layer_indices(range(widths[g.name], g.channels)))
    return remove_channels(model, removal, analysis=analysis)


def _structure(flat):
    """Every op with its tensors' shapes, types, constant sizes and
    quantization lengths, in op order (constants are numbered differently
    from one conversion to the next; their positions in the ops are not)."""
    g = flatbuffer.parse(flat)

    def t(i):
        x = g.tensors[i]
        return (x.shape, x.type, x.constant and x.nbytes, x.n_scales, x.n_zero_points)

    return [(op.name, [t(i) for i in op.inputs if i >= 0], [t(i) for i in op.outputs])
            for op in g.operators]


def test_probe_widths_have_distinct_ratios():
    w = probe_widths({"a": 16, "b": 16, "c": 8, "d": 4, "e": 1})
    assert set(w) == {"a", "b", "c", "d"}  # 'e' cannot shrink
    ratios = [w[k] / c for k, c in (("a", 16), ("b", 16), ("c", 8), ("d", 4))]
    assert len(set(ratios)) == 4 and all(0 < r < 1 for r in ratios)
    assert all(v >= 2 for v in probe_widths({"a": 8, "b": 8}, min_channels=2).values())


def test_lenet5_rewidthed_equals_a_conversion_and_runs():
    """LeNet-5 int8 (convolutions, pools, Flatten -> Dense): the re-widthed
    flatbuffer has exactly the converted pruned model's ops, shapes, constant
    sizes and quantization arrays, and LiteRT runs it."""
    keras.utils.set_random_seed(0)
    model = kprune.zoo.lenet5()
    analysis = kprune.analyze(model)
    channels = {g.name: g.channels for g in analysis.groups}
    probe = probe_widths(channels)
    wm = WidthMap.infer(flatbuffer_for(model), flatbuffer_for(_cut(model, analysis, probe)),
                        channels, probe)
    assert wm.groups == sorted(channels)
    widths = {"conv1": 3, "conv2": 8, "fc1": 50, "fc2": 21}
    flat = wm.resize(widths)
    assert wm.resized == 1
    assert _structure(flat) == _structure(flatbuffer_for(_cut(model, analysis, widths)))
    out = litert.predict(flat, np.zeros((1, 28, 28, 1), np.float32))
    assert np.asarray(out[0]).shape == (1, 10)
    assert litert.interleaved_latency([flat], num_threads=1, runs=5, rounds=1)[0].median_ms > 0
    with pytest.raises(ValueError, match="width 7 of group 'conv1' must be in"):
        wm.resize({"conv1": 7})


def _concat_model():
    inp = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="a")(inp)
    b = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="b")(inp)
    x = keras.layers.Concatenate(name="cat")([a, b])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def _conv_widths(flat):
    g = flatbuffer.parse(flat)
    return [g.tensors[op.inputs[1]].shape[0] for op in g.operators if op.name == "CONV_2D"]


def _stair_latency(flat):
    """A device whose conv kernels work on blocks of 8 output channels."""
    return 1e-4 * (1 + sum(math.ceil(c / 8) for c in _conv_widths(flat)))


def _two_convs(width=32):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def test_planner_converts_three_models_instead_of_every_candidate():
    """Re-widthing: the model, one probe and the result are converted; every
    staircase point and search step is priced without the converter, and the
    result lands in the same window as the converting planner's."""
    keras.utils.set_random_seed(0)
    model = _two_convs(32)
    target = 0.6 * _stair_latency(flatbuffer_for(model, None)) * 1e3
    kw = dict(latency_fn=_stair_latency, quantization=None, reinit=False, repeats=1,
              staircase_probes=5)
    fast, steps = plan_latency_pruning(model, target, **kw)
    slow, slow_steps = plan_latency_pruning(model, target, rewidth=False, **kw)
    plan = steps[0]["planner"]
    assert plan["conversions"] == 3 and plan["rewidthed"] >= 10
    assert not slow_steps[0]["planner"]["rewidth"]
    assert slow_steps[0]["planner"]["conversions"] > 3 * plan["conversions"]
    for m in (fast, slow):
        achieved = _stair_latency(flatbuffer_for(m, None)) * 1e3
        assert 0.9 * target <= achieved <= target
        assert all(w % 8 == 0 for w in _conv_widths(flatbuffer_for(m, None)))
    assert steps[-1]["latency_ms"] == pytest.approx(steps[-1]["latency_ms_rewidthed"])


def test_a_graph_rewidthing_cannot_follow_falls_back_to_conversions():
    """A concatenation carries two groups in one dimension: the map refuses
    it with the reason and the planner converts every candidate instead."""
    keras.utils.set_random_seed(0)
    model = _concat_model()
    analysis = kprune.analyze(model)
    channels = {g.name: g.channels for g in analysis.groups}
    probe = probe_widths(channels)
    with pytest.raises(ValueError, match="not one group's width"):
        WidthMap.infer(flatbuffer_for(model, None),
                       flatbuffer_for(_cut(model, analysis, probe), None), channels, probe)
    target = 0.8 * _stair_latency(flatbuffer_for(model, None)) * 1e3  # one block less
    fast, steps = plan_latency_pruning(model, target, latency_fn=_stair_latency,
                                       quantization=None, reinit=False, repeats=1,
                                       staircase=False)
    assert "cannot be re-widthed" in steps[0]["rewidth_note"]
    assert "not one group's width" in steps[0]["rewidth_note"]
    assert _stair_latency(flatbuffer_for(fast, None)) * 1e3 <= target


# -- widths rounded to the latency staircase (latency_steps) ------------------------


def test_limit_removal_rounds_to_step_widths():
    from kprune.methods.selection import limit_removal

    s = np.arange(16.0)
    # 3 asked of 16 with a step at 8: rounding to 16 would cancel, so down to 8
    assert limit_removal(s, s < 3, 16, steps=[8]).size == 8
    assert limit_removal(s, s < 3, 16).size == 3                    # no steps: as asked
    assert limit_removal(s, s < 10, 16, steps=[8]).size == 10       # below the last step
    assert limit_removal(np.arange(32.0), np.arange(32) < 11, 32, steps=[24, 16, 8]).size == 8


def test_latency_steps_option_is_checked_before_training():
    keras.utils.set_random_seed(0)
    model = _two_convs(8)
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.zeros((8, 8, 8, 1), np.float32), np.zeros(8, np.int64)
    # latency_fn measures a budget or the staircase: alone with a MAC target it is refused
    with pytest.raises(ValueError, match="latency_fn= prices a latency budget or measures "
                                         "the latency staircase: .*latency_steps=True"):
        kprune.prune(model, "iap", train_data=(x, y), target={"macs_reduction": 0.5},
                     latency_fn=_stair_latency)
    with pytest.raises(ValueError, match="latency_steps=True and round_to=4 both round"):
        kprune.prune(model, "iap", train_data=(x, y), target_latency_ms=1.0,
                     latency_fn=_stair_latency, latency_steps=True, round_to=4)
    with pytest.raises(ValueError, match="latency_steps='yes' must be True, False or None"):
        kprune.prune(model, "iap", train_data=(x, y), target_latency_ms=1.0,
                     latency_fn=_stair_latency, latency_steps="yes")


def _bright_images():
    """64 random 8x8 images labelled by whether their mean is above 0.5."""
    x = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32)
    return x, (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)


@pytest.mark.parametrize("method", ["iap", "aiap"])
def test_latency_steps_round_the_widths_of_a_mac_target(method):
    """latency_steps=True with a MAC target: the staircase is measured with
    latency_fn (a device with blocks of 8 output channels) and every round
    keeps whole blocks, while the target is still reached; without it some
    round keeps a width inside a block."""
    x, y = _bright_images()
    rounds, final = {}, {}
    for steps in (True, None):
        keras.utils.set_random_seed(0)
        model = _two_convs(32)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        extra = dict(latency_fn=_stair_latency, latency_quantization=None) if steps else {}
        r = kprune.prune(model, method, train_data=(x[:48], y[:48]), val_data=(x[48:], y[48:]),
                         target={"macs_reduction": 0.75}, latency_steps=steps, rounds=4,
                         epochs=1, batch_size=16, seed=0, **extra)
        rounds[steps] = [w for e in r.history for k, w in e["widths"].items()
                         if k in ("c1", "c2")]
        final[steps] = kprune.profile(model).macs / kprune.profile(r.model).macs
    assert all(w % 8 == 0 for w in rounds[True]) and min(rounds[True]) < 32, rounds
    assert any(w % 8 for w in rounds[None]), rounds
    assert final[True] >= 2.0, final  # pruned toward the 4x target, not stalled


def test_iap_with_a_latency_target_keeps_widths_on_the_staircase():
    """On a device whose convolutions work in blocks of 8 channels, IAP with
    target_latency_ms keeps whole blocks by default; latency_steps=False
    does not round."""
    x, y = _bright_images()
    widths, rounds = {}, {}
    for steps in (None, False):
        keras.utils.set_random_seed(0)
        model = _two_convs(32)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        target = 0.7  # ms: 6 of the 9 blocks' worth (0.9 ms unpruned)
        r = kprune.prune(model, "iap", train_data=(x[:48], y[:48]), val_data=(x[48:], y[48:]),
                         target_latency_ms=target, latency_fn=_stair_latency,
                         latency_quantization=None, latency_steps=steps, rounds=4,
                         epochs=1, batch_size=16, seed=0)
        widths[steps] = _conv_widths(flatbuffer_for(r.model, None))
        # every round's conv widths, not only the returned one's
        rounds[steps] = [w for e in r.history for k, w in e["widths"].items()
                         if k in ("c1", "c2")]
        if steps is None:
            assert _stair_latency(flatbuffer_for(r.model, None)) * 1e3 <= target + 1e-9
    assert all(w % 8 == 0 for w in widths[None]) and widths[None] != [32, 32], widths
    assert all(w % 8 == 0 for w in rounds[None]), rounds
    # without the staircase some round keeps a width off it (the returned model
    # may still land on one: 24 / 24 with one batch order)
    assert any(w % 8 for w in rounds[False]), rounds
