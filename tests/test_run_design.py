"""The orchestration layer's parts: typed config, typed state, round
callbacks and criteria as classes."""

import json

import numpy as np
import pytest

import kprune
from kprune.methods.config import RunConfig
from kprune.methods.goal import Target, parse_target
from kprune.methods.state import STATE_VERSION, RoundEntry, RoundStatus, RunState
from kprune.scoring import (APoZ, Attention, Criterion, FunctionCriterion, L1Norm,
                            MeanActivation, Taylor, get_criterion, score_groups)
from tests.prune_support import digits, small_cnn, trained_cnn


def _data(n=96):
    (x, y), (xv, yv), _ = digits()
    return (x[:n], y[:n]), (xv[:64], yv[:64])


def my_scores(model, group):  # a module-level criterion (stable name)
    return np.arange(group.channels, dtype=float)


# -- config ----------------------------------------------------------------------

def test_config_is_typed_and_takes_method_defaults():
    model = small_cnn()
    iap = RunConfig.build(model, "iap", 1, 3, None, {}, None)
    assert isinstance(iap.criterion, Taylor) and iap.method_options.allocation == "global"
    assert iap.target == Target("accuracy_loss", 0.01) and iap.target.is_accuracy
    ilp = RunConfig.build(model, "ilp", 1, 3, {"params_reduction": 0.5},
                          {"ignored_layers": "conv1", "criterion": "attention", "p": 3},
                          None)
    assert ilp.options.ignored_layers == ("conv1",)
    assert ilp.criterion == Attention(p=3) and ilp.target == Target("params_reduction", 0.5)
    with pytest.raises(Exception):
        ilp.method_options.rate = 0.5  # frozen
    cx = RunConfig.build(model, "complexity", 1, 1, 0.5, {"mode": "flops"}, None)
    # 'flops' is read as MACs (one vocabulary); the mode is the method's own option
    assert cx.method_options["mode"] == "macs" and "mode" not in cx.options.to_dict()
    assert cx.criterion is None  # the complexity method scores nothing


def test_stable_options_carry_no_memory_address():
    model = small_cnn()
    cfg = RunConfig.build(model, "ilp", 1, 2, None, {"criterion": my_scores}, None)
    text = json.dumps(cfg.stable_options(), default=str)
    assert "0x" not in text and "test_run_design.my_scores" in text


@pytest.mark.parametrize("options, exc, pattern", [
    ({"retrain": "rewind"}, ValueError, r"retrain must be 'lr_rewind'.*got 'rewind'"),
    ({"allocation": "per_layer"}, ValueError, r"allocation must be 'layer'"),
    ({"lr_schedule": "step"}, ValueError, r"lr_schedule must be None"),
    ({"criterion": "l3"}, ValueError, r"unknown criterion 'l3'.*'l1'"),
    ({"criterion": 3}, TypeError, r"criterion must be a name"),
    ({"aggregate": "median"}, ValueError, r"aggregate must be one of \('sum', 'mean', 'max'\) or a callable"),
    ({"verbose": "yes"}, TypeError, r"verbose must be 0, 1 or 2"),
    ({"bn_recalibration": 1}, TypeError, r"bn_recalibration must be True or False"),
    ({"step": -1.0}, ValueError, r"step must be a positive number.*automatic step"),
    ({"tolerance": -0.1}, ValueError, r"tolerance must be a number >= 0"),
    ({"distill": "yes"}, ValueError, r"distill='yes'.*weight"),
    ({"retrain": "weight_rewind", "pretrain_epochs": 0}, ValueError,
     r"weight_rewind' needs early-epoch weights.*pretrain_epochs"),
])
def test_bad_options_fail_in_the_config(options, exc, pattern):
    method = "aiap" if {"step", "tolerance"} & set(options) else "ilp"
    with pytest.raises(exc, match=pattern):
        RunConfig.build(small_cnn(), method, 1, 2, None, options, None)


def test_bad_targets_name_the_argument():
    with pytest.raises(ValueError, match=r"unknown target kind 'size'.*target="):
        parse_target({"size": 0.5})
    with pytest.raises(TypeError, match=r"target=.*value must be a number"):
        parse_target({"params_reduction": "half"})
    with pytest.raises(ValueError, match=r"must be in \[0, 1\).*impossible"):
        parse_target(("params_reduction", 1.0))
    assert parse_target("none") is None and parse_target(None, None) is None


# -- state -------------------------------------------------------------------------

def test_round_entries_and_state_round_trip_through_json():
    e = RoundEntry(round=1, status="accepted", val_accuracy=0.9, params=np.int64(10),
                   macs=20, widths={"c": 3}, removed=2, feasible=True, info={"rate": 0.1})
    assert e.status is RoundStatus.ACCEPTED and e.status == "accepted"
    d = e.to_dict()
    assert d["rate"] == 0.1 and d["status"] == "accepted" and type(d["params"]) is int
    assert RoundEntry.from_dict(d) == e and e["widths"] == {"c": 3}
    state = RunState(fingerprint="f", method="ilp", history=[
        RoundEntry(0, RoundStatus.BASELINE, 0.95, 100, 200, feasible=True), e],
        controller={"nan_streak": 0}, best_round=1, current_round=1)
    back = RunState.from_json(state.to_json())
    assert back == state and back.entry(1) is back.history[1] and back.last_round == 1


@pytest.mark.parametrize("text, pattern", [
    ("{not json", r"'where.json' is not valid JSON.*another one"),
    ("[]", r"lacks \['a JSON object'\].*another out_dir"),
    (json.dumps({"version": STATE_VERSION, "fingerprint": "f"}), r"lacks \['history'"),
    (json.dumps({"version": 1, "fingerprint": "f", "history": [], "controller": {},
                 "best_round": 0, "done": False, "reason": "", "current_round": 0}),
     r"layout version 1 \(this kprune writes 2\)"),
    (json.dumps({"version": STATE_VERSION, "fingerprint": "f", "history": [{"x": 1}],
                 "controller": {}, "best_round": 0, "done": False, "reason": "",
                 "current_round": 0}), r"damaged history"),
])
def test_damaged_state_gets_an_error_naming_the_file(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        RunState.from_json(text, where="where.json")


# -- callbacks ------------------------------------------------------------------------

class _Recorder(kprune.RoundCallback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_run_begin(self, logs=None):
        self.events.append(("run_begin", logs["resumed_after"]))

    def on_round_begin(self, round_index, logs=None):
        self.events.append(("begin", round_index))

    def on_round_end(self, round_index, logs=None):
        assert self.model is not None and self.model.count_params() == logs["params"]
        self.events.append(("end", round_index, logs["status"]))

    def on_run_end(self, logs=None):
        self.events.append(("run_end", logs["final_round"]))


def test_callbacks_see_every_round_in_order(tmp_path):
    (x, y), val = _data()
    rec, seen = _Recorder(), []
    kprune.prune(trained_cnn(), "ilp", train_data=(x, y), val_data=val, rounds=2,
                 target="none", callbacks=[rec], out_dir=tmp_path / "run",
                 on_round=lambda entry, model: seen.append(entry["round"]))
    assert rec.events == [("run_begin", None), ("end", 0, "baseline"), ("begin", 1),
                          ("end", 1, "accepted"), ("begin", 2), ("end", 2, "accepted"),
                          ("run_end", 2)]
    assert seen == [0, 1, 2]
    rec2 = _Recorder()  # a finished run resumes: no round, but begin and end
    kprune.prune(trained_cnn(), "ilp", train_data=(x, y), val_data=val, rounds=2,
                 target="none", callbacks=[rec2], out_dir=tmp_path / "run")
    assert rec2.events == [("run_begin", 2), ("run_end", 2)]


def test_callbacks_must_be_round_callbacks():
    (x, y), val = _data()
    with pytest.raises(TypeError, match=r"callbacks must be kprune.RoundCallback.*on_round="):
        kprune.prune(small_cnn(), "ilp", train_data=(x, y), val_data=val,
                     callbacks=[lambda e, m: None])
    with pytest.raises(TypeError, match=r"on_round must be a callable"):
        kprune.prune(small_cnn(), "ilp", train_data=(x, y), val_data=val, on_round=3)


# -- criteria ------------------------------------------------------------------------

def test_criteria_resolve_from_strings_with_stable_configs():
    assert get_criterion("l1") == L1Norm() and get_criterion(L1Norm()) == L1Norm()
    att = get_criterion("attention", p=3)
    assert att == Attention(p=3.0) and att.p == 3.0 and att != MeanActivation(p=3.0)
    assert get_criterion("mean_activation").p == 1.0 and get_criterion("attention").p == 2.0
    assert repr(att) == "Attention(aggregate='sum', p=3.0)"
    assert APoZ().needs == "activations" and Taylor().needs == "gradients"
    assert L1Norm().needs == "weights"
    fn = get_criterion(my_scores)
    assert isinstance(fn, FunctionCriterion) and fn.needs == "weights"
    assert fn.get_config()["function"].endswith("test_run_design.my_scores")
    with pytest.raises(ValueError, match=r"p must be a positive number"):
        MeanActivation(p=0)


def test_score_groups_takes_names_and_instances_alike():
    model = trained_cnn()
    by_name = score_groups(model, "l2")
    by_instance = score_groups(model, kprune.scoring.L2Norm())
    for k in by_name:
        np.testing.assert_allclose(by_name[k], by_instance[k])


class LowIndexFirst(Criterion):
    """Removes the lowest channel indices first (scores = index)."""

    name = "low_index_first"

    def score(self, model, group, stats=None, analysis=None):
        return np.arange(group.channels, dtype=float)


def test_a_criterion_subclass_decides_what_prune_removes():
    (x, y), val = _data()
    model = trained_cnn()
    res = kprune.prune(model, "ilp", train_data=(x, y), val_data=val, rounds=1, rate=0.25,
                       target="none", criterion=LowIndexFirst(), bn_recalibration=False,
                       allocation="layer", fit_fn=lambda m, d, e: None)  # no weight change
    assert res.options["criterion"] == LowIndexFirst()
    assert res.history[1]["widths"]["conv1"] == 12
    # The 4 lowest-scoring filters (indices 0-3) went; the kept ones are 4..15.
    np.testing.assert_array_equal(res.model.get_layer("conv1").kernel.numpy(),
                                  model.get_layer("conv1").kernel.numpy()[..., 4:])
