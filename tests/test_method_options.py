"""Each option belongs to its method: every method x option pair is either
taken (and read by the code) or refused with a TypeError naming the methods
that take it; and the run's parts (goal, record, proposer, meter) work on
their own, with `Run` thin and methods kept off its internals."""

import ast
import dataclasses
import os

import numpy as np
import pytest

from kprune.methods import METHODS
from kprune.methods.config import RunConfig
from kprune.methods.goal import Goal, Target, bisect, parse_target
from kprune.methods.meter import Meter
from kprune.methods.options import MethodOptions, OptionContext, RunOptions
from kprune.methods.proposer import Proposer
from kprune.methods.record import RunRecord
from kprune.methods.registry import get_method, owners_of, register_method, unregister_method
from kprune.methods.state import RoundEntry, RoundStatus
from tests.prune_support import small_cnn

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kprune")
BUILTIN = ("aiap", "complexity", "iap", "ilp")


def _all_options():
    names = set(RunOptions.names())
    for m in BUILTIN:
        names |= set(get_method(m).options.names())
    return sorted(names)


def _valid_value(option):
    """A valid value of `option` (its owner's default, or one that passes checks)."""
    special = {"rate": 0.2, "step": 0.5, "max_round_reduction": 0.5, "step_fraction": 0.2,
               "target_params": 1000, "target_macs": 10000, "target_memory_bytes": 4000,
               "mode": "params", "share_power": 1.0, "patience": 1, "max_retries": 2,
               "criterion": "l2", "max_round_fraction": 0.5, "round_to": 2,
               "max_fraction": 0.5, "complexity_aware": "params", "allocation": "layer"}
    if option in special:
        return special[option]
    for m in BUILTIN:
        rec = get_method(m).options
        if option in rec.names():
            return rec.defaults()[option]
    return RunOptions.defaults()[option]


@pytest.mark.parametrize("method", BUILTIN)
def test_every_method_x_option_pair_is_taken_or_refused(method):
    """The walk: 4 methods x every option of every record."""
    model = small_cnn()
    own = set(get_method(method).options.names()) | set(RunOptions.names())
    refused = 0
    for option in _all_options():
        value = _valid_value(option)
        if option in own:
            continue  # taken: test_every_taken_option_is_read proves it is used
        with pytest.raises(TypeError) as err:
            RunConfig.build(model, method, 1, 2, None, {option: value}, None)
        msg = str(err.value)
        owners = owners_of(option)
        assert f"[{option!r}]" in msg and f"method={method!r}" in msg, msg
        assert owners and all(repr(o) in msg for o in owners), msg
        refused += 1
    assert refused > 0


def test_the_pairs_the_review_found_are_refused():
    model = small_cnn()
    for method, option, value, owner in (("ilp", "share_power", 1.0, "'aiap'"),
                                         ("aiap", "rate", 0.2, "'iap' / 'ilp'"),
                                         ("complexity", "step", 0.1, "'aiap'"),
                                         ("complexity", "criterion", "l1", "'aiap' / 'iap' / 'ilp'"),
                                         ("iap", "mode", "params", "'complexity'")):
        with pytest.raises(TypeError, match=rf"\['{option}'\].*is an option of methods? {owner}"):
            RunConfig.build(model, method, 1, 2, None, {option: value}, None)


def _reads():
    """Attribute names read anywhere in kprune/methods (outside the records)."""
    names = set()
    for d, _, files in os.walk(os.path.join(ROOT, "methods")):
        for f in files:
            if f.endswith(".py"):
                tree = ast.parse(open(os.path.join(d, f)).read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) \
                            and not (isinstance(node.value, ast.Name)
                                     and node.value.id == "self"):
                        names.add(node.attr)
                    elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == \
                            "getattr" and len(node.args) >= 2 and \
                            isinstance(node.args[1], ast.Constant):
                        names.add(node.args[1].value)
    # the trainer reads the common options through config.options.<name>
    return names


def test_every_taken_option_is_read():
    """No record declares an option that no code reads (an accepted option
    that does nothing is what this issue removed)."""
    from kprune.methods.complexity.resources import ABSOLUTE_TARGETS

    reads = _reads() | set(ABSOLUTE_TARGETS)  # the budgets are read by name from there
    # p and aggregate are read into the criterion they configure:
    crit = RunConfig.build(small_cnn(), "ilp", 1, 1, None,
                           {"criterion": "attention", "p": 3.0, "aggregate": "max"}, None).criterion
    assert crit.p == 3.0 and crit.aggregate == "max"
    reads |= {"p", "aggregate"}
    # metric_direction is read with metric into the parsed metric it configures:
    assert RunConfig.build(small_cnn(), "ilp", 1, 1, None, {"metric": "mae",
                           "metric_direction": "max"}, None).options.metric.direction == "max"
    reads |= {"metric_direction"}
    unread = [f"{rec}.{n}" for rec, names in
              [("RunOptions", RunOptions.names())] +
              [(get_method(m).options.__name__, get_method(m).options.names()) for m in BUILTIN]
              for n in names if n not in reads]
    assert not unread, f"options declared but never read: {unread}"


def test_options_are_checked_before_any_data_work():
    """Bad values fail in RunConfig.build (no data is even given)."""
    model = small_cnn()
    for method, opts, exc, pattern in (
            ("ilp", {"rate": 2.0}, ValueError, r"rate must be in \(0, 1\)"),
            ("iap", {"patience": 2}, ValueError, r"patience=2 counts rounds.*drop patience"),
            ("aiap", {"tolerance": 0.1}, ValueError, r"tolerance=0.1 is the allowed overshoot"),
            ("aiap", {"share_power": "half"}, TypeError, r"share_power must be a number"),
            ("complexity", {"mode": "speed"}, ValueError, r"mode='speed' is not a complexity"),
            ("complexity", {"mode": 3}, TypeError, r"mode must be a string"),
            ("complexity", {"step_fraction": 0}, ValueError, r"step_fraction must be in \(0, 1\]"),
            ("complexity", {"target_params": -1}, ValueError, r"target_params must be a positive"),
            ("complexity", {"memory_dtype": "int4"}, ValueError, r"memory_dtype must be 'float32'"),
            ("complexity", {"mode": "latency"}, ValueError, r"mode='latency' needs target_latency_ms"),
            ("ilp", {"latency_fn": lambda b: 0.001}, ValueError, r"latency_fn= prices a latency budget"),
            ("ilp", {"p": 2.0}, ValueError, r"p=2.0 is the power of the activation criteria"),
            ("ilp", {"rewind_weights": [np.zeros(1)]}, ValueError, r"rewind_weights= is read by"),
            ("ilp", {"verbose": 5}, TypeError, r"verbose must be 0, 1 or 2")):
        target = {"params_reduction": 0.5} if "patience" in opts else None
        with pytest.raises(exc, match=pattern):
            RunConfig.build(model, method, 1, 2, target, opts, None)


def test_a_third_party_method_declares_a_checked_record():
    @dataclasses.dataclass(frozen=True)
    class TempOptions(MethodOptions):
        temperature: float = 1.0

        def validate(self, ctx):
            if not self.temperature > 0:
                raise ValueError(f"temperature must be > 0, got {self.temperature}")
            return self

    register_method("_temp", lambda run: run.finish("nothing"), options=TempOptions)
    try:
        cfg = RunConfig.build(small_cnn(), "_temp", 1, 1, None, {"temperature": 2.0}, None)
        assert cfg.method_options.temperature == 2.0 and cfg.criterion is None
        with pytest.raises(ValueError, match="temperature must be > 0"):
            RunConfig.build(small_cnn(), "_temp", 1, 1, None, {"temperature": -1.0}, None)
        with pytest.raises(TypeError, match=r"'temperature' is an option of method '_temp'"):
            RunConfig.build(small_cnn(), "ilp", 1, 1, None, {"temperature": 2.0}, None)
        with pytest.raises(ValueError, match=r"\['seed'\] of method '_x' are common options"):
            register_method("_x", lambda run: None, options={"seed": 1})
        with pytest.raises(TypeError, match="must be a MethodOptions dataclass"):
            register_method("_y", lambda run: None, options=3)
    finally:
        unregister_method("_temp")
    assert "_temp" not in METHODS


# -- the run's parts, each on its own ---------------------------------------------

def _entry(r, acc, params, macs=100, **kw):
    return RoundEntry(r, RoundStatus.ACCEPTED if r else RoundStatus.BASELINE, acc,
                      params=params, macs=macs, **kw)


def test_goal_judges_targets_against_the_baseline():
    goal = Goal(parse_target(0.02))
    goal.baseline = _entry(0, 0.90, 1000)
    assert goal.meets(_entry(1, 0.885, 500)) and not goal.meets(_entry(1, 0.87, 500))
    size = Goal(Target("params_reduction", 0.5))
    size.baseline = _entry(0, 0.9, 1000)
    assert size.is_size and size.meets(_entry(1, 0.1, 500)) and not size.meets(_entry(1, 0.9, 501))
    assert size.reduction(_entry(1, 0.9, 250)) == 0.75
    best = _entry(3, 0.9, 800)
    with pytest.warns(RuntimeWarning, match=r"params_reduction=0.5 not reached \(best: 0.2 at round 3\)"):
        msg = size.reason("ran out", best)
    assert msg.startswith("ran out; target") and not size.reached(best)
    assert size.reason("done", _entry(2, 0.9, 400)) == "done"
    assert Goal(None).meets(_entry(1, 0.0, 1)) and Goal(None).reached(None)


def test_one_bisection_finds_both_sides_of_a_boundary():
    class Cand:
        def __init__(self, v):
            self.model, self.v = (object() if v > 0.05 else None), v

    below, above = bisect(Cand, 0.0, 1.0, lambda c: c.v >= 0.37, steps=30)
    assert above[0] == pytest.approx(0.37, abs=1e-6) and below[0] == pytest.approx(0.37, abs=1e-6)
    # candidates without a model (0.03125 here) count as below but are not returned
    below, above = bisect(Cand, 0.0, 1.0, lambda c: True, steps=5)
    assert below is None and above[0] == pytest.approx(1 / 16)


def test_record_keeps_models_commits_and_controller_state(tmp_path):
    @dataclasses.dataclass
    class S:
        n: int = 0

    for out_dir in (None, tmp_path / "run"):
        model = small_cnn()
        record = RunRecord(model, out_dir, fingerprint="f", method="ilp")
        assert record.resume() is None and record.next_round == 0
        record.add(_entry(0, 0.9, model.count_params(), feasible=True), model, accept=True,
                   best=True)
        st = record.method_state(S)
        st.n = 3
        record.store(st)
        record.add(_entry(1, 0.5, 10), None, accept=False)
        assert record.next_round == 2 and record.best_round == 0 and record.current is model
        assert record.method_state(S).n == 3 and record.best.round == 0
        if out_dir is not None:
            again = RunRecord(model, out_dir, fingerprint="f", method="ilp")
            assert again.resume() == 1 and again.method_state(S).n == 3
            assert again.current.count_params() == model.count_params()
            with pytest.raises(ValueError, match="holds another run"):
                RunRecord(model, out_dir, fingerprint="g").resume()


def test_proposer_turns_scores_into_a_limited_removal_plan():
    model = small_cnn()
    cfg = RunConfig.build(model, "ilp", 1, 2, None, {"min_channels": 4, "round_to": 2}, None)
    record = RunRecord(model)
    proposer = Proposer(cfg.method_options, cfg.options, None, record)
    analysis = proposer.analyze(model)
    scores = proposer.scores(model, analysis)  # L1: no data needed
    p = proposer.propose(model, lambda g, s: np.ones_like(s, bool), 1, analysis, scores)
    widths = {g.name: g.channels for g in analysis.groups}
    for name, n in p.removed.items():
        left = widths[name] - n
        assert left >= 4 and left % 2 == 0
    assert p.model.count_params() < model.count_params()
    none = proposer.propose(model, lambda g, s: np.zeros_like(s, bool), 1, analysis, scores)
    assert none.model is None and none.total_removed == 0


def test_meter_measures_size_and_refuses_an_unreachable_budget():
    model = small_cnn()
    e = Meter(None).entry(0, RoundStatus.BASELINE, model)
    assert e.params == model.count_params() and e.macs > 0 and "arena_bytes" not in e.info
    meter = Meter(Target("arena_bytes", 64))
    assert meter.entry(0, RoundStatus.BASELINE, model).info["arena_bytes"] > 64
    with pytest.raises(ValueError, match=r"target_arena_bytes=64 cannot be reached.*ask for"):
        meter.check_reachable(model, 1, ())


def test_run_is_thin_and_methods_keep_off_its_internals():
    with open(os.path.join(ROOT, "methods", "run.py")) as f:
        assert len(f.read().splitlines()) < 200
    offenders = []
    for d, _, files in os.walk(os.path.join(ROOT, "methods")):
        for f in files:
            if not f.endswith(".py") or f in ("run.py", "record.py"):
                continue
            tree = ast.parse(open(os.path.join(d, f)).read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "state" and \
                        isinstance(node.value, ast.Name) and node.value.id == "run":
                    offenders.append(f)
    assert not offenders, f"run.state used in {offenders}"
