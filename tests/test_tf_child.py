"""The persistent TensorFlow child of `kprune.export.to_tflite` (JAX and
PyTorch backends; `kprune.export.tf_child`): one child serves many
conversions, gives the flatbuffers a child per conversion gives, is started
again after it is killed, and is closed at the end of its block.

The child is driven directly (`tflite._convert_in_tensorflow_child`), so this
runs from the TensorFlow suite: the parent side is the same Python on every
backend (a JAX parent's conversions through it run in tests/test_backends.py).
"""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from kprune.export import close_tensorflow_child, tensorflow_child, tflite
from kprune.export import tf_child as _tf_child


def _model(width, seed=0):
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(width, 3, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head")(h))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


X = np.random.default_rng(1).random((8, 8, 8, 1), dtype=np.float32)


def _convert(model):
    calib = tflite._check_representative(X, tflite._input_shapes(model), model)
    return tflite._convert_in_tensorflow_child(model, "int8", calib, None, True)


def _start_one_shot_child(model, tmp_path):
    """A child started for this one conversion (the former way), running
    beside the test; returns a function that waits for its flatbuffer."""
    work = tmp_path / "one_shot"
    work.mkdir()
    model.save(str(work / "model.keras"))
    calib = tflite._check_representative(X, tflite._input_shapes(model), model)
    np.savez(str(work / "calibration.npz"), **{f"a{i}": c for i, c in enumerate(calib)})
    (work / "args.json").write_text(json.dumps(
        {"quantization": "int8", "batch_size": None, "per_channel": True}))
    env = dict(os.environ, KERAS_BACKEND="tensorflow",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-m", "kprune.export._tf_child", str(work)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def result():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        return (work / "model.tflite").read_bytes()

    return result


def test_one_child_serves_every_conversion_and_is_restarted_and_closed(tmp_path):
    close_tensorflow_child()
    starts = _tf_child.STARTS["count"]
    models = [_model(w) for w in (4, 6, 8)]
    one_shot = _start_one_shot_child(models[2], tmp_path)
    with tensorflow_child():
        flats = [_convert(m) for m in models]
        assert _tf_child.STARTS["count"] == starts + 1  # one child for three conversions
        first = _tf_child.pid()
        with tensorflow_child():  # an inner block keeps the child it did not start
            assert _convert(models[0]) == flats[0]
        assert _tf_child.pid() == first and _tf_child.STARTS["count"] == starts + 1
        log = _tf_child._child.log_path
        # A conversion error comes back as the error, and the child serves on.
        with pytest.raises(ValueError, match="representative_data"):
            tflite._convert_in_tensorflow_child(models[0], "int8", None, None, True)
        assert _tf_child.pid() == first
        # Killed between requests: the next conversion starts a new child.
        os.kill(first, signal.SIGKILL)
        _tf_child._child.proc.wait()
        again = _convert(models[1])
        assert _tf_child.STARTS["count"] == starts + 2 and _tf_child.pid() not in (None, first)
        child = _tf_child._child.proc
        log = _tf_child._child.log_path
    # The block started the child, so its end closed it (process and log gone).
    assert not _tf_child.running() and child.poll() is not None
    assert not os.path.exists(log)
    assert again == flats[1]
    # The same bytes a child started for one conversion gives (the former way).
    assert one_shot() == flats[2]
    assert len({len(f) for f in flats}) == 3  # three different models were converted
