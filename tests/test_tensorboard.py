"""kprune.reporting.tensorboard.RoundLogger: tf.summary scalars and per-layer widths per round."""

import glob

import numpy as np
import pytest
import tensorflow as tf

import kprune
from kprune.reporting.tensorboard import RoundLogger, arena_estimate_bytes
from kprune.zoo import lenet5


def read_events(log_dir):
    """{tag: {step: value}} for scalars and {tag: {step: text}} for text summaries."""
    scalars, texts = {}, {}
    for path in sorted(glob.glob(f"{log_dir}/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                arr = tf.make_ndarray(v.tensor)
                plugin = v.metadata.plugin_data.plugin_name
                if plugin == "text":
                    texts.setdefault(v.tag, {})[event.step] = arr.item().decode()
                else:
                    scalars.setdefault(v.tag, {})[event.step] = float(arr)
    return scalars, texts


def test_rounds_are_logged_as_scalars_and_widths(tmp_path):
    base = lenet5()
    small = kprune.remove_channels(base, {"conv1": [0, 1], "fc1": list(range(60))})
    entries = [
        {"round": 0, "status": "baseline", "val_accuracy": 0.9, "params": base.count_params(),
         "macs": 1000, "removed": 0, "widths": {"conv1": 6, "fc1": 120}},
        {"round": 1, "status": "accepted", "val_accuracy": 0.88,
         "params": small.count_params(), "macs": 400, "removed": 62,
         "widths": {"conv1": 4, "fc1": 60}},
        {"round": 2, "status": "violated", "val_accuracy": 0.5, "params": 1000, "macs": 100,
         "removed": 70, "widths": {"conv1": 2, "fc1": 10}, "arena_estimate_bytes": 123},
    ]
    with RoundLogger(tmp_path / "tb") as tb:
        tb.log(entries[0], model=base)
        tb.log(entries[1], model=small)
        tb.log(entries[2])
    scalars, texts = read_events(tmp_path / "tb")
    assert scalars["accuracy/val"] == pytest.approx({0: 0.9, 1: 0.88, 2: 0.5})
    assert scalars["size/params"] == {0: base.count_params(), 1: small.count_params(), 2: 1000}
    assert scalars["size/macs"] == {0: 1000, 1: 400, 2: 100}
    assert scalars["size/compression"][1] == pytest.approx(base.count_params()
                                                           / small.count_params(), rel=1e-6)
    assert scalars["size/macs_reduction"][1] == pytest.approx(0.6)
    # The arena estimate is the profiled int8 peak of the round's model.
    assert scalars["size/arena_estimate_bytes"][0] == kprune.profile(base).peak_activation_bytes_int8
    assert scalars["size/arena_estimate_bytes"][1] == arena_estimate_bytes(small)
    assert scalars["size/arena_estimate_bytes"][1] < scalars["size/arena_estimate_bytes"][0]
    assert scalars["size/arena_estimate_bytes"][2] == 123
    assert scalars["round/accepted"] == {0: 1.0, 1: 1.0, 2: 0.0}
    assert scalars["widths/conv1"] == {0: 6, 1: 4, 2: 2}
    assert scalars["widths/fc1"] == {0: 120, 1: 60, 2: 10}
    assert "| conv1 | 4 | 6 |" in texts["widths"][1]
    assert texts["status"][2] == "round 2: violated"


def test_nan_accuracy_is_skipped_and_bad_entries_rejected(tmp_path):
    tb = RoundLogger(tmp_path)
    tb.log({"round": 0, "status": "baseline", "val_accuracy": 0.7, "params": 10, "macs": 5})
    tb.log({"round": 1, "status": "nan_discarded", "val_accuracy": None, "params": 8,
            "macs": 4})
    tb.log({"round": 2, "status": "accepted", "val_accuracy": float("nan"), "params": 8,
            "macs": 4})
    with pytest.raises(ValueError, match="round"):
        tb.log({"status": "accepted"})
    tb.close()
    scalars, _ = read_events(tmp_path)
    assert scalars["accuracy/val"] == {0: pytest.approx(0.7)}
    assert set(scalars["size/params"]) == {0, 1, 2}
    assert np.isclose(scalars["size/compression"][1], 10 / 8)


def test_prune_writes_tensorboard_and_calls_on_round(tmp_path):
    import keras
    from keras import layers

    from kprune.prune import prune

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6, 6, 1)).astype("float32")
    y = (x[:, :3].mean(axis=(1, 2, 3)) > 0).astype("int64")
    inp = keras.Input((6, 6, 1))
    h = layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    h = layers.Flatten()(h)
    h = layers.Dense(8, activation="relu", name="fc")(h)
    model = keras.Model(inp, layers.Dense(2, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    seen = []
    result = prune(model, "ilp", train_data=(x, y), val_data=(x[:32], y[:32]), epochs=1,
                   rounds=2, rate=0.25, target="none", tensorboard_dir=tmp_path / "tb",
                   on_round=lambda entry, m: seen.append((entry["round"], m.count_params())))
    assert [r for r, _ in seen] == [0, 1, 2]
    assert [p for _, p in seen] == [e["params"] for e in result.history]
    scalars, _ = read_events(tmp_path / "tb")
    assert scalars["size/params"] == {e["round"]: e["params"] for e in result.history}
    assert scalars["widths/conv"] == {e["round"]: e["widths"]["conv"] for e in result.history}
    assert scalars["widths/conv"][2] < 8
