"""Issue 9 options: allocation, Taylor criterion, tie-breaking, per-round cap,
distillation, cosine learning rate, final fine-tuning, AIAP landing on a size
target, patience. Each option is checked to move the result the way it claims
on a small real case (sklearn digits), and bad values to fail clearly."""

import warnings

import keras
import numpy as np
import pytest

from kprune import data as training
from kprune.methods import trainer
from kprune.scoring import criteria
from kprune.methods import selection
from kprune.prune import prune
from tests.prune_support import digits, small_cnn, trained_cnn


def _data():
    (x, y), (xv, yv), _ = digits()
    return dict(train_data=(x, y), val_data=(xv, yv))


def test_percentile_rule_breaks_ties_and_cap_and_global_rank():
    # Dead units all score 0: the rule removes round(rate * n), not every tie.
    assert selection.percentile_candidates(np.zeros(8), 0.25).sum() == 2
    assert selection.percentile_candidates(np.array([0., 0., 0., 1.]), 0.25).tolist() == \
        [True, False, False, False]
    capped = selection.cap_candidates(np.arange(10.), np.ones(10, bool), 0.3)
    assert capped.tolist() == [True] * 3 + [False] * 7
    # Global rank on mean-normalized scores: the weak unit of group 1 goes first.
    m = selection.global_candidates({0: np.array([1., 1., 1.]), 1: np.array([.1, 2., 2.])}, 0.2)
    assert m[0].sum() == 0 and m[1].tolist() == [True, False, False]


def test_taylor_equals_activation_times_gradient():
    (x, y), _, _ = digits()
    model = trained_cnn()
    x, y = x[:64], y[:64]
    scores = criteria.taylor_scores(model, (x, y), batch_size=64)
    analysis = criteria._analysis_parts(model, None)
    g = [g for g in analysis.groups if g.name == "fc1"][0]
    # Explicit: A = fc1 output (post-ReLU), |sum_n A * dL/dA| per unit.
    feat = keras.Model(model.inputs, model.get_layer("fc1").output)
    import tensorflow as tf

    a = tf.constant(feat.predict(x, verbose=0))
    with tf.GradientTape() as tape:
        tape.watch(a)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
            y, model.get_layer("out")(a)))
    explicit = np.abs(np.sum(a.numpy() * tape.gradient(loss, a).numpy(), 0))
    np.testing.assert_allclose(scores[g.index], explicit, rtol=1e-3, atol=1e-6)
    # A unit whose output the loss does not depend on scores zero.
    w = model.get_layer("out").get_weights()
    w[0][3] = 0.0
    model.get_layer("out").set_weights(w)
    s = criteria.taylor_scores(model, (x, y))[g.index]
    assert s[3] == pytest.approx(0.0, abs=1e-9) and s.min() == s[3]


def test_global_allocation_spares_strong_groups():
    kw = dict(epochs=1, rounds=1, rate=0.3, seed=0, target="none", **_data())
    layer = prune(trained_cnn(), "iap", allocation="layer", **kw)
    glob = prune(trained_cnn(), "iap", allocation="global", criterion="taylor", **kw)
    units = {"conv1": 16, "conv2": 16, "fc1": 64}
    # layer: every group loses round(0.3 n); global: the same total, spread by score.
    assert layer.history[1]["removed_by_group"] == {k: round(0.3 * n) for k, n in units.items()}
    removed = glob.history[1]["removed_by_group"]
    assert sum(removed.values()) == round(0.3 * sum(units.values()))
    assert removed != layer.history[1]["removed_by_group"]


def test_max_round_fraction_caps_each_group():
    res = prune(trained_cnn(), "aiap", epochs=1, rounds=1, seed=0, step=50.0,
                max_round_fraction=0.25, target="none", **_data())
    removed = res.history[1]["removed_by_group"]
    assert removed and all(v <= {"conv1": 4, "conv2": 4, "fc1": 16}[k]
                           for k, v in removed.items())


def test_aiap_lands_on_size_target_without_overshoot():
    kw = dict(epochs=1, rounds=3, seed=0, step=20.0, target={"params_reduction": 0.5},
              **_data())
    res = prune(trained_cnn(), "aiap", **kw)
    loose = prune(trained_cnn(), "aiap", tolerance=1.0, max_round_reduction=1.0, **kw)  # free
    red = 1 - res.final["params"] / res.baseline["params"]
    red_loose = 1 - loose.final["params"] / loose.baseline["params"]
    assert res.target_reached and 0.5 <= red < red_loose
    assert red < 0.65  # within a unit's granularity (one conv2 unit is ~6%)
    assert all(e["status"] == "accepted" for e in res.history[1:])  # no retraining wasted


def test_aiap_trims_rounds_from_zero_not_from_the_last_threshold():
    # Scores are re-normalised on each round's model, so the last accepted
    # threshold already removes units; trimming must bisect down to 0. On this
    # case the old trim (bisecting down to the last threshold only) ended at
    # 0.854 for a 0.75 target and let one round remove 53% of the parameters
    # under the 50% cap. (Proportional shares: the case that showed the bug;
    # with the default square-root shares one conv2 unit, ~2% here, is the
    # landing granularity. It lands at 0.758 with kprune's own shuffle.)
    kw = dict(epochs=1, rounds=6, seed=0, step=1.0, share_power=1.0, **_data())
    res = prune(trained_cnn(), "aiap", target={"params_reduction": 0.75}, **kw)
    red = 1 - res.final["params"] / res.baseline["params"]
    assert res.target_reached and 0.75 <= red < 0.76
    deep = prune(trained_cnn(), "aiap", target={"params_reduction": 0.85}, **kw)
    params = [e["params"] for e in deep.history if e["status"] in ("baseline", "accepted")]
    assert len(params) >= 4
    assert all(1 - b / a <= 0.5 + 1e-9 for a, b in zip(params, params[1:])), params


def test_distillation_pulls_student_toward_teacher():
    (x, y), _, _ = digits()
    teacher = trained_cnn()
    t_out = teacher.predict(x, verbose=0)

    def kl_after(distill):
        student = small_cnn(seed=1, bn=False)  # no BN statistics lag in the comparison
        trainer.fit_once(student, training.as_data((x, y), 48), 2,
                          trainer.compile_config_of(student), distill=distill,
                          teacher_outputs=t_out if distill else None)
        s = np.clip(student.predict(x, verbose=0), 1e-7, 1)
        return float(np.mean(np.sum(t_out * (np.log(np.clip(t_out, 1e-7, 1)) - np.log(s)), 1)))

    assert kl_after((1.0, 1.0)) < kl_after(None)


def test_cosine_schedule_decays_within_a_round():
    (x, y), _, _ = digits()
    model = trained_cnn()
    lrs = []

    class Grab(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    trainer.fit_once(model, training.as_data((x, y), 100), 2, trainer.compile_config_of(model),
                      callbacks=[Grab()], lr_schedule="cosine")
    assert lrs[0] == pytest.approx(3e-3, rel=0.05) and lrs[-1] < 0.05 * lrs[0]
    assert model.optimizer.get_config()["learning_rate"] == pytest.approx(3e-3)  # restored


def test_finetune_epochs_recovers_and_counts_and_resumes(tmp_path):
    kw = dict(epochs=1, rounds=1, rate=0.6, seed=0, target="none", out_dir=str(tmp_path),
              **_data())
    res = prune(trained_cnn(), "ilp", finetune_epochs=3, **kw)
    last = res.history[-1]
    assert last["status"] == "finetuned" and last["epochs"] == 3
    assert res.final is last and res.model.count_params() == res.history[1]["params"]
    assert last["val_accuracy"] >= res.history[1]["val_accuracy"]
    again = prune(trained_cnn(), "ilp", finetune_epochs=3, **kw)  # resumed: nothing redone
    assert again.history == res.history


def test_patience_default_runs_every_round_and_returns_smallest_feasible():
    res = prune(trained_cnn(), "ilp", epochs=1, rounds=3, rate=0.5, seed=0,
                target={"accuracy_loss": 0.02}, **_data())
    assert max(e["round"] for e in res.history) == 3
    feasible = [e["round"] for e in res.history if e.get("feasible")]
    assert res.final_round == max(feasible)


@pytest.mark.parametrize("opts, match", [
    ({"allocation": "per_layer"}, "allocation must be 'layer'"),
    ({"max_round_fraction": 1.5}, "max_round_fraction must be"),
    ({"lr_schedule": "step"}, "lr_schedule must be"),
    ({"distill": 2.0}, "distill=2.0: weight must be in"),
    ({"distill": "yes"}, "distill='yes': use a weight"),
    ({"finetune_epochs": -1}, "finetune_epochs must be >= 0"),
    ({"share_power": -0.5}, "share_power must be a number >= 0 .*got -0.5"),
    ({"share_power": "sqrt"}, "share_power must be a number >= 0 .*got 'sqrt'"),
])
def test_bad_option_values_name_the_option(opts, match):
    method = "aiap" if "share_power" in opts else "iap"
    exc = TypeError if opts.get("share_power") == "sqrt" else ValueError
    with pytest.raises(exc, match=match):
        prune(trained_cnn(), method, rounds=1, **opts, **_data())


def test_taylor_and_distill_need_what_they_use():
    model = small_cnn()
    bare = keras.Model(model.inputs, model.outputs)  # not compiled: no loss
    with pytest.raises(ValueError, match="criterion 'taylor' needs the training loss"):
        criteria.taylor_scores(bare, digits()[0])
    with pytest.raises(ValueError, match="distill= and lr_schedule= need kprune's own"):
        prune(trained_cnn(), "iap", rounds=1, distill=0.5,
              fit_fn=lambda m, d, e: None, **_data())
    # Streams are distilled per batch: tests/test_distill_streams.py.


def test_aiap_max_round_reduction_makes_smaller_steps():
    kw = dict(epochs=1, rounds=2, seed=0, step=20.0, target="none", **_data())
    free = prune(trained_cnn(), "aiap", max_round_reduction=1.0, **kw)
    capped = prune(trained_cnn(), "aiap", max_round_reduction=0.3, **kw)

    def cut(res, i):
        return 1 - res.history[i]["params"] / res.history[i - 1]["params"]

    assert cut(free, 2) > 0.3  # the automatic threshold jumps
    assert all(0 < cut(capped, i) <= 0.3 for i in (1, 2))
    with pytest.raises(ValueError, match="max_round_reduction must be"):
        prune(trained_cnn(), "aiap", max_round_reduction=1.5, rounds=1, **_data())


def test_validation_noise_helpers_agree():
    from kprune.methods.goal import NOISE_Z, samples_to_resolve, validation_standard_error

    assert validation_standard_error(0.97, 600) == pytest.approx(0.00696, abs=1e-5)
    for acc, loss in ((0.97, 0.01), (0.86, 0.01), (0.5, 0.02)):
        n = samples_to_resolve(acc, loss)
        assert NOISE_Z * validation_standard_error(acc, n) <= loss
        assert NOISE_Z * validation_standard_error(acc, n - 1) > loss


def test_accuracy_target_finer_than_validation_noise_warns():
    (x, y), (xv, yv), _ = digits()
    small = dict(train_data=(x, y), val_data=(xv[:60], yv[:60]))
    # A tiny validation set cannot judge a 1-point accuracy target.
    with pytest.warns(RuntimeWarning, match=r"val_data has 60 samples.*allowed accuracy "
                      r"loss of 1\.00 points.*at least \d+ samples"):
        res = prune(trained_cnn(), "ilp", epochs=1, rounds=1, seed=0,
                    target={"accuracy_loss": 0.01}, **small)
    base = res.history[0]
    assert base["val_samples"] == 60
    assert base["val_standard_error"] == pytest.approx(
        np.sqrt(base["val_accuracy"] * (1 - base["val_accuracy"]) / 60))
    # The same data with a target it can resolve, and a size target: no warning.
    for target in ({"accuracy_loss": 0.3}, {"params_reduction": 0.3}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prune(trained_cnn(), "ilp", epochs=1, rounds=1, seed=0, target=target, **small)
        assert not [w for w in caught if "val_data has" in str(w.message)], target


def test_aiap_share_power_moves_cuts_from_big_groups_to_small_ones():
    from kprune.methods.aiap import powered_shares

    shares = {0: 0.64, 1: 0.32, 2: 0.04}
    assert powered_shares(shares, 1.0) == pytest.approx(shares)
    assert powered_shares(shares, 0.0) == pytest.approx({0: 1 / 3, 1: 1 / 3, 2: 1 / 3})
    half = powered_shares(shares, 0.5)
    assert half[2] / half[0] == pytest.approx(np.sqrt(0.04 / 0.64))
    # One AIAP round at a fixed threshold step: the smaller the power, the
    # more of the small group (conv1) and the less of the big ones it cuts.
    # (Round 1 runs at threshold 0 and removes only the dead units; round 2
    # is the first at the step.)
    kw = dict(epochs=1, rounds=2, seed=0, step=2.0, target="none",
              max_round_reduction=1.0, **_data())
    widths = {p: prune(trained_cnn(), "aiap", share_power=p, **kw).history[2]["widths"]
              for p in (1.0, 0.5, 0.0)}
    assert widths[1.0]["conv1"] > widths[0.5]["conv1"] >= widths[0.0]["conv1"], widths
    assert widths[1.0]["fc1"] <= widths[0.5]["fc1"], widths
