"""Bad arguments to kprune.prune / remove_channels fail before any training,
with an error that names the argument (or layer) and the fix; and pruning
leaves no process-wide side effect behind."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kprune
from kprune.prune import prune
from tests.prune_support import digits, small_cnn


def _never_called(model, data, epochs):
    raise AssertionError("training started before the input was validated")


def _xy():
    (x, y), (xv, yv), _ = digits()
    return x[:64], y[:64], xv[:32], yv[:32]


def _prune(**kw):
    x, y, xv, yv = _xy()
    args = dict(train_data=(x, y), val_data=(xv, yv), fit_fn=_never_called, pretrain_epochs=1)
    args.update(kw)
    model = args.pop("model", None) or small_cnn()
    return prune(model, args.pop("method", "ilp"), **args)


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(rounds=-1), ValueError, r"rounds must be >= 1, got -1.*rounds=5"),
    (dict(rounds=2.5), TypeError, r"rounds must be an integer"),
    (dict(epochs=0), ValueError, r"epochs must be >= 1, got 0.*at least 1"),
    (dict(epochs=-1), ValueError, r"epochs must be >= 1"),
    (dict(batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    (dict(batch_size=True), TypeError, r"batch_size must be an integer"),
    (dict(rate=1.5), ValueError, r"rate must be in \(0, 1\), got 1.5.*fraction of each group"),
    (dict(seed=-3), ValueError, r"seed must be >= 0.*seed=None"),
    (dict(min_channels=0), ValueError, r"min_channels must be >= 1"),
    (dict(round_to=0), ValueError, r"round_to must be >= 1"),
    (dict(p=0), ValueError, r"p must be a positive number"),
    (dict(calibration_samples=0), ValueError, r"calibration_samples must be >= 1"),
    (dict(ignored_layers=["conv9"]), ValueError, r"ignored_layers: no layer named 'conv9'"),
    (dict(ignored_layers=[3]), TypeError, r"ignored_layers must hold layer names"),
    (dict(max_fraction={"conv_1": 0.5}), ValueError, r"max_fraction: no layer named 'conv_1'"),
    (dict(max_fraction={"conv1": 2.0}), ValueError, r"max_fraction\['conv1'\] must be in \[0, 1\]"),
    (dict(max_fraction=-0.1), ValueError, r"max_fraction must be in \[0, 1\].*dict"),
])
def test_bad_scalar_arguments(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _prune(**kw)


def test_ignored_layers_string_is_one_name():
    """'conv1' used to be split into characters ('c', 'o', ...)."""
    from kprune.methods.options import OptionContext, RunOptions

    ctx = OptionContext(small_cnn())
    assert RunOptions(ignored_layers="conv1").validate(ctx).ignored_layers == ("conv1",)
    with pytest.raises(ValueError, match="ignored_layers: no layer named 'c1'"):
        RunOptions(ignored_layers="c1").validate(ctx)


def test_subclassed_and_unbuilt_models_are_refused_clearly():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(10)

        def call(self, x):
            return self.d(keras.layers.Flatten()(x))

    net = Net()
    net(np.zeros((1, 8, 8, 1), "float32"))
    net.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="subclassed model.*keras.Input"):
        _prune(model=net)
    seq = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)])
    seq.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="has no graph yet.*model.build"):
        _prune(model=seq)
    with pytest.raises(TypeError, match="model must be a keras.Model, got str"):
        _prune(model="model.keras")


def test_empty_nan_and_infinite_data():
    x, y, xv, yv = _xy()
    with pytest.raises(ValueError, match="train_data is empty"):
        _prune(train_data=(x[:0], y[:0]))
    bad = x.copy()
    bad[5, 0, 0, 0] = np.nan
    bad[9, 1, 1, 0] = np.inf
    with pytest.raises(ValueError, match=r"train_data: 2 sample\(s\) have NaN.*sample 5"):
        _prune(train_data=(bad, y))
    with pytest.raises(ValueError, match=r"val_data: 32 sample\(s\) have NaN or infinite"):
        _prune(val_data=(np.full_like(xv, np.inf), yv))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
    with pytest.raises(ValueError, match=r"infinite tf.data.Dataset.*\.take"):
        _prune(train_data=ds)


def test_labels_checked_over_every_batch_of_a_dataset():
    x, y, xv, yv = _xy()
    y_bad = y.copy()
    y_bad[-1] = 10  # only in the last batch
    ds = tf.data.Dataset.from_tensor_slices((x, y_bad)).batch(16)
    with pytest.raises(ValueError, match=r"train_data: label values span \[0, 10\]"):
        _prune(train_data=ds)
    # 1-based labels get a hint.
    with pytest.raises(ValueError, match="1-based.*subtract 1"):
        _prune(train_data=(x, np.where(y == 0, 10, y)))


def test_one_hot_and_sparse_labels_against_the_loss():
    x, y, xv, yv = _xy()
    with pytest.raises(ValueError, match=r"one-hot.*sparse_categorical_crossentropy.*argmax"):
        _prune(train_data=(x, keras.utils.to_categorical(y, 10)))
    model = small_cnn()
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match=r"integer class ids.*to_categorical.*sparse_categorical"):
        _prune(model=model)


def test_unregistered_custom_loss_is_named_up_front():
    def my_loss(y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    model = small_cnn()
    model.compile("adam", my_loss)
    with pytest.raises(ValueError, match=r"compiled with a loss.*register_keras_serializable.*fit_fn"):
        _prune(model=model, fit_fn=None, pretrain_epochs=0)


def test_multi_output_model_is_refused_with_the_fix():
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, name="c")(inp))
    model = keras.Model(inp, [keras.layers.Dense(10, name="a")(h), keras.layers.Dense(3, name="b")(h)])
    model.compile("adam", ["sparse_categorical_crossentropy"] * 2)
    x, y, xv, yv = _xy()
    with pytest.raises(ValueError, match=r"metric=None: .*has 2 outputs.*metric=.a_accuracy."):
        _prune(model=model, train_data=(x, [y, y % 3]), val_data=(xv, [yv, yv % 3]))


def test_op_determinism_is_restored_after_prune():
    from tensorflow.python.framework import config as tf_config

    if tf_config.is_op_determinism_enabled():
        pytest.skip("op determinism was enabled by an earlier test in this process")
    (x, y), (xv, yv), _ = digits()
    prune(small_cnn(), "ilp", train_data=(x[:128], y[:128]), val_data=(xv[:64], yv[:64]),
          rounds=1, target="none")
    assert not tf_config.is_op_determinism_enabled()


# -- remove_channels -------------------------------------------------------------
def test_remove_channels_boolean_mask_is_a_mask():
    model = small_cnn()
    mask = np.zeros(16, bool)
    mask[0] = True  # remove channel 0 only (it used to remove channels 0 and 1)
    by_mask = kprune.remove_channels(model, {"conv1": mask})
    by_index = kprune.remove_channels(model, {"conv1": [0]})
    assert by_mask.get_layer("conv1").filters == 15
    for a, b in zip(by_mask.get_weights(), by_index.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"mask for layer 'conv1' has shape \(3,\).*length 16"):
        kprune.remove_channels(model, {"conv1": [True, False, True]})


def test_remove_channels_refuses_float_and_string_indices():
    model = small_cnn()
    with pytest.raises(TypeError, match=r"layer 'conv1' must be integers, got dtype float64"):
        kprune.remove_channels(model, {"conv1": [0.7, 2.2]})
    with pytest.raises(TypeError, match="layer 'conv1' must be integers"):
        kprune.remove_channels(model, {"conv1": ["0"]})
    with pytest.raises(TypeError, match="layer 'conv1' must be a list of indices or a boolean"):
        kprune.remove_channels(model, {"conv1": None})
    # A single int and numpy ints are fine.
    assert kprune.remove_channels(model, {"conv1": np.int64(3)}).get_layer("conv1").filters == 15


def test_no_retracing_warning_per_round_but_the_users_stays(caplog):
    """Each round's new model traces new functions by design; kprune keeps
    TensorFlow's retracing warning out of its run, not out of the process."""
    from kprune.compat.keras_private import quiet_retracing

    tf_logger = tf.get_logger()
    (x, y), (xv, yv), _ = digits()
    with caplog.at_level("WARNING"):
        prune(small_cnn(), "ilp", train_data=(x[:128], y[:128]), val_data=(xv[:64], yv[:64]),
              rounds=6, target="none", rate=0.2, calibration_samples=64)
    assert "retracing" not in caplog.text
    with quiet_retracing():
        pass
    assert not tf_logger.filters
    with caplog.at_level("WARNING"):
        tf_logger.warning("5 out of the last 5 calls to f triggered tf.function retracing.")
    assert "retracing" in caplog.text


def test_methods_take_only_their_own_options():
    """Complexity-only options are refused for ILP/IAP/AIAP, naming their owner;
    a method registered with its own options gets them with their defaults."""
    from kprune.methods.registry import register_method, unregister_method

    with pytest.raises(TypeError, match=r"\['target_memory_bytes'\] for kprune.prune\(method="
                                        r"'iap'\); 'target_memory_bytes' is an option of "
                                        r"method 'complexity'"):
        _prune(method="iap", target_memory_bytes=32_000)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['rat'\].*options of 'ilp'"):
        _prune(rat=0.2)
    seen = {}

    @register_method("_probe_method", options={"temperature": 2.0})
    def probe(run):
        seen.update(run.method_options)
        seen["common"] = run.opts.to_dict()
        seen["record"] = type(run.method_options).__name__
        raise RuntimeError("stop after reading the options")

    try:
        with pytest.raises(RuntimeError, match="stop after"):
            _prune(method="_probe_method", pretrain_epochs=0)
        assert seen["temperature"] == 2.0 and "mode" not in seen
        assert "temperature" not in seen["common"] and "rate" not in seen["common"]
        with pytest.raises(TypeError, match="'temperature' is an option of method "
                                            "'_probe_method'"):
            _prune(method="ilp", temperature=1.0)
    finally:
        unregister_method("_probe_method")
