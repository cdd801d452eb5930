"""kprune.reporting.plots: PNG figures of a run's history and per-layer widths."""

import builtins
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import kprune  # noqa: E402
from kprune.reporting import plots  # noqa: E402
from kprune.zoo import lenet5  # noqa: E402

HISTORY = [
    {"round": 0, "status": "baseline", "val_accuracy": 0.90, "params": 1000, "macs": 500,
     "widths": {"conv1": 6, "conv2": 16, "fc1": 120}},
    {"round": 1, "status": "accepted", "val_accuracy": 0.895, "params": 600, "macs": 300,
     "widths": {"conv1": 5, "conv2": 12, "fc1": 80}},
    {"round": 2, "status": "violated", "val_accuracy": 0.70, "params": 300, "macs": 150,
     "widths": {"conv1": 3, "conv2": 6, "fc1": 40}},
    {"round": 3, "status": "nan_discarded", "val_accuracy": None, "params": 300, "macs": 150,
     "widths": {"conv1": 3, "conv2": 6, "fc1": 40}},
]


def _png(path):
    from matplotlib.image import imread

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 300
    # Not a blank canvas: something was drawn.
    assert np.asarray(img)[..., :3].std() > 0.05
    return img


def _points(fig, label):
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_label() == label:
                return np.column_stack(line.get_data())
    raise AssertionError(f"no line labelled {label!r}")


def test_plot_history_from_out_dir_and_list(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "state.json").write_text(json.dumps({"history": HISTORY}))
    fig = plots.plot_history(str(run), tmp_path / "h.png")
    _png(tmp_path / "h.png")
    # Accepted rounds at (compression, accuracy); the rejected one apart.
    np.testing.assert_allclose(_points(fig, "accepted rounds"), [[1.0, 0.90], [1000 / 600, 0.895]])
    np.testing.assert_allclose(_points(fig, "rejected rounds"), [[1000 / 300, 0.70]])
    np.testing.assert_allclose(_points(fig, "parameters")[:, 1], [1, 0.6, 0.3, 0.3])
    (run / "result.json").write_text(json.dumps({"history": HISTORY[:2]}))
    fig2 = plots.plot_history(str(run))
    assert len(_points(fig2, "accepted rounds")) == 2  # result.json is preferred
    assert len(_points(plots.plot_history(HISTORY[:1]), "accepted rounds")) == 1


def test_plot_widths_models_and_dicts(tmp_path):
    before = lenet5()
    after = kprune.remove_channels(before, {"conv1": [0, 1, 2], "fc2": list(range(40))})
    fig = plots.plot_widths(before, after, tmp_path / "w.png")
    _png(tmp_path / "w.png")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["conv1", "conv2", "fc1", "fc2", "predictions"]
    heights = [round(p.get_height()) for p in ax.patches]
    assert heights == [6, 16, 120, 84, 10, 3, 16, 120, 44, 10]
    fig = plots.plot_widths({"a": 4}, {"a": 2})
    assert [p.get_height() for p in fig.axes[0].patches] == [4, 2]


def test_plot_result_and_errors(tmp_path):
    class Result:
        history = HISTORY
        final = HISTORY[1]

    fig = plots.plot_result(Result(), tmp_path / "r.png")
    _png(tmp_path / "r.png")
    assert len(fig.axes) == 3
    with pytest.raises(FileNotFoundError, match="result.json"):
        plots.plot_history(str(tmp_path))
    with pytest.raises(ValueError, match="empty"):
        plots.plot_history([])


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'kprune\[plots\]'"):
        plots.plot_history(HISTORY)


def test_prune_result_plot(tmp_path):
    import keras
    from keras import layers

    from kprune.prune import prune

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int64")
    inp = keras.Input((6, 6, 1))
    h = layers.Flatten()(layers.Conv2D(8, 3, activation="relu", name="conv")(inp))
    model = keras.Model(inp, layers.Dense(2, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    result = prune(model, "ilp", train_data=(x, y), val_data=(x, y), epochs=1, rounds=1,
                   rate=0.25, target="none")
    fig = result.plot(tmp_path / "run.png")
    _png(tmp_path / "run.png")
    assert len(_points(fig, "accepted rounds")) == 2
    bars = [round(p.get_height()) for p in fig.axes[2].patches]
    assert bars[:2] == [8, 2] and bars[2] < 8  # conv, out before; conv after
