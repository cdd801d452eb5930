"""One pruning run: the loop every method drives (`Run`).

`kprune.prune` builds a `Run` from a checked `RunConfig` and its `RunData`,
then calls the method's function with it. The run is made of parts a
method talks to:

* ``run.goal`` (`kprune.methods.goal.Goal`): the target: meets, reduction,
  ``land`` (trim a size-target round), ``reason`` (reached / not reached);
* ``run.record`` (`kprune.methods.record.RunRecord`): history, the current
  model, ``next_round``, the method's controller state (``method_state`` /
  ``store``), checkpointed with ``out_dir``;
* ``run.proposer`` (`kprune.methods.proposer.Proposer`, scoring methods):
  scores -> removal plan (``propose``);
* ``run.meter`` (`kprune.methods.meter.Meter`): size and device-budget
  measurement of every round.

A round is ``run.try_round(proposal, r)`` (retrain, evaluate, measure: a
`RoundEntry`), then ``run.commit(entry, proposal)``; ``run.finish(reason)``
ends the run (optional fine-tuning, budget verification).
"""

import math
import time
import warnings
from typing import Dict, Optional

from kprune.methods.baseline import run_baseline
from kprune.methods.callbacks import CallbackList
from kprune.methods.config import RunConfig, RunData
from kprune.methods.cost_epochs import cost_key, epochs_for_round
from kprune.methods.finetune import finetune
from kprune.methods.fingerprint import run_fingerprint
from kprune.methods.goal import Goal, Quality
from kprune.methods.meter import Meter
from kprune.methods.metric import TopOne
from kprune.methods.options import PruningOptions
from kprune.methods.phases import Phases
from kprune.methods.proposer import Proposal, Proposer
from kprune.methods.record import RunRecord
from kprune.methods.state import RoundEntry, RoundStatus
from kprune.methods.trainer import FitOutcome, Trainer


class Run:
    """See the module docstring."""

    def __init__(self, model, config: RunConfig, data: RunData, out_dir=None, strategy=None,
                 callbacks: Optional[CallbackList] = None):
        self.config, self.data = config, data
        self.trainer = Trainer(config, data)
        self.callbacks = callbacks or CallbackList()
        # Only a run with out_dir needs its identity (it hashes weights and data).
        fingerprint = run_fingerprint(
            model, config.method, config.stable_options(), config.epochs, config.rounds,
            config.target, data=(data.train, data.val)) if out_dir else None
        self.record = RunRecord(model, out_dir, fingerprint, config.method)
        opts = config.options
        self.meter = Meter(config.target, opts.latency_fn, opts.latency_quantization)
        self.metric = data.metric or TopOne()
        self.goal = Goal(config.target, self.meter.budget, Quality.of(self.metric))
        self.phases = Phases()
        self.trainer.phases = self.phases
        self.proposer = None
        if isinstance(config.method_options, PruningOptions):
            self.proposer = Proposer(config.method_options, opts, data.calibration,
                                     self.record, strategy, self.trainer.ensure_loss)
            self.proposer.phases = self.phases
        self._ended = False

    @property
    def opts(self):
        """The run's common `RunOptions`."""
        return self.config.options

    @property
    def method_options(self):
        """The method's own options record."""
        return self.config.method_options

    epochs = property(lambda self: self.config.epochs, doc="retraining epochs per round")
    rounds = property(lambda self: self.config.rounds, doc="the maximum number of rounds")

    def start(self) -> bool:
        """Resume from out_dir or evaluate (and pretrain) the baseline. Returns
        True when a finished run was found (nothing left to do)."""
        resumed = self.record.resume()
        if resumed is not None:
            self.goal.baseline = self.record.baseline
            if self.opts.verbose:
                print(f"kprune: resuming '{self.record.out_dir}' after round {resumed}")
        self.callbacks.on_run_begin({"method": self.config.method, "resumed_after": resumed})
        if resumed is None:
            self._baseline()
            if self.goal.is_size and self.goal.meets(self.record.baseline):
                self.finish(f"the model already meets the target {self.goal.target.to_dict()}")
        if self.config.distill:
            self.trainer.teacher = self.record.model_of_round(0)
        return self.record.done

    def _baseline(self):
        """Evaluate (and pretrain) the baseline: round 0 (`baseline.run_baseline`)."""
        self.commit(*run_baseline(self))

    def train(self, model, epochs: int) -> FitOutcome:
        """Train `model` in place (a method that trains from scratch)."""
        return self.trainer.fit(model, epochs)

    def evaluate(self, model) -> float:
        """The run's metric (``metric=``; default top-1 accuracy) on the
        validation data (NaN for non-finite outputs)."""
        return self.metric.evaluate(model, self.data.val)[0]

    def try_round(self, proposal: Proposal, round_index: int, info=None) -> RoundEntry:
        """Retrain (LR or weight rewinding) + evaluate + measure a proposal;
        returns its `RoundEntry`: NAN_DISCARDED when the loss, weights or
        accuracy are not finite, else ACCEPTED with ``feasible`` telling
        whether the target holds (the method may change the status)."""
        t0, model = time.time(), proposal.model
        self.callbacks.on_round_begin(round_index, {"removed": proposal.total_removed})
        if proposal.rewind_model is not None:
            model.set_weights(proposal.rewind_model.get_weights())
        groups = self.proposer.record_groups(model) if self.proposer else None
        mo = self.method_options
        epochs, extra = epochs_for_round(
            self.epochs, getattr(mo, "epochs_per_cost", None),
            cost_key(getattr(mo, "cost", None), self.config.target), self.record.current, model)
        out = self.trainer.retrain(model, epochs, round_index, record_groups=groups)
        proposal.stats = out.stats
        with self.phases("measurement"):
            entry = self.meter.entry(round_index, RoundStatus.ACCEPTED, model,
                                     removed=proposal.total_removed,
                                     removed_by_group=dict(proposal.removed),
                                     info={**(info or {}), **extra})
        with self.phases("evaluation"):
            self.judge(entry, float("nan") if out.nan else self.evaluate(model))
        entry.time_s = time.time() - t0
        return entry

    def judge(self, entry: RoundEntry, accuracy: float):
        """The one NaN rule: a non-finite metric value (`accuracy`: the run's
        metric) discards the round (status NAN_DISCARDED, with a warning);
        else the value (``val_accuracy`` or ``val_<metric>``) and ``feasible``."""
        if not math.isfinite(accuracy):
            warnings.warn(f"kprune: round {entry.round} produced a NaN loss or NaN "
                          "weights; the round is discarded and the previous model kept",
                          RuntimeWarning, stacklevel=3)
            entry.status, entry.feasible = RoundStatus.NAN_DISCARDED, False
            self.goal.quality.set(entry, None)
        else:
            self.goal.quality.set(entry, accuracy)
            entry.feasible = self.goal.meets(entry)
        return entry

    def commit(self, entry: RoundEntry, proposal: Optional[Proposal], accept=None, best=None):
        """Record a round. `accept` (default: status ACCEPTED/BASELINE/FINETUNED)
        makes the proposal the current model; `best` (default: accepted and
        feasible) marks it as the model to return."""
        if accept is None:
            accept = entry.status.keeps_model
        if best is None:
            best = accept and entry.feasible
        p = proposal or Proposal(None, {}, {})
        entry.info["phase_s"] = self.phases.take()  # since the previous entry
        with self.phases("checkpoint"):
            self.record.add(entry, p.model, p.rewind_model, p.stats, accept=accept, best=best)
        self.callbacks.set_model(p.model if p.model is not None
                                 else (self.record.current if accept else None))
        self.callbacks.on_round_end(entry.round, entry.to_dict())

    def finish(self, reason: str = "", report_target: Optional[Dict] = None):
        """Fine-tune (``finetune_epochs``), verify a device budget on the real
        runtime, mark the run done with `reason` and save. `report_target`
        replaces the target `PruneResult` shows (methods whose budgets are not
        a `Target`)."""
        if not self.record.done:
            finetune(self)
            if self.goal.target is not None and self.goal.target.is_budget:
                self.meter.verify(self.record.best,
                                  self.record.model_of_round(self.record.best_round))
            self.record.mark_done(reason, report_target)
        if not self._ended:
            self._ended = True
            self.callbacks.on_run_end({"final_round": self.record.best_round,
                                       "reason": self.record.reason})
        return self

    def final_model(self):
        """The model to return (compiled like the user's model)."""
        return self.trainer.recompile(self.record.model_of_round(self.record.best_round))

    def report_target(self):
        if self.record.report_target is not None:
            return self.record.report_target
        return None if self.config.target is None else self.config.target.to_dict()

    def target_reached(self) -> bool:
        return self.goal.reached(self.record.best)
