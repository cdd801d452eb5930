"""Bad input to kprune.prune fails early with a clear message."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kprune.prune import prune
from tests.prune_support import digits, small_cnn


def _never_called(model, data, epochs):
    raise AssertionError("training started before the input was validated")


def _xy():
    (x, y), (xv, yv), _ = digits()
    return x[:64], y[:64], xv[:32], yv[:32]


def test_wrong_input_shape_fails_before_training():
    x, y, xv, yv = _xy()
    with pytest.raises(ValueError, match=r"shape \(28, 28, 1\).*expects \(8, 8, 1\)"):
        prune(small_cnn(), "ilp", train_data=(np.zeros((64, 28, 28, 1), "float32"), y),
              val_data=(xv, yv), fit_fn=_never_called, pretrain_epochs=1)
    with pytest.raises(ValueError, match="val_data: samples have shape"):
        prune(small_cnn(), "ilp", train_data=(x, y), val_data=(xv[..., 0], yv),
              fit_fn=_never_called, pretrain_epochs=1)


def test_wrong_dtype_and_labels_fail_before_training():
    x, y, xv, yv = _xy()
    with pytest.raises(ValueError, match="not numeric"):
        prune(small_cnn(), "ilp", train_data=(x.astype(str), y), val_data=(xv, yv),
              fit_fn=_never_called, pretrain_epochs=1)
    with pytest.raises(ValueError, match="label values span"):
        prune(small_cnn(), "ilp", train_data=(x, y + 5), val_data=(xv, yv),
              fit_fn=_never_called, pretrain_epochs=1)
    with pytest.raises(ValueError, match="64 input samples but 10 labels"):
        prune(small_cnn(), "ilp", train_data=(x, y[:10]), val_data=(xv, yv),
              fit_fn=_never_called, pretrain_epochs=1)
    with pytest.raises(ValueError, match="tuple"):
        prune(small_cnn(), "ilp", train_data=x, val_data=(xv, yv), fit_fn=_never_called)


def test_unbatched_dataset_gets_a_hint():
    x, y, xv, yv = _xy()
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match=r"batched\? call \.batch"):
        prune(small_cnn(), "ilp", train_data=ds, val_data=(xv, yv), fit_fn=_never_called)


def test_uncompiled_model_without_fit_fn():
    x, y, xv, yv = _xy()
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    with pytest.raises(ValueError, match="not compiled.*fit_fn"):
        prune(model, "ilp", train_data=(x, y), val_data=(xv, yv))


def test_bad_options_and_targets():
    x, y, xv, yv = _xy()
    kw = dict(train_data=(x, y), val_data=(xv, yv), fit_fn=_never_called)
    with pytest.raises(TypeError, match="unknown option"):
        prune(small_cnn(), "ilp", learning_rate=0.1, **kw)
    with pytest.raises(ValueError, match="unknown target kind"):
        prune(small_cnn(), "ilp", target={"latency": 0.5}, **kw)
    with pytest.raises(ValueError, match="must be in"):
        prune(small_cnn(), "ilp", target={"params_reduction": 1.5}, **kw)
    with pytest.raises(ValueError, match="retrain"):
        prune(small_cnn(), "ilp", retrain="finetune", **kw)
    with pytest.raises(ValueError, match="train_data is required"):
        prune(small_cnn(), "ilp", val_data=(xv, yv), fit_fn=_never_called)
    with pytest.raises(ValueError, match="round_to"):
        prune(small_cnn(), "ilp", round_to=0, **kw)


def test_validation_split_when_val_data_is_missing():
    x, y, _, _ = _xy()
    calls = []

    def fit_fn(model, data, epochs):
        calls.append(len(data[0]))

    res = prune(small_cnn(), "ilp", train_data=(x, y), rounds=1, target="none",
                fit_fn=fit_fn, validation_split=0.25, rate=0.2)
    assert calls == [48]  # 64 - 16 validation samples
    assert res.history[-1]["params"] < res.history[0]["params"]
