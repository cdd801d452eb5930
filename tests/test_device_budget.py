"""kprune.methods.device_budget: pricing a model against an arena or latency
budget, and the latency staircase of plan_latency_pruning."""

import json
import math

import keras
import numpy as np
import pytest

import kprune
from kprune.bench import arena_estimate, flatbuffer, tflm
from kprune.export import synthetic_calibration, to_tflite
from kprune.methods.complexity import latency_staircase, plan_latency_pruning
from kprune.methods.device_budget import (DeviceBudget, interleaved_ms, minimal_model,
                                          reachable_floor)

pytest.importorskip("tflite_micro")


def _peaky():
    """c1's activations hold the arena's peak (c1 output + pool output);
    c2's are smaller, so removing c2 channels saves no arena bytes."""
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(x))


def _two_convs(width=32):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


@pytest.fixture(scope="module")
def peaky():
    keras.utils.set_random_seed(0)
    return _peaky()


def _size_latency(flat):
    """A deterministic stand-in for a device: 1 us per 100 flatbuffer bytes."""
    return len(flat) * 1e-8


def _conv_widths(flat):
    g = flatbuffer.parse(flat)
    return [g.tensors[op.inputs[1]].shape[0] for op in g.operators if op.name == "CONV_2D"]


def _stair_latency(flat):
    """A device whose conv kernels work on blocks of 8 output channels:
    0.1 ms per block, plus 0.1 ms."""
    return 1e-4 * (1 + sum(math.ceil(c / 8) for c in _conv_widths(flat)))


# -- arena ----------------------------------------------------------------------


def test_arena_estimate_and_measure_agree_with_the_runtime(peaky):
    budget = DeviceBudget("arena_bytes", 4096)
    flat = to_tflite(peaky, "int8", representative_data=synthetic_calibration(peaky))
    runtime = tflm.tflm_arena_bytes(flat)
    assert budget.estimate(peaky) == arena_estimate(flat)
    assert abs(budget.estimate(peaky) - runtime) <= 16  # the tail model's documented error
    assert budget.measure(peaky) == runtime
    assert budget.estimate(flat) == arena_estimate(flat)  # bytes are priced as given
    assert not budget.met(runtime) and budget.met(4096) and not budget.met(4097)
    assert budget.low == pytest.approx(0.9 * 4096)


def test_arena_group_weights_are_marginal_bytes_per_channel(peaky):
    budget = DeviceBudget("arena_bytes", 4096)
    analysis = kprune.analyze(peaky)
    assert [g.name for g in analysis.groups] == ["c1", "c2"]
    w = budget.group_weights(peaky, analysis)
    assert sorted(w) == [0, 1]
    assert np.mean(list(w.values())) == pytest.approx(1.0)
    # Independently: the arena saved by cutting 4 of c1's 16 channels, per
    # channel; c2's tensors are not at the peak, so it saves nothing.
    c1 = analysis.groups[0]
    cut = kprune.remove_channels(peaky, c1.to_layer_indices(range(12, 16)), analysis=analysis)
    saved = (arena_estimate(peaky) - arena_estimate(cut)) / 4
    assert saved > 0
    assert w[1] == 0.0
    assert w[0] == pytest.approx(2.0)  # all of the mean-1 mass: (saved + 0) / 2 = mean


def test_reachable_floor_is_the_smallest_model(peaky):
    budget = DeviceBudget("arena_bytes", 100)
    floor = reachable_floor(budget, peaky)
    assert floor == arena_estimate(minimal_model(peaky))
    assert floor < budget.estimate(peaky)
    kept = reachable_floor(budget, peaky, ignored_layers=["c1"])
    assert floor < kept == arena_estimate(minimal_model(peaky, ignored_layers=["c1"]))
    assert reachable_floor(budget, peaky, min_channels=4) > floor


# -- latency --------------------------------------------------------------------


def test_latency_estimate_is_cached_median_in_ms():
    keras.utils.set_random_seed(0)
    model = _two_convs(8)
    values = iter([3e-3, 1e-3, 2e-3, 9.0])
    calls = []

    def fn(flat):
        calls.append(len(flat))
        return next(values)

    budget = DeviceBudget("latency_ms", 2.5, latency_fn=fn, quantization=None, repeats=3)
    assert budget.estimate(model) == pytest.approx(2.0)  # median of 3, 2, 1 ms
    assert budget.estimate(model) == pytest.approx(2.0)  # cached: no 4th call
    assert len(calls) == 3 and budget.met(2.0) and not budget.met(2.6)


def test_measure_is_interleaved_and_uncached():
    keras.utils.set_random_seed(0)
    a, b = to_tflite(_two_convs(8)), to_tflite(_two_convs(4))
    order = []

    def fn(flat):
        order.append("a" if flat == a else "b")
        return _size_latency(flat)

    ms = interleaved_ms(fn, [a, b], repeats=3)
    assert order == ["a", "b"] * 3
    assert ms == pytest.approx([len(a) * 1e-5, len(b) * 1e-5])
    budget = DeviceBudget("latency_ms", 1.0, latency_fn=fn, quantization=None, repeats=2)
    order.clear()
    assert budget.measure(a) == pytest.approx(len(a) * 1e-5)
    assert budget.measure(a) == pytest.approx(len(a) * 1e-5)
    assert len(order) == 10  # at least 5 calls per measure, nothing cached


def test_latency_group_weights_follow_the_device():
    keras.utils.set_random_seed(0)
    model = _two_convs(16)
    budget = DeviceBudget("latency_ms", 1.0, latency_fn=_stair_latency, quantization=None,
                          repeats=1)
    analysis = kprune.analyze(model)
    w = budget.group_weights(model, analysis)
    # a quarter of 16 channels (4) stays within a block of 8 and saves
    # nothing; half of them (8) drops a block: 0.1 ms / 8 channels for either
    # conv, so both groups weigh the same, and more than a group that saves none
    assert w == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    lopsided = DeviceBudget("latency_ms", 1.0, quantization=None, repeats=1,
                            latency_fn=lambda f: 1e-4 * (1 + math.ceil(_conv_widths(f)[0] / 8)
                                                         + _conv_widths(f)[1] / 16))
    w = lopsided.group_weights(model, analysis)
    # c1: a block of 8 (0.1 ms) per 8 channels = 12.5 us each; c2: linear, 6.25 us
    # each; with a quarter only (the previous rule) c1 looked free (weight 0)
    c1 = next(g.index for g in analysis.groups if "c1" in g.producers)
    assert w[c1] == pytest.approx(2 * 2 / 3) and sum(w.values()) == pytest.approx(2.0)
    size = DeviceBudget("latency_ms", 1.0, latency_fn=_size_latency, quantization=None,
                        repeats=1)
    w = size.group_weights(model, analysis)
    assert np.mean(list(w.values())) == pytest.approx(1.0)
    saved = []
    for g in analysis.groups:  # the best bytes saved per channel: a quarter or a half cut
        saved.append(max((len(to_tflite(model)) - len(to_tflite(kprune.remove_channels(
            model, g.to_layer_indices(range(16 - k, 16)), analysis=analysis)))) / k
            for k in (4, 8)))
    assert w[0] / w[1] == pytest.approx(saved[0] / saved[1])


def test_default_runtime_smoke():
    """LiteRT on this host: positive finite milliseconds (values not asserted)."""
    keras.utils.set_random_seed(0)
    model = _two_convs(8)
    budget = DeviceBudget("latency_ms", 1000.0)
    est, meas = budget.estimate(model), budget.measure(model)
    assert 0 < est < 1000 and 0 < meas < 1000 and budget.met(meas)
    cfg = budget.to_config()
    assert cfg["latency_fn"] == "kprune.methods.device_budget.default_latency_fn(int8)"


def test_to_config_is_stable_json():
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    a = DeviceBudget("latency_ms", 2, latency_fn=_size_latency, representative_data=x)
    b = DeviceBudget("latency_ms", 2.0, latency_fn=_size_latency, representative_data=x.copy())
    text = json.dumps(a.to_config(), sort_keys=True)
    assert text == json.dumps(b.to_config(), sort_keys=True)
    assert " at 0x" not in text
    cfg = a.to_config()
    assert cfg["latency_fn"] == f"{__name__}._size_latency"
    assert cfg["kind"] == "latency_ms" and cfg["limit"] == 2.0 and cfg["low"] == 1.8
    assert cfg["representative_data"]["shapes"] == [[4, 8, 8, 1]]
    other = DeviceBudget("latency_ms", 2, latency_fn=_size_latency, representative_data=x + 1)
    assert other.to_config() != cfg
    assert DeviceBudget("arena_bytes", 32768).to_config()["latency_fn"] is None


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(kind="ram", limit=1), r"kind='ram' is not a device budget: use 'arena_bytes'"),
    (dict(kind="arena_bytes", limit=0), r"limit=0 must be a positive number: .*32 \* 1024"),
    (dict(kind="latency_ms", limit=-2), r"limit=-2 must be a positive number: the budget in ms"),
    (dict(kind="latency_ms", limit="5ms"), r"limit='5ms' must be a positive number"),
    (dict(kind="latency_ms", limit=True), r"limit=True must be a positive number"),
    (dict(kind="latency_ms", limit=float("nan")), r"limit=nan must be a positive number"),
    (dict(kind="latency_ms", limit=1, latency_fn=5), r"latency_fn=5 must be a callable"),
    (dict(kind="arena_bytes", limit=1, latency_fn=_size_latency),
     r"latency_fn is only used with kind='latency_ms'.*drop latency_fn"),
    (dict(kind="arena_bytes", limit=1, quantization=None),
     r"quantization=None cannot price a TFLite-Micro arena.*use quantization='int8'"),
    (dict(kind="latency_ms", limit=1, quantization="float16"),
     r"quantization='float16'.*use one of those"),
    (dict(kind="latency_ms", limit=1, quantization="int4"), r"quantization='int4': use 'int8'"),
    (dict(kind="latency_ms", limit=1, repeats=0), r"repeats=0 must be a positive integer"),
    (dict(kind="latency_ms", limit=1, repeats=1.5), r"repeats=1.5 must be a positive integer"),
    (dict(kind="latency_ms", limit=1, representative_data=np.zeros((0, 8, 8, 1))),
     r"representative_data must be a batch.*representative_data=x_train\[:200\]"),
    (dict(kind="latency_ms", limit=1, representative_data=["a"]),
     r"representative_data must be a batch"),
])
def test_bad_arguments_name_the_argument_and_the_fix(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        DeviceBudget(**kwargs)


def test_bad_latency_fn_results_are_value_errors():
    keras.utils.set_random_seed(0)
    flat = to_tflite(_two_convs(4))
    for fn, pattern in ((lambda f: "fast", r"latency_fn returned 'fast'.*seconds"),
                        (lambda f: -1.0, r"latency_fn returned -1.0.*positive finite"),
                        (lambda f: 1 / 0, r"latency_fn raised ZeroDivisionError.*return seconds")):
        budget = DeviceBudget("latency_ms", 1, latency_fn=fn, quantization=None)
        with pytest.raises(ValueError, match=pattern):
            budget.estimate(flat)
    with pytest.raises(ValueError, match=r"min_channels=0 must be a positive integer"):
        reachable_floor(DeviceBudget("arena_bytes", 1), flat, min_channels=0)


# -- the latency staircase --------------------------------------------------------


def test_staircase_finds_the_block_boundaries():
    keras.utils.set_random_seed(0)
    model = _two_convs(32)
    analysis = kprune.analyze(model)
    budget = DeviceBudget("latency_ms", 1.0, latency_fn=_stair_latency, quantization=None,
                          repeats=1)
    st = latency_staircase(model, analysis.groups[1], budget.estimate, analysis,
                           max_probes=16)
    # 32 channels = 4 blocks; latency drops when a block empties: the widest
    # width at each lower level is a multiple of 8
    assert st["steps"] == [24, 16, 8]
    assert dict(st["points"])[25] == pytest.approx(0.9)  # 1 + 4 + 4 blocks
    assert dict(st["points"])[24] == pytest.approx(0.8)
    # a gentle slope has no steps: the flatbuffer grows a few bytes per channel
    size = DeviceBudget("latency_ms", 1.0, latency_fn=_size_latency, quantization=None,
                        repeats=1)
    st = latency_staircase(model, analysis.groups[0], size.estimate, analysis,
                           threshold=0.5, max_probes=16)
    assert st["steps"] == []


def test_latency_planner_lands_on_step_widths():
    keras.utils.set_random_seed(0)
    model = _two_convs(32)
    base = _stair_latency(to_tflite(model)) * 1e3  # 0.9 ms
    target = 0.6 * base
    fast, steps = plan_latency_pruning(model, target, latency_fn=_stair_latency,
                                       quantization=None, reinit=False, repeats=1,
                                       staircase_probes=5)
    achieved = _stair_latency(to_tflite(fast)) * 1e3
    assert 0.9 * target <= achieved <= target
    widths = _conv_widths(to_tflite(fast))
    assert all(w % 8 == 0 for w in widths), widths  # no channel kept without its block
    assert set(steps[0]["step_widths"]) == {"c1", "c2"}
    assert all(s["on_step"] for s in steps[1:])
    assert steps[-1]["latency_ms_interleaved"] == pytest.approx(achieved)
    # without the staircase, step_fraction cuts leave partly filled blocks
    fast2, _ = plan_latency_pruning(model, target, latency_fn=_stair_latency,
                                    quantization=None, reinit=False, repeats=1,
                                    staircase=False)
    assert any(w % 8 for w in _conv_widths(to_tflite(fast2)))


def test_a_slow_smallest_model_is_no_latency_floor():
    """On LiteRT the 1-channel MobileNetV2 measured slower than the full one;
    the planner must not call such a target unreachable."""
    def fn(flat):  # kernels with one channel are slow on this device
        return _size_latency(flat) + (1e-2 if min(_conv_widths(flat)) < 2 else 0.0)

    keras.utils.set_random_seed(0)
    model = _two_convs(8)
    target = 0.8 * _size_latency(to_tflite(model)) * 1e3
    fast, steps = plan_latency_pruning(model, target, latency_fn=fn, quantization=None,
                                       reinit=False, repeats=1, staircase=False)
    assert "no floor known" in steps[0]["note"]
    assert 0.9 * target <= fn(to_tflite(fast)) * 1e3 <= target


def test_a_target_missed_at_min_channels_is_a_value_error():
    def fn(flat):  # narrower is never faster on this device
        return 1e-3

    keras.utils.set_random_seed(0)
    with pytest.raises(ValueError, match=r"target_latency_ms=0.5 was not reached: every group "
                                         r"is at min_channels=1 .* 1 ms .*ask for more"):
        plan_latency_pruning(_two_convs(4), 0.5, latency_fn=fn, quantization=None,
                             reinit=False, repeats=1, staircase=False)
