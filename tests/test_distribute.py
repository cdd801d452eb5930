"""Distributed retraining: MirroredStrategy over two logical CPU devices gives
the single-device results (activation statistics, recording during fit, a
whole IAP run), with every rebuilt model and optimizer under the strategy.

Logical devices must be configured before TensorFlow initializes, so the
checks run in a fresh interpreter (tests/distribute_worker.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kprune.scoring import distribute
from kprune.prune import prune as kprune_prune

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distribute_worker.py")


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "result.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, WORKER, "record,fit_recording,prune", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for mode, value in result.items():
        assert "error" not in value, f"{mode}: {value.get('traceback')}"
    return result


def test_activation_statistics_are_gathered_across_replicas(worker):
    r = worker["record"]
    assert r["replicas"] == 2
    assert r["mirrored_vars"] and not r["original_is_mirrored"] and r["same_weights"]
    # 101 samples, global batch 32: the last batch is split unevenly; every
    # sample is counted once.
    assert r["count_single"] == r["count_dist"] == r["count_ds"] == 101
    for g in r["groups"]:
        np.testing.assert_allclose(g["dist"], g["single"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(g["dist_ds"], g["single"], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(g["apoz_dist"], g["apoz_single"])
        assert np.std(g["single"]) > 0  # real, varied statistics


def test_recording_during_fit_sums_replicas(worker):
    r = worker["fit_recording"]
    assert r["count_single"] == r["count_mirrored"] == 480
    assert r["max_rel_diff"] < 1e-4


def test_prune_with_mirrored_strategy_matches_single_device(worker):
    single, mirrored = worker["prune"]["single"], worker["prune"]["mirrored"]
    assert mirrored["final_mirrored"] is True
    assert mirrored["optimizer_mirrored"] is True
    assert len(single["history"]) == len(mirrored["history"]) == 3
    for a, b in zip(single["history"], mirrored["history"]):
        assert a["round"] == b["round"]
        assert a["widths"] == b["widths"]
        assert a["params"] == b["params"]
        assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 0.02
    assert single["history"][-1]["params"] < single["history"][0]["params"]


def test_helpers_without_a_strategy():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert distribute.to_strategy(model, None) is model
    assert distribute.uses_strategy(model, None)
    with distribute.scope(None):
        assert distribute.build(None, lambda: 7) == 7
    with pytest.raises(TypeError, match="tf.distribute.Strategy"):
        distribute.check_strategy("mirrored")
    with pytest.raises(TypeError):
        distribute.scope(object())
    # One device: the default strategy's record_activations equals the plain pass.
    from kprune.scoring.recording import record_activations

    conv = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 2, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(10, 4, 4, 1)).astype("float32")
    a = record_activations(conv, x, batch_size=4)
    b = distribute.record_activations(conv, x, tf.distribute.get_strategy(), batch_size=4)
    g = a.groups[0]
    np.testing.assert_allclose(b.mean_power(g), a.mean_power(g), rtol=1e-6)
    assert a.count == b.count == 10
    with pytest.raises(TypeError, match="tf.distribute.Strategy"):
        kprune_prune(conv, strategy="mirrored")
