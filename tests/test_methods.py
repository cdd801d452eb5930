"""ILP, IAP and AIAP on real data (scikit-learn's 8x8 digits): shrinkage,
accuracy bounds, options, rewinding, NaN rounds, unreachable targets."""

import warnings

import keras
import numpy as np
import pytest

import kprune
from kprune.methods import METHODS, register_method
from kprune.prune import prune
from kprune.data import as_data, evaluate_accuracy
from tests.prune_support import digits, small_cnn, trained_cnn

PRUNABLE = ("conv1", "conv2", "fc1")


def _data():
    (x, y), (xv, yv), (xt, yt) = digits()
    return dict(train_data=(x, y), val_data=(xv, yv)), as_data((xt, yt))


def _check_common(result, test, min_compression, loss=0.01):
    base, final = result.baseline, result.final
    assert result.model.count_params() == final["params"]
    assert result.compression >= min_compression
    assert final["macs"] < base["macs"]
    # The accuracy target: at most `loss` of validation accuracy lost.
    assert final["val_accuracy"] >= base["val_accuracy"] - loss - 1e-9
    assert evaluate_accuracy(result.model, test) >= 0.85
    widths = [e["widths"] for e in result.history if e["status"] in ("baseline", "accepted")]
    for a, b in zip(widths, widths[1:]):
        assert all(b[k] <= a[k] for k in a)
    assert final["widths"]["out"] == 10  # the model's output units are never pruned
    assert "parameters" in result.summary() and "MACs" in result.summary()
    assert type(result.model).__name__ == "Functional"  # a plain Keras model


@pytest.mark.parametrize("method", ["ilp", "iap"])
def test_percentile_methods_shrink_within_accuracy_bound(method):
    data, test = _data()
    # 300 validation digits: one point is 3 images, so allow 3 points here.
    result = prune(trained_cnn(), method, epochs=1, rounds=2, rate=0.3, seed=0,
                   target={"accuracy_loss": 0.03}, **data)
    _check_common(result, test, 1.4, loss=0.03)
    assert result.target_reached
    assert [e["round"] for e in result.history][:2] == [0, 1]


def test_aiap_controller_thresholds_and_accuracy_target():
    data, test = _data()
    result = prune(trained_cnn(), "aiap", epochs=1, rounds=3, seed=0, **data)
    _check_common(result, test, 1.2)
    tried = [e for e in result.history if e["round"] > 0]
    assert tried[0]["threshold"] == 0.0  # the controller starts at T = 0
    accepted = [e["threshold"] for e in tried if e["status"] == "accepted"]
    assert accepted == sorted(accepted)
    for prev, e in zip(tried, tried[1:]):
        if prev["status"] == "violated":  # rollback: step halved
            assert e["step"] == pytest.approx(prev["step"] / 2)


def test_aiap_params_target_and_unreachable_target():
    data, _ = _data()
    res = prune(trained_cnn(), "aiap", epochs=1, rounds=4, seed=0, step=2.0,
                target={"params_reduction": 0.3}, tolerance=0.5, **data)
    assert res.target_reached, res.reason
    assert 1 - res.final["params"] / res.baseline["params"] >= 0.3
    assert "reached" in res.reason
    with pytest.warns(RuntimeWarning, match="not reached"):
        bad = prune(trained_cnn(), "aiap", epochs=1, rounds=1, seed=0, step=4.0,
                    target={"params_reduction": 0.95}, max_fraction=0.3, **data)
    assert not bad.target_reached
    assert "not reached" in bad.reason
    assert bad.final["params"] < bad.baseline["params"]  # best feasible model returned
    assert bad.model.count_params() == bad.final["params"]


def test_round_to_min_channels_max_fraction_and_ignored_layers():
    data, _ = _data()
    res = prune(trained_cnn(), "ilp", epochs=1, rounds=2, rate=0.4, target="none", seed=0,
                round_to=4, min_channels=8, max_fraction={"fc1": 0.25},
                ignored_layers=["conv1"], **data)
    w = res.final["widths"]
    assert w["conv1"] == 16  # ignored
    assert w["conv2"] % 4 == 0 and w["conv2"] >= 8 and w["conv2"] < 16
    assert w["fc1"] % 4 == 0 and 48 <= w["fc1"] < 64  # at most 25% of 64 removed
    for e in res.history:
        assert all(e["widths"][k] % 4 == 0 for k in PRUNABLE)


def test_weight_rewinding_starts_each_round_from_early_weights():
    data, _ = _data()
    model = trained_cnn()
    early = [np.array(w) for w in small_cnn(seed=5).get_weights()]
    seen = []

    def fit_fn(m, train, epochs):
        seen.append({w.path: np.array(w.numpy()) for w in m.weights})
        m.fit(train[0], train[1], epochs=epochs, verbose=0)

    res = prune(model, "iap", epochs=1, rounds=1, rate=0.3, target="none", seed=0,
                retrain="weight_rewind", rewind_weights=early, fit_fn=fit_fn, **data)
    assert len(seen) == 1 and res.final["widths"]["fc1"] < 64
    ref = small_cnn(seed=5)
    ref.set_weights(early)
    start = {k.split("/")[0] + "/" + k.split("/")[-1]: v for k, v in seen[0].items()}
    np.testing.assert_array_equal(start["out/bias"], ref.get_layer("out").bias.numpy())
    # Every surviving conv1 filter is one of the early filters, unchanged.
    early_k = ref.get_layer("conv1").kernel.numpy().reshape(-1, 16).T
    for f in start["conv1/kernel"].reshape(-1, start["conv1/kernel"].shape[-1]).T:
        assert any(np.array_equal(f, e) for e in early_k)
    with pytest.raises(ValueError, match="rewind"):
        prune(trained_cnn(), "ilp", retrain="weight_rewind", rounds=1, **data)


def test_pretraining_with_weight_rewinding_and_recording_during_fit():
    data, test = _data()
    res = prune(small_cnn(seed=1), "iap", pretrain_epochs=3, rewind_epoch=1,
                retrain="weight_rewind", recording="fit", epochs=1, rounds=1, rate=0.3,
                target="none", seed=0, **data)
    assert res.baseline["val_accuracy"] > 0.7
    assert res.final["params"] < res.baseline["params"]
    assert evaluate_accuracy(res.model, test) > 0.6


def test_nan_round_is_discarded_and_previous_model_kept():
    data, _ = _data()
    calls = []

    def fit_fn(m, train, epochs):
        calls.append(1)
        m.fit(train[0], train[1], epochs=epochs, verbose=0)
        if len(calls) == 1:
            m.set_weights([np.full_like(w, np.nan) for w in m.get_weights()])

    with pytest.warns(RuntimeWarning, match="NaN"):
        res = prune(trained_cnn(), "ilp", epochs=1, rounds=2, rate=0.2, target="none",
                    seed=0, fit_fn=fit_fn, **data)
    status = [e["status"] for e in res.history]
    assert status == ["baseline", "nan_discarded", "accepted"]
    # Round 2 pruned the baseline again (same width as the discarded round 1),
    # not the NaN model.
    assert res.history[2]["params"] == res.history[1]["params"] < res.history[0]["params"]
    assert all(np.all(np.isfinite(w)) for w in res.model.get_weights())
    assert res.final_round == 2


def test_compiled_config_drives_training_and_datasets_are_accepted():
    import tensorflow as tf

    (x, y), (xv, yv), _ = digits()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)

    class Seq(keras.utils.PyDataset):
        def __len__(self):
            return len(xv) // 100

        def __getitem__(self, i):
            return xv[i * 100:(i + 1) * 100], yv[i * 100:(i + 1) * 100]

    model = trained_cnn()
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    res = prune(model, "ilp", train_data=ds, val_data=Seq(), epochs=1, rounds=1,
                rate=0.3, target="none", seed=0)
    # lr 0 (the compiled optimizer) means the pruned survivors keep their weights.
    k0 = model.get_layer("out").kernel.numpy()
    k1 = res.model.get_layer("out").kernel.numpy()
    assert k1.shape[0] < k0.shape[0]
    for row in k1:  # every surviving input row of the classifier is unchanged
        assert any(np.array_equal(row, r) for r in k0)
    assert res.final["widths"]["fc1"] < 64


def test_registry_and_complexity_option():
    assert {"ilp", "iap", "aiap"} <= set(METHODS)

    @register_method("test_noop")
    def noop(ctx):
        return ctx.finish("nothing to do")

    data, _ = _data()
    try:
        res = prune(trained_cnn(), "test_noop", **data)
        assert res.reason == "nothing to do" and res.compression == 1.0
    finally:
        METHODS.pop("test_noop")
    with pytest.raises(ValueError, match="unknown pruning method"):
        prune(trained_cnn(), "nope", **data)
    try:
        import kprune.methods.complexity  # noqa: F401
    except ImportError:
        with pytest.raises(NotImplementedError):
            prune(trained_cnn(), "ilp", complexity_aware="params", **data)
        return
    # Parameter-aware ILP: fc1 (most parameters) loses a larger share than conv1.
    res = prune(trained_cnn(), "ilp", complexity_aware="params", epochs=1, rounds=1,
                rate=0.3, target="none", seed=0, **data)
    w0, w1 = res.baseline["widths"], res.final["widths"]
    assert 1 - w1["fc1"] / w0["fc1"] > 1 - w1["conv1"] / w0["conv1"]


def test_batchnorm_recalibration_sets_population_statistics():
    from kprune.methods.trainer import recalibrate_batchnorm

    model = small_cnn()
    x = np.random.default_rng(0).uniform(size=(300, 8, 8, 1)).astype("float32")
    model.get_layer("bn2").moving_mean.assign(np.full(16, 5.0, "float32"))
    assert recalibrate_batchnorm(model, x, batch_size=64) == 1
    a = keras.Model(model.inputs, model.get_layer("conv2").output).predict(x, verbose=0)
    a = a.astype(np.float64)
    bn = model.get_layer("bn2")
    np.testing.assert_allclose(bn.moving_mean.numpy(), a.mean((0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), a.var((0, 1, 2)), atol=1e-6)
