"""Subprocess worker of tests/test_distribute.py.

Two logical CPU devices must be configured before TensorFlow initializes its
devices, so the MirroredStrategy checks run in a fresh interpreter:
``python tests/distribute_worker.py MODE OUT_JSON``.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kprune.scoring import distribute  # noqa: E402
from tests.prune_support import small_cnn  # noqa: E402


_STRATEGY = []


def two_cpu_strategy():
    """One MirroredStrategy per process (several instances share collective
    keys and can mix up their all-reduces)."""
    if not _STRATEGY:
        _STRATEGY.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _STRATEGY[0]


def tiny_cnn(seed=0, bn=True):
    # (BN: per-replica batch statistics under a strategy, so not bit-equal.)
    return small_cnn(seed, width=8, hidden=16, bn=bn, name="tiny_cnn")


def digits(n_train=480, n_val=200):
    from kprune.datasets import load_digits

    (x, y), (xt, yt) = load_digits()
    return (x[:n_train], y[:n_train]), (xt[:n_val], yt[:n_val])


def record(out):
    from kprune.scoring.recording import record_activations

    strategy = two_cpu_strategy()
    (x, y), _ = digits()
    model = tiny_cnn()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    mirrored = distribute.to_strategy(model, strategy)
    single = record_activations(model, x[:101], batch_size=32)
    dist = distribute.record_activations(mirrored, x[:101], strategy, batch_size=32)
    dist_ds = distribute.record_activations(
        mirrored, tf.data.Dataset.from_tensor_slices((x[:101], y[:101])).batch(32), strategy)
    res = {"replicas": strategy.num_replicas_in_sync,
           "mirrored_vars": distribute.uses_strategy(mirrored, strategy),
           "original_is_mirrored": distribute.uses_strategy(model, strategy),
           "same_weights": all(np.array_equal(a, b) for a, b in
                               zip(model.get_weights(), mirrored.get_weights())),
           "count_single": single.count, "count_dist": dist.count, "count_ds": dist_ds.count,
           "groups": []}
    for g in single.groups:
        res["groups"].append({
            "name": g.name,
            "single": single.mean_power(g, 1).tolist(),
            "dist": dist.mean_power(g, 1).tolist(),
            "dist_ds": dist_ds.mean_power(g, 1).tolist(),
            "apoz_single": single.apoz(g).tolist(),
            "apoz_dist": dist.apoz(g).tolist()})
    return res


def fit_recording(out):
    """RecordingModel statistics of training passes, mirrored vs single device
    (no BatchNormalization: its batch statistics are per replica)."""
    from kprune.scoring.recording import RecordingCallback, RecordingModel

    (x, y), _ = digits()
    stats = {}
    for name in ("single", "mirrored"):
        strategy = two_cpu_strategy() if name == "mirrored" \
            else None
        with distribute.scope(strategy):
            model = tiny_cnn(bn=False)
            rec = RecordingModel(model)
            rec.compile_from_config(model.get_compile_config())
        cb = RecordingCallback(rec)
        rec.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0, callbacks=[cb])
        stats[name] = cb.result
    res = {"count_single": stats["single"].count, "count_mirrored": stats["mirrored"].count,
           "max_rel_diff": 0.0}
    for g in stats["single"].groups:
        a = stats["single"].mean_power(g, 1)
        b = stats["mirrored"].mean_power(g, 1)
        res["max_rel_diff"] = max(res["max_rel_diff"],
                                  float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)))
    return res


def prune(out):
    from kprune.prune import prune as kprune_prune

    (x, y), (xv, yv) = digits()
    results = {}
    for name in ("single", "mirrored"):
        strategy = two_cpu_strategy() if name == "mirrored" \
            else None
        model = distribute.build(strategy, tiny_cnn)
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
        result = kprune_prune(model, "iap", train_data=(x, y), val_data=(xv, yv), epochs=1,
                              rounds=2, target="none", rate=0.25, batch_size=32, seed=0,
                              calibration_samples=160, strategy=strategy)
        results[name] = {
            "history": [{k: e[k] for k in ("round", "params", "val_accuracy", "widths")}
                        for e in result.history],
            "final_mirrored": distribute.uses_strategy(result.model, strategy)
            if strategy is not None else None,
            "optimizer_mirrored": (strategy is None) or all(
                distribute.uses_strategy_variable(v, strategy)
                for v in result.model.optimizer.variables),
        }
    return results


MODES = {"record": record, "fit_recording": fit_recording, "prune": prune}

if __name__ == "__main__":
    modes, path = sys.argv[1].split(","), sys.argv[2]
    result = {}
    for mode in modes:
        try:
            result[mode] = MODES[mode](path)
        except Exception as e:  # noqa: BLE001  (reported to the test)
            import traceback

            result[mode] = {"error": f"{type(e).__name__}: {e}",
                            "traceback": traceback.format_exc()}
    with open(path, "w") as f:
        json.dump(result, f)
