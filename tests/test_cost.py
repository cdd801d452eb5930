"""MACs and latency as objectives of ILP / IAP / AIAP: ``cost=`` (importance
per unit of cost, allocation by cost, AIAP shares priced by the cost) and its
``'auto'`` default that follows the target kind."""

import numpy as np
import pytest

import kprune
from kprune.core.complexity_weights import group_complexity
from kprune.core.dependency import analyze
from kprune.methods import selection
from kprune.methods.goal import Target
from kprune.methods.options import resolve_cost
from tests.prune_support import digits, small_cnn, trained_cnn


def _data():
    (x, y), (xv, yv), _ = digits()
    return dict(train_data=(x[:240], y[:240]), val_data=(xv[:120], yv[:120]))


def _no_training(model, data, epochs):
    return None


def _run(method, **kw):
    kw.setdefault("fit_fn", _no_training)
    return kprune.prune(trained_cnn(), method, **_data(), **kw)


def _lost(res, layer):
    return 1 - res.final["widths"][layer] / res.baseline["widths"][layer]


def test_cost_candidates_take_least_importance_per_cost_up_to_the_rate():
    scores = {0: np.array([1.0, 1.0]), 1: np.array([1.0, 1.0, 1.0, 1.0])}
    m = selection.cost_candidates(scores, {0: 3.0, 1: 0.5}, 0.5)
    assert [int(m[0].sum()), int(m[1].sum())] == [1, 0]   # 3 of the 4 allowed
    m = selection.cost_candidates(scores, {0: 3.0, 1: 0.5}, 1.0)
    assert [int(m[0].sum()), int(m[1].sum())] == [2, 4]
    # Importance counts as well: a weak unit of a cheap group goes first.
    m = selection.cost_candidates({0: np.array([1.0, 1.0]), 1: np.array([0.01, 1, 1, 1])},
                                  {0: 3.0, 1: 0.5}, 0.05)
    assert [int(m[0].sum()), int(m[1].sum())] == [0, 1]
    # A unit that saves nothing is never taken.
    m = selection.cost_candidates(scores, {0: 0.0, 1: 1.0}, 1.0)
    assert int(m[0].sum()) == 0 and int(m[1].sum()) == 4


def test_cost_candidates_price_comparable_scores_as_they_are():
    # Group 0: costly and important; group 1: cheap and near-useless.
    scores = {0: np.array([10.0, 10.0]), 1: np.array([0.1, 0.1, 0.1, 0.1])}
    costs = {0: 3.0, 1: 0.5}
    # Normalized, every group's mean unit is 1: the costliest group goes first.
    m = selection.cost_candidates(scores, costs, 0.25)
    assert [int(m[0].sum()), int(m[1].sum())] == [1, 0]
    # On one scale (normalize=False) the useless cheap units go first.
    m = selection.cost_candidates(scores, costs, 0.25, normalize=False)
    assert [int(m[0].sum()), int(m[1].sum())] == [0, 4]


@pytest.mark.parametrize("method, comparable", [("iap", True), ("ilp", False)])
def test_allocation_by_cost_normalizes_only_scores_on_different_scales(
        monkeypatch, method, comparable):
    calls = []
    real = selection.cost_candidates

    def spy(*args, **kw):
        calls.append(kw.get("normalize", True))
        return real(*args, **kw)

    monkeypatch.setattr(selection, "cost_candidates", spy)
    _run(method, cost="macs", rounds=1, rate=0.2, target="none")
    # IAP's Taylor scores estimate loss changes (one scale): not normalized;
    # ILP's L1 norms differ in scale from layer to layer: normalized.
    assert calls and set(calls) == {not comparable}


def test_unit_costs_are_per_unit_savings():
    from kprune.methods.options import RunOptions
    from kprune.methods.proposer import Proposer
    from kprune.methods.iap import IAPOptions

    model = trained_cnn()
    analysis = analyze(model)
    opts = IAPOptions(cost="macs")
    costs = Proposer(opts, RunOptions(), None).unit_costs(model, analysis)
    macs = group_complexity(model, "macs", analysis)
    names = {g.index: g.name for g in analysis.groups}
    per_unit = {g.index: macs[i] / g.channels for i, g in enumerate(analysis.groups)}
    for k, v in costs.items():  # proportional to the MACs one unit carries
        assert v / costs[0] == pytest.approx(per_unit[k] / per_unit[0]), names[k]
    units = sum(g.channels for g in analysis.groups)
    assert sum(costs[g.index] * g.channels for g in analysis.groups) / units == \
        pytest.approx(1.0)
    assert Proposer(IAPOptions(cost=None), RunOptions(), None).unit_costs(model, analysis) \
        is None


def test_auto_cost_follows_the_target_kind():
    assert resolve_cost("auto", Target("macs_reduction", 0.5)) == "macs"
    assert resolve_cost("auto", Target("latency_ms", 1.0)) == "latency"
    for t in (None, Target("params_reduction", 0.5), Target("accuracy_loss", 0.01),
              Target("arena_bytes", 1e4)):
        assert resolve_cost("auto", t) is None
    assert resolve_cost("auto", Target("macs_reduction", 0.5), complexity_aware="macs") is None
    assert resolve_cost("flops", None) == "macs"


@pytest.mark.parametrize("method, cost", [("iap", "auto"), ("ilp", "macs")])
def test_a_mac_target_prunes_for_macs_by_default(method, cost):
    # small_cnn: conv2 holds ~85% of the MACs, fc1 ~85% of the parameters.
    plain = _run(method, target={"macs_reduction": 0.5}, rate=0.3, rounds=6, cost=None)
    auto = _run(method, target={"macs_reduction": 0.5}, rate=0.3, rounds=6, cost=cost)
    for res in (plain, auto):
        assert res.target_reached, res.reason
    assert {e.get("cost") for e in auto.history[1:]} == {"macs"}
    assert all("cost" not in e for e in plain.history)
    # Priced by MACs, the run spares the Dense layer (cheap in MACs, heavy in
    # parameters): the same MAC reduction for fewer parameters removed.
    assert _lost(auto, "fc1") < _lost(plain, "fc1")
    assert auto.final["params"] > 1.1 * plain.final["params"]
    assert auto.final["macs"] <= 0.5 * auto.baseline["macs"] + 1e-9


def test_auto_cost_keeps_per_layer_scores_at_a_uniform_rate():
    # L1 norms differ in scale from layer to layer: priced by MACs, the
    # costliest group would go first whatever its filters are worth. 'auto'
    # keeps ILP's uniform rate (the MAC target still stops the run);
    # cost='macs' given explicitly prices.
    auto = _run("ilp", target={"macs_reduction": 0.5}, rate=0.3, rounds=6)
    plain = _run("ilp", target={"macs_reduction": 0.5}, rate=0.3, rounds=6, cost=None)
    priced = _run("ilp", target={"macs_reduction": 0.5}, rate=0.3, rounds=6, cost="macs")
    assert auto.target_reached and auto.final["macs"] <= 0.5 * auto.baseline["macs"] + 1e-9
    assert all("cost" not in e for e in auto.history)
    assert auto.final["widths"] == plain.final["widths"]
    assert {e.get("cost") for e in priced.history[1:]} == {"macs"}
    assert priced.final["widths"] != auto.final["widths"]


def test_a_uniform_rate_lands_between_whole_group_steps():
    # Two channels per conv layer: any rate removes one from each (the least
    # a round removes is a unit per group), ~55 % of the MACs. The round that
    # lands a 10 % MAC target may leave small groups whole and cut fc1 only.
    res = kprune.prune(small_cnn(width=2), "ilp", target={"macs_reduction": 0.1}, rate=0.3,
                       rounds=1, fit_fn=_no_training, **_data())
    red = 1 - res.final["macs"] / res.baseline["macs"]
    assert res.target_reached and 0.1 <= red < 0.15, red
    assert res.final["widths"]["conv1"] == res.final["widths"]["conv2"] == 2
    assert res.final["widths"]["fc1"] < 64
    assert 0 < res.history[1]["rate"] < 0.3
    # Just past that step, a unit from each conv layer and a few from fc1 land
    # closer than rates that leave the small groups whole (those reach 0.56
    # only with a quarter of fc1): the trim keeps whichever removes less.
    near = kprune.prune(small_cnn(width=2), "ilp", target={"macs_reduction": 0.56}, rate=0.3,
                        rounds=1, fit_fn=_no_training, **_data())
    red = 1 - near.final["macs"] / near.baseline["macs"]
    assert near.target_reached and 0.56 <= red < 0.57, red
    assert near.final["widths"]["conv1"] == near.final["widths"]["conv2"] == 1
    assert near.final["widths"]["fc1"] > 56
    # Without a size target the same rate still takes a unit from every group.
    free = kprune.prune(small_cnn(width=2), "ilp", target="none", rate=0.1, rounds=1,
                        fit_fn=_no_training, **_data())
    assert free.final["widths"]["conv1"] == free.final["widths"]["conv2"] == 1


def test_cost_allocation_layer_scales_rates_by_unit_cost():
    res = _run("ilp", target="none", rounds=1, rate=0.25, cost="macs", allocation="layer")
    plain = _run("ilp", target="none", rounds=1, rate=0.25, cost=None)
    # MAC-heavy units (conv2) go faster than the plain rate, cheap ones (fc1) slower.
    assert _lost(res, "conv2") > _lost(plain, "conv2")
    assert _lost(res, "fc1") < _lost(plain, "fc1")


def test_rate_is_a_fraction_of_the_cost():
    def cut(res, key):
        return 1 - res.final[key] / res.baseline[key]

    kw = dict(target="none", rounds=1, rate=0.2)
    by_params = _run("iap", cost="params", **kw)
    by_macs = _run("iap", cost="macs", **kw)
    # One round removes about `rate` of what the cost counts (first order:
    # a unit's cost counts the weights of its producers and consumers).
    assert 0.1 <= cut(by_params, "params") <= 0.45
    assert 0.1 <= cut(by_macs, "macs") <= 0.45
    assert cut(by_params, "params") / cut(by_params, "macs") > \
        cut(by_macs, "params") / cut(by_macs, "macs")


def test_a_global_rate_skips_groups_at_their_floor():
    """conv2 may not shrink (max_fraction 0). A global ranking that chose
    some of its units used to lose them to the limit, so a round removed
    fewer than ``round(rate * alive units)``; now the rate goes to the groups
    that can still shrink, every round."""
    res = _run("iap", target="none", rounds=3, rate=0.2, cost=None,
               max_fraction={"conv2": 0.0})
    assert res.final["widths"]["conv2"] == res.baseline["widths"]["conv2"]
    rounds = [e for e in res.history if e["status"] in ("baseline", "accepted")]
    assert len(rounds) == 4, res.reason
    for before, after in zip(rounds, rounds[1:]):
        alive = sum(v for k, v in before["widths"].items() if k != "out")
        gone = alive - sum(v for k, v in after["widths"].items() if k != "out")
        assert gone == int(np.floor(0.2 * alive + 0.5)), (before["widths"], after["widths"])


def test_room_counts_what_the_limits_still_allow():
    from kprune.methods.iap import IAPOptions
    from kprune.methods.options import RunOptions
    from kprune.methods.proposer import Proposer

    model = trained_cnn()
    analysis = analyze(model)
    by_name = {g.name: g for g in analysis.groups}
    room = Proposer(IAPOptions(max_fraction={"conv2": 0.0}, max_round_fraction=0.25),
                    RunOptions(min_channels=2), None).room(analysis)
    for name, g in by_name.items():
        want = 0 if name == "conv2" else min(g.channels - 2, int(np.ceil(0.25 * g.channels)))
        assert room[g.index] == want, name
    m = selection.global_candidates({0: np.array([0.1, 3.0]), 1: np.array([1.0, 2.0, 3.0])},
                                    0.4, room={0: 0, 1: 3})
    assert [int(m[0].sum()), int(m[1].sum())] == [0, 2]
    # By cost: group 0's units are the cheapest per cost, but it is at its floor.
    m = selection.cost_candidates({0: np.array([0.1, 0.1]), 1: np.array([1.0, 1.0, 1.0])},
                                  {0: 10.0, 1: 1.0}, 0.1, room={0: 0, 1: 3})
    assert [int(m[0].sum()), int(m[1].sum())] == [0, 2]


def test_aiap_shares_follow_the_cost():
    # Round 1 is at T = 0 (dead units only); round 2 at T = step.
    kw = dict(target={"accuracy_loss": 0.99}, rounds=2, step=1.0, max_round_reduction=1.0)
    by_params = _run("aiap", cost="params", **kw)
    by_macs = _run("aiap", cost="macs", **kw)
    auto_mac_target = _run("aiap", target={"macs_reduction": 0.3}, rounds=4, step=0.6)
    assert {e.get("cost") for e in by_macs.history[1:]} == {"macs"}
    assert {e.get("cost") for e in by_params.history[1:]} == {"params"}
    # MAC shares: the conv layers' thresholds rise, the Dense layer's fall.
    assert _lost(by_macs, "conv1") > _lost(by_params, "conv1")
    assert _lost(by_macs, "fc1") < _lost(by_params, "fc1")
    assert by_macs.final["macs"] < by_params.final["macs"]
    assert {e.get("cost") for e in auto_mac_target.history[1:]} == {"macs"}
    assert auto_mac_target.target_reached, auto_mac_target.reason


@pytest.mark.parametrize("kw, err, msg", [
    (dict(cost="bogus"), ValueError, r"cost must be 'auto'.*got 'bogus'"),
    (dict(cost="latency"), ValueError, r"cost='latency'.*target_latency_ms"),
    (dict(cost="macs", complexity_aware="macs"), ValueError,
     r"cost='macs' and complexity_aware='macs' both price"),
])
def test_bad_cost_options(kw, err, msg):
    with pytest.raises(err, match=msg):
        _run("iap", rounds=1, **kw)


def test_rounds_record_time_per_phase(tmp_path):
    res = kprune.prune(trained_cnn(), "iap", **_data(), epochs=1, rounds=2, rate=0.2,
                       target="none", out_dir=str(tmp_path / "run"))
    rounds = [e for e in res.history if e["round"] > 0]
    assert rounds
    for e in rounds:
        phases = e["phase_s"]
        assert {"scoring", "rebuild", "training", "tracing", "evaluation",
                "measurement"} <= set(phases)
        assert all(v >= 0 for v in phases.values())
        # every round fits a new model: its train step is traced
        assert phases["tracing"] > 0
        # The phases are parts of the wall time between entries.
        assert (phases["training"] + phases["tracing"] + phases.get("bn_recalibration", 0)
                + phases["evaluation"] <= e["time_s"] + 1e-3)
    assert "checkpoint" in rounds[-1]["phase_s"]   # the previous commit's write
    totals = res.phase_times
    assert totals["training"] == pytest.approx(sum(e["phase_s"]["training"] for e in rounds))
    assert "time: " in res.summary() and "training" in res.summary()


def test_step_clock_estimates_tracing_from_the_first_step():
    from kprune.methods.trainer import _StepClock

    model = trained_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = _data()["train_data"]
    clocks = [_StepClock(), _StepClock()]
    for clock in clocks:  # the second fit reuses the traced train step
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[clock])
    first, second = (c.tracing_s for c in clocks)
    assert first > 0 and first > 3 * second, (first, second)


def test_complexity_aware_moves_a_global_ranking():
    # IAP ranks globally; complexity_aware divides each group's normalized
    # scores by its share of the complexity, so heavy groups go first. (The
    # weight used to divide the raw scores, which the per-group
    # normalization then undid: the option changed nothing.)
    plain = _run("iap", rounds=1, rate=0.3, target="none", seed=0)
    by_params = _run("iap", rounds=1, rate=0.3, target="none", seed=0,
                     complexity_aware="params")
    by_memory = _run("iap", rounds=1, rate=0.3, target="none", seed=0,
                     complexity_aware="memory")
    assert plain.final["rate"] == by_params.final["rate"] == 0.3
    # conv1 carries ~6 % of the prunable parameters: it loses less.
    assert _lost(by_params, "conv1") < _lost(plain, "conv1")
    assert by_params.final["params"] < plain.final["params"]
    # conv2's output carries ~77 % of the activation bytes: it loses more.
    assert _lost(by_memory, "conv2") > _lost(plain, "conv2")
