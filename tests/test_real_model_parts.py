"""What real models contain survives surgery, checkpoints and resume: Lambda
layers and custom layers that were never registered; damaged checkpoint
directories get an error naming the file and the fix."""

import json
import os

import keras
import numpy as np
import pytest

import kprune
from kprune.compat.keras_private import all_layers
from kprune.prune import prune
from tests.prune_support import digits


class Scale(keras.layers.Layer):
    """A custom layer that is deliberately NOT registered."""

    def __init__(self, factor=2.0, **kw):
        super().__init__(**kw)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _model(kind):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    if kind == "lambda":
        x = keras.layers.Lambda(lambda t: t * 0.5, name="half")(x)
    else:
        x = Scale(0.5, name="half")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(x))
    x = keras.layers.Dense(16, activation="relu", name="fc")(x)
    out = keras.layers.Dense(10, activation="softmax", name="out")(x)
    m = keras.Model(inp, out)
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.mark.parametrize("kind", ["lambda", "custom"])
def test_lambda_and_unregistered_layers_prune_checkpoint_and_resume(kind, tmp_path):
    (x, y), (xv, yv), _ = digits()
    x, y = x[:256], y[:256]
    # Surgery: the rebuilt model keeps the layer (Lambda used to fail in safe mode).
    # conv2 follows the layer (unknown to kprune's handlers), so it is pruned.
    small = kprune.remove_channels(_model(kind), {"conv2": [0, 1]})
    assert small.get_layer("conv2").filters == 6
    half = small.get_layer("half")
    if kind == "lambda":
        assert type(half) is type(_model(kind).get_layer("half"))
    else:
        # a custom composite is traced; its class comes back (its arguments
        # hold no width), and without class keeping it is a plain nested model
        assert type(half) is Scale
        plain = kprune.remove_channels(_model(kind), {"conv2": [0, 1]}, keep_classes=False)
        half = plain.get_layer("half")
        assert isinstance(half, keras.Model) and not any(
            isinstance(l, Scale) for l in all_layers(half, include_self=True))
    # A run with out_dir reads its checkpoints back (it used to fail at the end).
    kw = dict(train_data=(x, y), val_data=(xv, yv), rounds=2, target="none", rate=0.25,
              out_dir=str(tmp_path), calibration_samples=128)
    first = prune(_model(kind), "ilp", **kw)
    assert first.history[-1]["round"] == 2
    assert first.model.get_layer("conv2").filters < 8
    # A second call with the same arguments resumes from the checkpoints.
    again = prune(_model(kind), "ilp", **kw)
    assert [e["val_accuracy"] for e in again.history] == [e["val_accuracy"] for e in first.history]
    xs = x[:16]
    np.testing.assert_allclose(again.model.predict(xs, verbose=0),
                               first.model.predict(xs, verbose=0), rtol=1e-5, atol=1e-6)


def _run(tmp_path):
    (x, y), (xv, yv), _ = digits()
    return prune(_model("custom"), "ilp", train_data=(x[:128], y[:128]),
                 val_data=(xv[:64], yv[:64]), rounds=1, target="none",
                 out_dir=str(tmp_path), calibration_samples=64)


def test_corrupt_state_file_names_the_file_and_the_fix(tmp_path):
    _run(tmp_path)
    state = tmp_path / "state.json"
    state.write_text('{"fingerprint": "abc", "hist')
    with pytest.raises(ValueError, match=r"state.json' is not valid JSON.*another one"):
        _run(tmp_path)
    state.write_text(json.dumps({"fingerprint": "abc"}))
    with pytest.raises(ValueError, match=r"state.json' lacks.*history.*another out_dir"):
        _run(tmp_path)


def test_truncated_round_file_names_the_file(tmp_path):
    _run(tmp_path)
    current = json.loads((tmp_path / "state.json").read_text())["current_file"]
    with open(tmp_path / current, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match=rf"{current}' cannot be read back.*another out_dir"):
        _run(tmp_path)


def test_out_dir_that_is_a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("not a directory")
    with pytest.raises(ValueError, match=r"out_dir '.*taken' exists and is a file"):
        _run(path)
    assert path.read_text() == "not a directory"


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    from kprune.atomic import atomic_path, atomic_write_text

    target = tmp_path / "result.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]


def test_resume_refuses_other_weights_or_data_and_accepts_a_callable_criterion(tmp_path):
    """The fingerprint covers the weights and the data; a callable criterion
    (whose repr holds a memory address) still resumes."""
    from kprune.methods.fingerprint import stable

    (x, y), (xv, yv), _ = digits()

    def criterion(model, group):
        return np.arange(group.channels, dtype=float)

    def run(model, xs=x[:128], **kw):
        return prune(model, "ilp", train_data=(xs, y[:128]), val_data=(xv[:64], yv[:64]),
                     rounds=1, target="none", out_dir=str(tmp_path), calibration_samples=64,
                     criterion=criterion, **kw)

    first = run(_model("custom"))
    assert run(_model("custom")).history == first.history  # resumed, same model/data
    other = _model("custom")
    other.set_weights([w * 1.01 for w in other.get_weights()])
    with pytest.raises(ValueError, match="holds another run.*weights, data or settings"):
        run(other)
    with pytest.raises(ValueError, match="holds another run"):
        run(_model("custom"), xs=x[128:256])
    assert "0x" not in json.dumps(stable({"c": criterion}))


def test_disk_full_mid_round_keeps_every_completed_round(tmp_path, monkeypatch):
    """A write that fails half-way (disk full) leaves the committed rounds
    intact and no temporary file behind; the same call then resumes."""
    import errno

    (x, y), (xv, yv), _ = digits()
    kw = dict(train_data=(x[:128], y[:128]), val_data=(xv[:64], yv[:64]), rounds=3,
              target="none", rate=0.25, out_dir=str(tmp_path), calibration_samples=64)
    real_save = keras.Model.save
    calls = {"n": 0}

    def failing_save(self, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # baseline, round 1, then round 2 fails half-way
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, path, *a, **k)

    monkeypatch.setattr(keras.Model, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        prune(_model("custom"), "ilp", **kw)
    state = json.loads((tmp_path / "state.json").read_text())
    assert [e["round"] for e in state["history"]] == [0, 1]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp_")]
    keras.saving.load_model(str(tmp_path / state["current_file"]), compile=False,
                            custom_objects={"Scale": Scale})
    monkeypatch.setattr(keras.Model, "save", real_save)
    done = prune(_model("custom"), "ilp", **kw)
    assert [e["round"] for e in done.history] == [0, 1, 2, 3]
    assert done.history[1] == state["history"][1]
