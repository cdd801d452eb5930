"""``epochs_per_cost``: a round retrains in proportion to the cost it removes
(max(epochs, round(epochs_per_cost * f)), f = removed fraction of the MACs
for a MAC target, else of the parameters); bad values and methods that do
not retrain rounds refuse it."""

import pytest

import kprune
from kprune.methods.config import RunConfig
from tests.prune_support import digits, small_cnn


def _run(epochs_per_cost, target, rate, rounds=2, epochs=1):
    (x, y), val, _ = digits()
    trained = []

    def fit_fn(model, data, n):  # records what each round is given, trains nothing
        trained.append(n)

    res = kprune.prune(small_cnn(), "ilp", train_data=(x, y), val_data=val, epochs=epochs,
                       rounds=rounds, rate=rate, target=target, fit_fn=fit_fn,
                       bn_recalibration=False, epochs_per_cost=epochs_per_cost)
    return res, trained


def test_rounds_retrain_in_proportion_to_the_removed_macs():
    res, trained = _run(8.0, {"macs_reduction": 0.9}, rate=0.5)
    rounds = [e for e in res.history if e["status"] == "accepted"]
    assert len(rounds) == 2 and trained == [e["epochs"] for e in rounds]
    prev = res.history[0]
    for e in rounds:
        f = 1 - e["macs"] / prev["macs"]  # MACs: the target's kind (cost='auto' -> 'macs')
        assert e["removed_cost_fraction"] == pytest.approx(f)
        assert e["epochs"] == max(1, round(8.0 * f))
        prev = e
    # halving conv1 / conv2 removes ~3/4 of the conv MACs: more than 1 epoch
    assert rounds[0]["epochs"] >= 5


def test_parameter_target_prices_parameters_and_epochs_is_the_floor():
    res, trained = _run(2.0, {"params_reduction": 0.9}, rate=0.1, rounds=1, epochs=3)
    e = res.history[1]
    f = 1 - e["params"] / res.history[0]["params"]
    assert e["removed_cost_fraction"] == pytest.approx(f) and 2.0 * f < 3
    assert trained == [3] and e["epochs"] == 3  # never fewer than epochs=


def test_without_the_option_every_round_gets_epochs():
    res, trained = _run(None, {"macs_reduction": 0.9}, rate=0.5, epochs=2)
    assert trained == [2, 2]
    assert all("removed_cost_fraction" not in e for e in res.history)


@pytest.mark.parametrize("value, exc", [(0, ValueError), (-1.5, ValueError),
                                        (float("inf"), ValueError), ("4", TypeError),
                                        (True, TypeError)])
def test_bad_values_are_refused_before_any_work(value, exc):
    with pytest.raises(exc, match=r"epochs_per_cost must be a positive number.*retrains "
                                  r"max\(epochs, round\(epochs_per_cost \* f\)\)"):
        RunConfig.build(small_cnn(), "aiap", 1, 2, {"macs_reduction": 0.5},
                        {"epochs_per_cost": value}, None)


def test_complexity_refuses_it():
    with pytest.raises(TypeError, match=r"\['epochs_per_cost'\].*is an option of methods "
                                        r"'aiap' / 'iap' / 'ilp'"):
        RunConfig.build(small_cnn(), "complexity", 1, 2, 0.5, {"epochs_per_cost": 4.0}, None)

