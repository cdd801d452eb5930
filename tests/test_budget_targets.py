"""Device budgets as targets of the iterative methods: ``target_arena_bytes``
(TFLite-Micro arena of the int8 model) and ``target_latency_ms`` with
``complexity_aware='memory' | 'latency'`` for ILP / IAP / AIAP."""

import numpy as np
import pytest

import kprune
from kprune.methods.device_budget import DeviceBudget
from tests.prune_support import digits, trained_cnn


def _data():
    (x, y), (xv, yv), _ = digits()
    return dict(train_data=(x[:240], y[:240]), val_data=(xv[:120], yv[:120]))


def size_latency(tflite_bytes):
    """A deterministic stand-in for a device: 1 ms per 4 KB of flatbuffer."""
    return len(tflite_bytes) / 4096 / 1e3


def _no_training(model, data, epochs):
    return None


def test_iap_lands_in_a_latency_budget():
    base = DeviceBudget("latency_ms", 1.0, latency_fn=size_latency, quantization=None)
    full = base.estimate(trained_cnn())
    target = 0.6 * full
    res = kprune.prune(trained_cnn(), "iap", **_data(), rounds=10, rate=0.2,
                       target_latency_ms=target, latency_fn=size_latency,
                       latency_quantization=None, complexity_aware="latency")
    final = res.final
    assert res.target == {"latency_ms": target} and res.target_reached
    assert 0.9 * target <= final["latency_ms"] <= target
    assert final["latency_ms_measured"] == pytest.approx(final["latency_ms"])
    # The round that reached the budget was trimmed below the plain rate.
    assert final["rate"] <= 0.2 and res.history[0]["latency_ms"] == pytest.approx(full)


def test_aiap_lands_in_an_arena_budget_verified_on_tflite_micro():
    model = trained_cnn()
    arena0 = DeviceBudget("arena_bytes", 1).estimate(model)
    target = int(0.7 * arena0)
    res = kprune.prune(model, "aiap", **_data(), rounds=8, target_arena_bytes=target,
                       complexity_aware="memory", fit_fn=_no_training)
    final = res.final
    assert res.target_reached, res.reason
    assert 0.9 * target <= final["arena_bytes"] <= target
    # Verified on the TFLite-Micro runtime (the estimator is within 2%).
    assert 0.9 * target <= final["arena_bytes_measured"] <= target
    assert abs(final["arena_bytes_measured"] - final["arena_bytes"]) <= 0.02 * target
    # The budget priced the groups: the arena's peak (the conv outputs) shrank,
    # not the parameter-heavy Dense layer.
    assert final["widths"]["conv1"] < 16 and final["widths"]["fc1"] >= 40


def test_budget_below_the_smallest_reachable_model_fails_before_training():
    with pytest.raises(ValueError, match=r"target_arena_bytes=64 cannot be reached.*smallest "
                                         r"reachable"):
        kprune.prune(trained_cnn(), "ilp", **_data(), target_arena_bytes=64,
                     fit_fn=_never_called)


def _never_called(model, data, epochs):
    raise AssertionError("training started before the budget was checked")


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(target_arena_bytes=0), ValueError, r"target_arena_bytes must be >= 1.*32768"),
    (dict(target_arena_bytes=1.5), TypeError, r"target_arena_bytes must be an integer"),
    (dict(target_latency_ms=-1.0), ValueError, r"target_latency_ms must be a positive"),
    (dict(target_latency_ms=1.0, target_arena_bytes=1000), ValueError,
     r"one device budget: target_arena_bytes= or target_latency_ms="),
    (dict(target_arena_bytes=1000, target=0.01), ValueError,
     r"either target=0.01 or target_arena_bytes=, not both"),
    (dict(complexity_aware="latency"), ValueError,
     r"complexity_aware='latency'.*target_latency_ms"),
    (dict(target_latency_ms=1.0, latency_fn="litert"), TypeError,
     r"latency_fn must be a callable"),
    (dict(target={"arena_bytes": -5}), ValueError, r"arena_bytes must be a positive number"),
])
def test_bad_budgets_fail_before_training(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        kprune.prune(trained_cnn(), "iap", **_data(), fit_fn=_never_called, **kw)


def test_budget_weights_follow_the_device():
    """complexity_aware='memory' with an arena budget prices groups by arena
    bytes, not by the generic activation-memory share."""
    from kprune.core.dependency import analyze

    model = trained_cnn()
    w = DeviceBudget("arena_bytes", 10_000).group_weights(model, analyze(model))
    assert np.mean(list(w.values())) == pytest.approx(1.0)
