"""kprune.bench.arena_estimate against the real TFLite-Micro recording allocator."""

import keras
import numpy as np
import pytest

import kprune
from kprune.bench import arena, arena_estimate, flatbuffer, tflm
from kprune.export import to_tflite

pytest.importorskip("tflite_micro")


def _residual_dw(width=8):
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inp)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(width, 1)(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))


def _lenet(width=6):
    inp = keras.Input((20, 20, 1))
    x = keras.layers.Conv2D(width, 5, padding="same", activation="relu")(inp)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(12, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))


def _flat(model):
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    x = np.random.default_rng(0).random((16,) + shape, dtype=np.float32)
    return to_tflite(model, "int8", representative_data=x)


@pytest.fixture(scope="module")
def flats():
    keras.utils.set_random_seed(0)
    return [_flat(_residual_dw(8)), _flat(_residual_dw(5)), _flat(_lenet(6)), _flat(_lenet(3))]


def test_estimate_matches_the_recording_allocator(flats):
    for flat in flats:
        e = arena_estimate(flat, detail=True)
        r = tflm.arena_report(flat)
        assert e.head_bytes == r.head_bytes  # the greedy plan is replayed exactly
        assert abs(e.total_bytes - r.total_bytes) <= 0.02 * r.total_bytes
        assert e.unmodelled_ops == []


def test_estimate_within_two_percent_of_the_smallest_working_arena(flats):
    flat = flats[0]
    smallest = tflm.min_arena_bytes(flat, resolution=8)
    assert abs(arena_estimate(flat) - smallest) <= 0.02 * smallest


def test_keras_model_is_converted_first():
    keras.utils.set_random_seed(0)
    model = _lenet(4)
    assert arena_estimate(model) == arena_estimate(_flat(model))


def test_planner_places_largest_first_into_gaps():
    bufs = [arena.Buffer(0, 32, 0, 1), arena.Buffer(1, 64, 1, 2), arena.Buffer(2, 16, 2, 3),
            arena.Buffer(3, 32, 3, 4)]
    head = arena.plan(bufs)
    assert [b.offset for b in bufs] == [64, 0, 64, 0]
    assert head == 96


def test_bad_inputs_raise_clear_errors(flats):
    with pytest.raises(ValueError, match="truncated or corrupt"):
        arena_estimate(flats[0][: len(flats[0]) // 3])
    with pytest.raises(ValueError, match="TFL3"):
        arena_estimate(b"not a flatbuffer at all")
    with pytest.raises(TypeError, match="model_or_bytes must be"):
        arena_estimate("model.tflite")
    with pytest.raises(TypeError, match="tflite_bytes must be"):
        flatbuffer.parse(123)


def test_parse_reads_ops_and_shapes(flats):
    g = flatbuffer.parse(flats[2])
    assert [op.name for op in g.operators][:2] == ["CONV_2D", "AVERAGE_POOL_2D"]
    assert g.tensors[g.inputs[0]].shape == (1, 20, 20, 1)


def _arena_model():
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(x))


def test_arena_target_is_met_on_the_runtime():
    from kprune.methods.complexity import arena_of, plan_arena_pruning

    keras.utils.set_random_seed(0)
    model = _arena_model()
    budget = int(arena_of(model) * 0.6)
    small, steps = plan_arena_pruning(model, budget, reinit=False, step_fraction=0.25)
    measured = tflm.tflm_arena_bytes(_flat(small))
    assert steps[-1]["arena_measured"] == measured
    assert 0.9 * budget <= measured <= budget


def test_arena_target_errors():
    from kprune.methods.complexity import plan_arena_pruning

    keras.utils.set_random_seed(0)
    model = _arena_model()
    with pytest.raises(ValueError, match="smallest reachable TFLite-Micro arena is"):
        plan_arena_pruning(model, 100)
    for bad in (0, -5, "32k", True):
        with pytest.raises(ValueError, match="target_arena_bytes=.* must be a positive number"):
            plan_arena_pruning(model, bad)


def test_prune_complexity_with_an_arena_budget():
    keras.utils.set_random_seed(0)
    model = _arena_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((64, 16, 16, 1), dtype=np.float32)
    y = np.arange(64) % 3
    from kprune.methods.complexity import arena_of

    budget = int(arena_of(model) * 0.6)
    r = kprune.prune(model, "complexity", mode="memory", target_arena_bytes=budget,
                     step_fraction=0.25, train_data=(x[:48], y[:48]),
                     val_data=(x[48:], y[48:]), epochs=1, batch_size=16, seed=0)
    assert 0.9 * budget <= r.final["arena_measured"] <= budget
    assert tflm.tflm_arena_bytes(_flat(r.model)) == r.final["arena_measured"]


def _fake_latency(flat):
    """A deterministic stand-in for a device: 1 us per 100 flatbuffer bytes."""
    return len(flat) * 1e-8


def test_latency_target_with_a_user_latency_fn():
    from kprune.methods.complexity import plan_latency_pruning

    keras.utils.set_random_seed(0)
    model = _arena_model()
    base_ms = _fake_latency(to_tflite(model)) * 1e3
    target = 0.6 * base_ms
    fast, steps = plan_latency_pruning(model, target, latency_fn=_fake_latency,
                                       quantization=None, reinit=False, repeats=1)
    achieved = _fake_latency(to_tflite(fast)) * 1e3
    assert steps[-1]["latency_ms"] == pytest.approx(achieved)
    assert 0.9 * target <= achieved <= target
    assert set(steps[0]["latency_table_ms_per_channel"]) == {"c1", "c2"}


def test_latency_target_errors():
    from kprune.methods.complexity import plan_latency_pruning

    keras.utils.set_random_seed(0)
    model = _arena_model()
    kw = dict(quantization=None, reinit=False, repeats=1)
    with pytest.raises(ValueError, match="target_latency_ms=-1 must be a positive"):
        plan_latency_pruning(model, -1, latency_fn=_fake_latency, **kw)
    with pytest.raises(ValueError, match="latency_fn returned 'fast'"):
        plan_latency_pruning(model, 1.0, latency_fn=lambda f: "fast", **kw)
    with pytest.raises(ValueError, match="latency_fn raised ZeroDivisionError"):
        plan_latency_pruning(model, 1.0, latency_fn=lambda f: 1 / 0, **kw)
    with pytest.raises(ValueError, match="must be a callable"):
        plan_latency_pruning(model, 1.0, latency_fn=5, **kw)
    with pytest.raises(ValueError, match="fastest reachable model"):
        plan_latency_pruning(model, 1e-6, latency_fn=_fake_latency, **kw)


def test_prune_complexity_latency_mode():
    keras.utils.set_random_seed(0)
    model = _arena_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((64, 16, 16, 1), dtype=np.float32)
    y = np.arange(64) % 3
    target = 0.6 * _fake_latency(to_tflite(model)) * 1e3
    r = kprune.prune(model, "complexity", mode="latency", target_latency_ms=target,
                     latency_fn=_fake_latency, latency_quantization=None,
                     train_data=(x[:48], y[:48]), val_data=(x[48:], y[48:]), epochs=1,
                     batch_size=16, seed=0)
    assert 0.9 * target <= r.final["latency_ms"] <= target
    with pytest.raises(ValueError, match="needs target_latency_ms"):
        kprune.prune(model, "complexity", mode="latency", train_data=(x, y), epochs=1)
