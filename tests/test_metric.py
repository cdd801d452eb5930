"""metric=: every decision of kprune.prune on any validation metric, for
multi-output and regression models (kprune.methods.metric)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kprune
from kprune.methods.goal import Quality
from kprune.methods.metric import infer_direction, parse_metric
from kprune.methods.state import RoundEntry

METHODS = ["ilp", "iap", "aiap"]


def _data(n=480, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    yc = (x[:, 0] + x[:, 1] > 0).astype("int64")
    yr = (2 * x[:, 2] + x[:, 3]).astype("float32")[:, None]
    return x, yc, yr


def two_heads(train=True):
    """Dense trunk with a classification head 'cls' and a regression head 'reg'."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), name="x")
    h = layers.Dense(24, activation="relu", name="h1")(inp)
    h = layers.Dense(24, activation="relu", name="h2")(h)
    model = keras.Model(inp, [layers.Dense(2, activation="softmax", name="cls")(h),
                              layers.Dense(1, name="reg")(h)], name="two_heads")
    model.compile(keras.optimizers.Adam(1e-2),
                  {"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  metrics={"cls": ["accuracy"], "reg": ["mae"]})
    if train:
        x, yc, yr = _data()
        model.fit(x, [yc, yr], epochs=8, batch_size=32, verbose=0)
    return model


def regressor():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    h = layers.Dense(24, activation="relu", name="h1")(inp)
    model = keras.Model(inp, layers.Dense(1, name="out")(h), name="regressor")
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x, _, yr = _data()
    model.fit(x, yr, epochs=8, batch_size=32, verbose=0)
    return model


def _split(x, *ys):
    return ((x[:400], [y[:400] for y in ys]), (x[400:], [y[400:] for y in ys]))


def _boom(model, data, epochs):
    raise AssertionError("trained before the metric was checked")


@pytest.mark.parametrize("method", METHODS)
def test_two_output_model_prunes_on_a_named_head(method):
    model = two_heads()
    x, yc, yr = _data()
    train, val = _split(x, yc, yr)
    res = kprune.prune(model, method, train_data=train, val_data=val, rounds=2,
                       metric="reg_mae", target={"metric_loss": 0.3})
    assert res.metric == "reg_mae" and res.options["metric_direction"] == "min"
    assert len(res.model.outputs) == 2
    assert res.final["params"] < res.baseline["params"]
    pred = res.model.predict(val[0], verbose=0)[1]
    mae = float(np.mean(np.abs(pred - val[1][1])))
    assert res.final["val_reg_mae"] == pytest.approx(mae, rel=1e-4)
    assert res.final["val_reg_mae"] <= res.baseline["val_reg_mae"] + 0.3 + 1e-9
    assert "val reg_mae (lower is better)" in res.summary()


@pytest.mark.parametrize("method", METHODS)
def test_regression_model_prunes_on_mae(method):
    model = regressor()
    x, _, yr = _data()
    res = kprune.prune(model, method, train_data=(x[:400], yr[:400]),
                       val_data=(x[400:], yr[400:]), rounds=2, metric="mae",
                       criterion="taylor" if method == "iap" else None)
    # not a [0, 1] accuracy: the default target is 1% of the baseline's MAE
    assert res.target == {"metric_loss_relative": 0.01}
    assert res.options["metric_direction"] == "min"
    for e in res.history:
        assert e["val_accuracy"] is None
        if e["status"] in ("accepted", "baseline") and e["round"] > 0:
            # feasible exactly when the MAE stays within 1% of the baseline's
            assert e["feasible"] == (e["val_mae"] <= res.baseline["val_mae"] * 1.01 + 1e-9)
    best = res.final["val_mae"]
    pred = res.model.predict(x[400:], verbose=0)
    assert best == pytest.approx(float(np.mean(np.abs(pred - yr[400:]))), rel=1e-4)


def _params_metric(model, data):
    return float(model.count_params())


@pytest.mark.parametrize("method", ["ilp", "aiap"])
def test_decisions_follow_the_metric_not_accuracy(method):
    """A metric that gets worse with every removal (the parameter count,
    higher is better) rejects every round that accuracy (a loose target)
    accepts."""
    x, yc, yr = _data()
    train, val = _split(x, yc)
    train, val = (train[0], train[1][0]), (val[0], val[1][0])
    model = keras.Model(*(lambda m: (m.inputs, m.outputs[0]))(two_heads()))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    by_acc = kprune.prune(model, method, train_data=train, val_data=val, rounds=2,
                          target=0.9)
    assert by_acc.final_round > 0 and by_acc.final["params"] < by_acc.baseline["params"]
    by_metric = kprune.prune(model, method, train_data=train, val_data=val, rounds=2,
                             target={"metric_loss": 0.0}, metric=_params_metric,
                             metric_direction="max")
    assert by_metric.final_round == 0
    assert by_metric.final["params"] == by_metric.baseline["params"]
    assert by_metric.metric == "_params_metric"
    pruned = [e for e in by_metric.history if e["round"] > 0]
    assert pruned and all(not e["feasible"] for e in pruned)
    assert all(e["val__params_metric"] < by_metric.baseline["val__params_metric"]
               for e in pruned)
    if method == "aiap":
        assert any(e["status"] == "violated" for e in pruned)  # rolled back


def test_lower_is_better_accepts_what_accuracy_rejects():
    """The opposite case: fewer parameters is better (direction 'min'), an
    accuracy target of 0 would reject, the metric accepts and returns the
    most pruned round."""
    x, yc, _ = _data()
    model = keras.Model(*(lambda m: (m.inputs, m.outputs[0]))(two_heads(train=False)))
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    res = kprune.prune(model, "ilp", train_data=(x[:400], yc[:400]),
                       val_data=(x[400:], yc[400:]), rounds=2, rate=0.3,
                       metric=_params_metric, metric_direction="min",
                       target={"metric_loss": 0.0})
    assert res.final_round == 2 and all(e["feasible"] for e in res.history)


def test_tf_data_with_dict_labels_and_taylor():
    model = two_heads()
    x, yc, yr = _data()
    ds = lambda a, b: tf.data.Dataset.from_tensor_slices(  # noqa: E731
        (a, {"cls": b[0], "reg": b[1]})).batch(32)
    res = kprune.prune(model, "iap", train_data=ds(x[:400], (yc[:400], yr[:400])),
                       val_data=ds(x[400:], (yc[400:], yr[400:])), rounds=1,
                       metric="cls_accuracy", criterion="taylor", target=0.2)
    assert res.target == {"accuracy_loss": 0.2}  # accuracy: absolute, as before
    assert 0.5 < res.baseline["val_cls_accuracy"] <= 1.0
    assert res.history[-1]["round"] == 1


def test_taylor_uses_the_loss_of_every_output():
    from kprune.scoring.criteria import taylor_scores

    model = two_heads()
    x, yc, yr = _data(96)
    both = taylor_scores(model, (x, [yc, yr]))
    cls_only = keras.Model(model.inputs, model.outputs[0])
    cls_only.compile("adam", "sparse_categorical_crossentropy")
    first = taylor_scores(cls_only, (x, yc))
    assert set(both) == set(first)
    assert any(not np.allclose(both[g], first[g]) for g in both)


def test_compiled_loss_and_output_dict_and_instances():
    model = two_heads()
    x, yc, yr = _data()
    train, val = _split(x, yc, yr)
    for metric, key, direction in (("loss", "val_loss", "min"),
                                   ({"reg": keras.metrics.MeanSquaredError()},
                                    "val_reg_mean_squared_error", "min"),
                                   ({"cls": "accuracy"}, "val_cls_accuracy", "max")):
        res = kprune.prune(model, "ilp", train_data=train, val_data=val, rounds=1,
                           metric=metric, target="none")
        assert res.options["metric_direction"] == direction
        assert math.isfinite(res.baseline[key]), (metric, res.baseline)


def test_resume_fingerprint_includes_the_metric(tmp_path):
    model = regressor()
    x, _, yr = _data()
    kw = dict(train_data=(x[:400], yr[:400]), val_data=(x[400:], yr[400:]), rounds=1,
              out_dir=str(tmp_path / "run"))
    kprune.prune(model, "ilp", metric="mae", **kw)
    again = kprune.prune(model, "ilp", metric="mae", **kw)  # resumes: done
    assert again.metric == "mae"
    with pytest.raises(ValueError, match="holds another run"):
        kprune.prune(model, "ilp", metric="mse", **kw)


def test_direction_inference_and_relative_loss():
    assert infer_direction("output_1_accuracy") == "max"
    assert infer_direction("mean_absolute_error") == "min"
    assert infer_direction("val_loss") == "min"
    assert infer_direction("my_score") is None
    q = Quality("val_mae", higher_is_better=False, top1=False)
    base = RoundEntry(0, "baseline", info={"val_mae": 2.0})
    worse = RoundEntry(1, "accepted", info={"val_mae": 2.5})
    assert q.loss(base, worse) == pytest.approx(0.5)
    assert q.loss(base, worse, relative=True) == pytest.approx(0.25)


# -- bad inputs: a clear error naming metric, before any training ---------------------

def _prune_bad(model, data, **kw):
    x, y = data
    return kprune.prune(model, "ilp", train_data=(x, y), val_data=(x, y), rounds=1,
                        fit_fn=_boom, pretrain_epochs=1, **kw)


@pytest.mark.parametrize("kw,err,match", [
    (dict(metric="nonsense_metric"), ValueError, r"metric='nonsense_metric'.*compiled"),
    (dict(metric=3), TypeError, r"metric=3 must be a metric name"),
    (dict(metric=object()), TypeError, r"metric=.*must be a metric name"),
    (dict(metric=dict), TypeError, r"metric=dict: a class must be"),
    (dict(metric=lambda m, d: float("nan"), metric_direction="min"), ValueError,
     r"metric='metric' is nan .*finite"),
    (dict(metric=lambda m, d: "good", metric_direction="min"), TypeError,
     r"metric: fn .* must return one number"),
    (dict(metric=lambda m, d: 1.0), ValueError, r"metric=.*metric_direction='max'"),
    (dict(metric="mae", metric_direction="up"), ValueError, r"metric_direction='up'"),
    (dict(metric="my_score_fn_name"), ValueError, r"metric='my_score_fn_name'"),
    (dict(metric="mae", target=0.01), ValueError, r"ambiguous for metric='mae'.*metric_loss"),
])
def test_bad_metric_inputs_single_output(kw, err, match):
    x, _, yr = _data(64)
    with pytest.raises(err, match=match):
        _prune_bad(regressor(), (x, yr), **kw)


@pytest.mark.parametrize("kw,match", [
    (dict(), r"metric=None: model 'two_heads' has 2 outputs \['cls', 'reg'\].*"
             r"metric='cls_accuracy'"),
    (dict(metric="accuracy"), r"has 2 outputs"),
    (dict(metric=keras.metrics.MeanAbsoluteError()), r"has 2 outputs"),
    (dict(metric={"box": "mae"}), r"no output 'box'; its outputs are \['cls', 'reg'\]"),
    (dict(metric="box_mae"), r"metric='box_mae' is neither a compiled result"),
])
def test_bad_metric_inputs_two_outputs(kw, match):
    x, yc, yr = _data(64)
    with pytest.raises(ValueError, match=match):
        _prune_bad(two_heads(train=False), (x, [yc, yr]), **kw)


@pytest.mark.parametrize("loss", ["mse", keras.losses.MeanAbsoluteError(), keras.losses.huber])
def test_a_regressor_defaults_to_its_loss_not_top1(loss):
    """Top-1 accuracy of a single linear unit is meaningless: without
    metric=, a model compiled with a regression loss decides on its loss."""
    model = regressor()
    model.compile(keras.optimizers.Adam(1e-2), loss)
    x, _, yr = _data()
    res = kprune.prune(model, "ilp", train_data=(x[:400], yr[:400]),
                       val_data=(x[400:], yr[400:]), rounds=1)
    assert res.metric == "loss" and res.options["metric_direction"] == "min"
    assert res.target == {"metric_loss_relative": 0.01}
    assert math.isfinite(res.baseline["val_loss"]) and res.baseline["val_accuracy"] is None
    with pytest.raises(ValueError, match=r"metric_direction='max' contradicts the default "
                                         r"metric of model 'regressor'.*regression loss"):
        kprune.prune(model, "ilp", train_data=(x[:400], yr[:400]), val_data=(x[400:], yr[400:]),
                     metric_direction="max", fit_fn=_boom)


def test_a_classifier_still_defaults_to_top1():
    model = two_heads()
    single = keras.Model(model.inputs, model.outputs[0])
    single.compile("adam", "sparse_categorical_crossentropy")
    assert parse_metric(None, None, single).key == "val_accuracy"
