"""One pruning run: the loop every method drives (`Run`).

`kprune.prune` builds a `Run` from a checked `RunConfig`, its `RunData`, a
`Trainer`, a `Checkpointer` (with ``out_dir``) and round callbacks, then
calls the method's function with it. A method's round is:

* ``run.scores(model, analysis)``: importance per group unit (the criterion);
* ``run.propose(model, select, r)``: prune a copy of `model` with a per-group
  selection rule, returning a `Proposal` (the new model, removed counts);
* ``run.try_round(proposal, r)``: retrain + evaluate + measure, a `RoundEntry`;
* ``run.commit(entry, proposal)``: record the round (accepted rounds become
  the current model; with ``out_dir`` the round is checkpointed atomically;
  callbacks get ``on_round_end``);
* ``run.finish(reason)``: optional fine-tuning, then the run is done.

A method keeps its own controller state as a small dataclass
(``run.method_state(MyState)`` / ``run.store(state)``), saved with every
round and restored on resume.
"""

import dataclasses
import math
import time
import warnings
from typing import Callable, Dict, Optional

import keras
import numpy as np

from kprune.core.dependency import analyze
from kprune.core.profile import model_size
from kprune.core.surgery import remove_channels
from kprune.data import accuracy_and_count
from kprune.methods import selection
from kprune.methods.callbacks import CallbackList
from kprune.methods.checkpoint import Checkpointer
from kprune.methods.config import RunConfig, RunData
from kprune.methods.fingerprint import run_fingerprint
from kprune.methods.state import RoundEntry, RoundStatus, RunState, model_file, rewind_file
from kprune.methods.trainer import FitOutcome, Trainer

#: z of a one-sided 95% bound: an accuracy target narrower than NOISE_Z
#: standard errors of the validation accuracy cannot be judged reliably.
NOISE_Z = 1.645


def validation_standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of a top-1 accuracy measured on `n` samples.

    Example:
        >>> round(validation_standard_error(0.97, 600), 4)
        0.007
    """
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / max(n, 1))


def samples_to_resolve(accuracy: float, loss: float) -> int:
    """Validation samples needed for NOISE_Z standard errors of an accuracy
    near `accuracy` to fit within an allowed `loss`.

    Example:
        >>> samples_to_resolve(0.97, 0.01)
        788
    """
    return int(math.ceil(accuracy * (1.0 - accuracy) * (NOISE_Z / max(loss, 1e-12)) ** 2))


#: params, MACs (batch 1) and widths of a model (`kprune.core.profile.model_size`).
measure = model_size


@dataclasses.dataclass
class Proposal:
    """A pruned candidate: the new model and what was removed."""

    model: object
    removed: Dict[str, int]  # group name -> units removed
    removal: Dict[str, list]  # remove_channels argument
    rewind_model: object = None
    stats: object = None      # activation statistics recorded while retraining

    @property
    def total_removed(self):
        return int(sum(self.removed.values()))


class Run:
    """See the module docstring."""

    def __init__(self, model, config: RunConfig, data: RunData, out_dir=None, strategy=None,
                 callbacks: Optional[CallbackList] = None):
        self.config = config
        self.data = data
        self.strategy = strategy
        self.trainer = Trainer(config, data)
        self.callbacks = callbacks or CallbackList()
        self.original = model
        self.ckpt = Checkpointer(out_dir, model) if out_dir else None
        self.out_dir = self.ckpt.out_dir if self.ckpt else None
        # Only a run with out_dir needs its identity (it hashes weights and data).
        fingerprint = run_fingerprint(
            model, config.method, config.stable_options(), config.epochs, config.rounds,
            config.target, data=(data.train, data.val)) if self.ckpt else None
        self.state = RunState(fingerprint=fingerprint, method=config.method)
        self.current = None
        self.current_rewind = None
        self.current_stats = None
        self._models = {}  # round -> model (in memory when no out_dir)
        self._budget = None
        self._ended = False

    # -- shortcuts -------------------------------------------------------------------
    @property
    def opts(self):
        """The run's `RunOptions`."""
        return self.config.options

    @property
    def method_options(self) -> Dict:
        """The method's own options (name -> value)."""
        return self.config.method_options

    @property
    def target(self):
        return self.config.target

    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def rounds(self) -> int:
        return self.config.rounds

    @property
    def history(self):
        return self.state.history

    @property
    def best_round(self) -> int:
        return self.state.best_round

    @property
    def budget(self):
        """The `kprune.methods.device_budget.DeviceBudget` of a device-budget
        target (or of ``complexity_aware='latency'``), else None."""
        if self._budget is None and self.target is not None and self.target.is_budget:
            from kprune.methods.device_budget import DeviceBudget

            latency = self.target.kind == "latency_ms"
            self._budget = DeviceBudget(
                self.target.kind, self.target.value,
                latency_fn=self.opts.latency_fn if latency else None,
                quantization=self.opts.latency_quantization if latency else "int8")
        return self._budget

    def _entry(self, round_index, status, model, **fields) -> RoundEntry:
        """A `RoundEntry` of `model` (with a device budget: its estimate in ``info``)."""
        info = dict(fields.pop("info", None) or {})
        if self.budget is not None:
            info[self.budget.kind] = float(self.budget.estimate(model))
        return RoundEntry(round=round_index, status=status, info=info, **measure(model),
                          **fields)

    def method_state(self, cls):
        """The method's controller state as dataclass `cls`."""
        return self.state.method_state(cls)

    def store(self, method_state, save=False):
        """Keep `method_state` (saved with the next commit, or now with `save`)."""
        self.state.store_method_state(method_state)
        if save and self.ckpt is not None:
            self.ckpt.save_state(self.state)

    # -- setup / resume --------------------------------------------------------
    def start(self) -> bool:
        """Resume from out_dir or evaluate (and pretrain) the baseline. Returns
        True when a finished run was found (nothing left to do)."""
        resumed = None
        if self.ckpt is not None:
            self.ckpt.cleanup_temporaries()
            state = self.ckpt.load_state()
            if state is not None:
                self._resume(state)
                resumed = self.state.last_round
        self.callbacks.on_run_begin({"method": self.config.method, "resumed_after": resumed})
        if resumed is None:
            self._baseline()
            if self.target is not None and not self.target.is_accuracy and \
                    self.meets_target(self.history[0]):
                self.finish(f"the model already meets the target {self.target.to_dict()}")
        if self.config.distill:
            self.trainer.teacher = self.model_of_round(0)
        return self.state.done

    def _resume(self, state: RunState):
        if state.fingerprint != self.state.fingerprint:
            raise ValueError(
                f"out_dir '{self.out_dir}' holds another run (method {state.method!r}): its "
                "model weights, data or settings differ from this call's; use a new out_dir, "
                "or the same model, data and arguments to resume")
        self.state = state
        self.current = self.ckpt.load_model(model_file(state.current_round))
        if state.has_rewind:
            self.current_rewind = self.ckpt.load_model(rewind_file(state.current_round))
        if self.opts.verbose:
            print(f"kprune: resuming '{self.out_dir}' after round {state.last_round}")

    def _check_budget_reachable(self, model):
        """A device budget below what the smallest prunable model needs fails
        before any training, naming that smallest value."""
        from kprune.methods.device_budget import reachable_floor

        budget = self.budget
        floor = reachable_floor(budget, model, self.opts.min_channels, self.opts.ignored_layers)
        full = budget.estimate(model)
        if floor < full and not budget.met(floor):
            unit = "bytes" if budget.kind == "arena_bytes" else "ms"
            raise ValueError(
                f"target_{budget.kind}={self.target.value:.6g} cannot be reached: the smallest "
                f"reachable model (every prunable group at min_channels="
                f"{self.opts.min_channels}) needs {floor:.6g} {unit} (the model: {full:.6g}); "
                f"ask for at least {floor:.6g}, or lower min_channels / ignored_layers")

    def _baseline(self):
        t0 = time.time()
        model = self.original
        if self.budget is not None:
            self._check_budget_reachable(model)
        self.trainer.seed(0)
        rewind_weights = self.opts.rewind_weights
        if self.opts.pretrain_epochs:
            k = int(self.opts.rewind_epoch)
            cbs, holder = [], {}
            if self.opts.retrain == "weight_rewind" and rewind_weights is None:
                class _Grab(keras.callbacks.Callback):
                    def on_epoch_end(cb, epoch, logs=None):  # noqa: N805
                        if epoch + 1 == k:
                            holder["w"] = [np.array(w) for w in model.get_weights()]

                cbs.append(_Grab())
            out = self.trainer.fit(model, int(self.opts.pretrain_epochs),
                                   record_groups=self._record_groups(model), callbacks=cbs)
            if out.nan:
                raise FloatingPointError("the baseline training (pretrain_epochs) produced a "
                                         "NaN loss; lower the learning rate")
            self.current_stats = out.stats
            if cbs:
                rewind_weights = holder["w"]
        if self.opts.retrain == "weight_rewind":
            rw = keras.models.clone_model(model)
            rw.set_weights(rewind_weights.get_weights() if isinstance(rewind_weights, keras.Model)
                           else rewind_weights)
            self.current_rewind = rw
        self.current = model
        acc, n_val = accuracy_and_count(model, self.data.val)
        if not math.isfinite(acc):
            raise FloatingPointError("the baseline model outputs NaN/inf on val_data; check "
                                     "the model's weights and the validation inputs")
        info = {"val_samples": n_val,
                "val_standard_error": validation_standard_error(acc, n_val)}
        self._warn_noisy_validation(acc, n_val)
        entry = self._entry(0, RoundStatus.BASELINE, model, val_accuracy=acc, feasible=True,
                            info=info)
        entry.time_s = time.time() - t0
        self.commit(entry, None)

    def _warn_noisy_validation(self, acc, n_val):
        """An accuracy target finer than the validation set can measure: warn
        (every round's accept / reject would then be decided by chance)."""
        if self.target is None or not self.target.is_accuracy:
            return
        se = validation_standard_error(acc, n_val)
        loss = float(self.target.value)
        if NOISE_Z * se <= loss:
            return
        need = samples_to_resolve(acc, loss)
        warnings.warn(
            f"kprune: val_data has {n_val} samples, so a validation accuracy near "
            f"{100 * acc:.1f}% is measured with a standard error of {100 * se:.2f} points, "
            f"and one-sided 95% noise ({NOISE_Z} x that, {100 * NOISE_Z * se:.2f} points) "
            f"exceeds the allowed accuracy loss of {100 * loss:.2f} points (target): rounds "
            f"will be accepted or rejected partly by chance, and the returned model may "
            f"lose more than the target on new data. Pass a val_data of at least {need} "
            f"samples (or a larger validation_split), or a looser target.",
            RuntimeWarning, stacklevel=2)

    def _record_groups(self, model):
        if self.opts.recording != "fit" or self.config.criterion.needs != "activations":
            return None
        return self.analyze(model).groups

    # -- scoring and selection ---------------------------------------------------
    def analyze(self, model):
        return analyze(model, self.opts.ignored_layers)

    def scores(self, model, analysis) -> Dict[int, np.ndarray]:
        """{group index: per-unit importance} under the run's criterion."""
        from kprune.scoring.criteria import group_scores

        crit = self.config.criterion
        stats = None
        if crit.needs == "gradients":
            self.trainer.ensure_loss(model)
            stats = crit.score_all(model, self.data.calibration, analysis=analysis,
                                   strategy=self.strategy)
        elif crit.needs == "activations":
            stats = self.current_stats if model is self.current else None
            if stats is None or self.opts.recording == "calibration":
                from kprune.scoring.distribute import record_activations

                stats = record_activations(model, self.data.calibration, self.strategy,
                                           groups=analysis.groups)
        return {g.index: group_scores(model, g, crit, stats, analysis=analysis)
                for g in analysis.groups}

    def original_width(self, group) -> int:
        widths = self.history[0].widths if self.history else {}
        vals = [widths[p] for p in group.producers if p in widths]
        return max(vals) if vals else group.channels

    def max_fraction_of(self, group) -> Optional[float]:
        mf = self.opts.max_fraction
        if mf is None or isinstance(mf, (int, float)):
            return mf
        vals = [mf[name] for name in group.layers if name in mf]
        return min(vals) if vals else None

    def complexity_weights(self, model, analysis) -> Optional[Dict[int, float]]:
        """With ``complexity_aware``: {group index: weight}, mean 1, from
        `kprune.core.complexity_weights` (None otherwise)."""
        mode = self.opts.complexity_aware
        if mode is None:
            return None
        budget = self.budget
        if budget is not None and (mode, budget.kind) in (("memory", "arena_bytes"),
                                                          ("latency", "latency_ms")):
            # Weights priced on the device: each group's marginal arena bytes /
            # milliseconds per channel (mean 1).
            return budget.group_weights(model, analysis)
        from kprune.core.complexity_weights import complexity_weights

        w = complexity_weights(model, mode, analysis=analysis)
        if not w:
            return None
        # Normalized to mean 1: a group with an average share of the
        # complexity is pruned at the plain rate, heavier ones faster.
        mean = float(np.mean(list(w.values()))) or 1.0
        return {k: float(v) / mean for k, v in w.items()}

    def propose(self, model, select: Callable, round_index: int, analysis=None,
                scores=None) -> Proposal:
        """Prune `model` with `select(group, scores) -> candidate mask`.

        Applies min_channels / max_fraction / round_to, removes the channels
        physically and returns a `Proposal` (its model is None when nothing is
        removed).
        """
        analysis = analysis or self.analyze(model)
        scores = self.scores(model, analysis) if scores is None else scores
        rng = np.random.default_rng((self.opts.seed or 0) * 1000 + round_index)
        removal, removed = {}, {}
        for g in analysis.groups:
            s = scores[g.index]
            cand = selection.cap_candidates(s, np.asarray(select(g, s), bool),
                                            self.opts.max_round_fraction)
            units = selection.limit_removal(
                s, cand, self.original_width(g), self.opts.min_channels,
                self.max_fraction_of(g), self.opts.round_to, rng)
            if units.size:
                removed[g.name] = int(units.size)
                for layer, idx in g.to_layer_indices(units).items():
                    removal.setdefault(layer, []).extend(idx)
        if not removal:
            return Proposal(None, {}, {})
        new = remove_channels(model, removal, analysis=analysis)
        rewind = None
        if self.current_rewind is not None and model is self.current:
            rewind = remove_channels(self.current_rewind, removal)
        return Proposal(new, removed, removal, rewind)

    # -- training ------------------------------------------------------------------
    def retrain(self, proposal: Proposal, round_index: int) -> FitOutcome:
        """Retrain the proposal's model in place (LR or weight rewinding)."""
        model = proposal.model
        if proposal.rewind_model is not None:
            model.set_weights(proposal.rewind_model.get_weights())
        out = self.trainer.retrain(model, self.epochs, round_index,
                                   record_groups=self._record_groups(model))
        proposal.stats = out.stats
        return out

    def evaluate(self, model) -> float:
        """Top-1 accuracy on the validation data."""
        return self.trainer.evaluate(model)

    def try_round(self, proposal: Proposal, round_index: int, info=None) -> RoundEntry:
        """Retrain + evaluate + measure a proposal; returns its `RoundEntry`
        (status NAN_DISCARDED when the loss or weights became NaN, else
        ACCEPTED with ``feasible`` telling whether the target holds; the
        method may change the status before committing)."""
        t0 = time.time()
        self.callbacks.on_round_begin(round_index, {"removed": proposal.total_removed})
        out = self.retrain(proposal, round_index)
        acc = float("nan") if out.nan else self.evaluate(proposal.model)
        entry = self._entry(round_index, RoundStatus.ACCEPTED, proposal.model,
                            removed=proposal.total_removed,
                            removed_by_group=dict(proposal.removed), info=info)
        if out.nan or not math.isfinite(acc):
            warnings.warn(f"kprune: round {round_index} produced a NaN loss or NaN "
                          "weights; the round is discarded and the previous model kept",
                          RuntimeWarning, stacklevel=2)
            entry.status, entry.val_accuracy, entry.feasible = \
                RoundStatus.NAN_DISCARDED, None, False
        else:
            entry.val_accuracy = acc
            entry.feasible = self.meets_target(entry)
        entry.time_s = time.time() - t0
        return entry

    def finetune(self):
        """``finetune_epochs``: train the model to return once more and record
        it as a round of status FINETUNED (its epochs count in the budget)."""
        n = int(self.opts.finetune_epochs)
        if n <= 0 or self.best_round == 0 or any(
                e.status is RoundStatus.FINETUNED for e in self.history):
            return
        t0 = time.time()
        r = self.state.last_round + 1
        self.trainer.seed(r)
        src = self.model_of_round(self.best_round)
        model = keras.models.clone_model(src)
        model.set_weights(src.get_weights())
        self.trainer.recompile(model)
        out = self.trainer.fit(model, n)
        if out.nan:
            warnings.warn("kprune: the final fine-tuning produced NaN; returning the "
                          "model before it", RuntimeWarning, stacklevel=2)
            return
        if self.opts.bn_recalibration:
            from kprune.methods.trainer import recalibrate_batchnorm

            recalibrate_batchnorm(model, self.data.calibration)
        entry = self._entry(r, RoundStatus.FINETUNED, model, val_accuracy=self.evaluate(model),
                            info={"from_round": self.best_round, "epochs": n})
        entry.feasible = self.meets_target(entry)
        entry.time_s = time.time() - t0
        keep = entry.feasible or not self.target or not self.target.is_accuracy
        self.commit(entry, Proposal(model, {}, {}), accept=True, best=keep)

    # -- targets -------------------------------------------------------------------
    def reduction(self, entry: RoundEntry, kind: str) -> float:
        """1 - params (MACs) of `entry` / those of the baseline."""
        base = self.history[0]
        if kind == "params_reduction":
            return 1.0 - entry.params / max(base.params, 1)
        return 1.0 - entry.macs / max(base.macs, 1)

    def meets_target(self, entry: RoundEntry) -> bool:
        """Accuracy targets: accuracy within the allowed loss. Reduction
        targets: the reduction is reached. Device budgets: the estimate is
        within the budget."""
        if self.target is None:
            return True
        kind, value = self.target
        if kind == "accuracy_loss":
            return entry.val_accuracy >= self.history[0].val_accuracy - value - 1e-12
        if self.target.is_budget:
            return self.budget.met(entry.info[kind])
        return self.reduction(entry, kind) >= value - 1e-12

    def size_progress(self, model, tolerance=0.0):
        """For size targets (reduction or device budget): (reaches, overshoots)
        of a candidate `model`: whether it meets the target, and whether it
        goes beyond it by more than `tolerance` (reductions) or below the
        budget's ``low`` end (device budgets: 0.9 x the budget)."""
        kind, value = self.target
        if self.target.is_budget:
            v = float(self.budget.estimate(model))
            return self.budget.met(v), v < self.budget.low
        m = measure(model)
        base = self.history[0]
        red = 1.0 - (m["params"] / max(base.params, 1) if kind == "params_reduction"
                     else m["macs"] / max(base.macs, 1))
        return red >= value - 1e-12, red > value + tolerance + 1e-12

    def land(self, make_proposal: Callable, low: float, high: float, proposal: Proposal,
             tolerance: float = 0.0, steps: int = 12):
        """Trim a size-target round that overshoots: bisect the knob
        (AIAP's threshold, ILP/IAP's rate) in (low, high] for the smallest
        value whose proposal (``make_proposal(value)``) still reaches the
        target, i.e. the least overshoot one knob value can give. A
        proposal that does not overshoot (`size_progress`) is kept as is.
        Returns (value, proposal)."""
        reaches, overshoots = self.size_progress(proposal.model, tolerance)
        if not (reaches and overshoots):
            return high, proposal
        lo, hi, best = low, high, (high, proposal)
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            prop = make_proposal(mid)
            if prop.model is not None and self.size_progress(prop.model, tolerance)[0]:
                hi, best = mid, (mid, prop)
            else:
                lo = mid
        return best

    # -- commit / finish -------------------------------------------------------------
    def commit(self, entry: RoundEntry, proposal: Optional[Proposal], accept=None, best=None):
        """Record a round. `accept` (default: status ACCEPTED/BASELINE) makes
        the proposal the current model; `best` (default: accepted and
        feasible) marks it as the model to return."""
        if accept is None:
            accept = entry.status in (RoundStatus.ACCEPTED, RoundStatus.BASELINE)
        r = entry.round
        if accept and proposal is not None:
            self.current = proposal.model
            self.current_rewind = proposal.rewind_model
            self.current_stats = proposal.stats
        self.history.append(entry)
        if best is None:
            best = accept and entry.feasible
        if best:
            self.state.best_round = r
        if accept:
            self.state.current_round = r
            self.state.has_rewind = self.current_rewind is not None
        if self.ckpt is None:
            if accept:
                self._models[r] = self.current
        else:
            if accept:
                self.ckpt.save_model(self.current, model_file(r))
                if self.current_rewind is not None:
                    self.ckpt.save_model(self.current_rewind, rewind_file(r))
            self.ckpt.save_state(self.state)
        self.callbacks.set_model(proposal.model if proposal is not None
                                 else (self.current if accept else None))
        self.callbacks.on_round_end(r, entry.to_dict())

    def set_current_round(self, r):
        """Roll the current model back to accepted round `r` (AIAP)."""
        if self.ckpt is None:
            self.current = self._models[r]
        else:
            self.current = self.ckpt.load_model(model_file(r))
            if self.current_rewind is not None:
                self.current_rewind = self.ckpt.load_model(rewind_file(r))
        self.current_stats = None
        self.state.current_round = r

    def model_of_round(self, r):
        if r == 0 and self.ckpt is None:
            return self._models.get(0, self.original)
        if self.ckpt is None:
            return self._models[r]
        return self.ckpt.load_model(model_file(r))

    def finish(self, reason: str = "", report_target=None):
        """Fine-tune (``finetune_epochs``), verify a device budget on the real
        runtime, mark the run done with `reason` and save. `report_target`
        replaces the target `PruneResult` shows (methods whose budgets are not
        a `Target`)."""
        if not self.state.done:
            self.finetune()
            self._verify_budget()
            self.state.done = True
            self.state.reason = reason
            if report_target is not None:
                self.state.controller["report_target"] = report_target
            if self.ckpt is not None:
                self.ckpt.save_state(self.state)
        if not self._ended:
            self._ended = True
            self.callbacks.on_run_end({"final_round": self.best_round,
                                       "reason": self.state.reason})
        return self

    def _verify_budget(self):
        """Device budgets: measure the model to return on the real runtime
        (TFLite-Micro arena / timed latency) and record it in its entry as
        ``<kind>_measured``; a miss is a warning and ``target_reached`` False."""
        if self.budget is None or self.target is None or not self.target.is_budget:
            return
        entry = self.state.entry(self.best_round)
        measured = float(self.budget.measure(self.model_of_round(self.best_round)))
        entry.info[f"{self.budget.kind}_measured"] = measured
        if not self.budget.met(measured):
            warnings.warn(f"kprune: the returned model measures {measured:.6g} "
                          f"{self.budget.kind} on the runtime, over the budget "
                          f"{self.budget.limit:.6g} (the estimate said "
                          f"{entry.info[self.budget.kind]:.6g})", RuntimeWarning, stacklevel=3)

    def final_model(self):
        """The model to return (compiled like the user's model)."""
        model = self.model_of_round(self.best_round)
        return self.trainer.recompile(model)

    def report_target(self):
        if "report_target" in self.state.controller:
            return self.state.controller["report_target"]
        return None if self.target is None else self.target.to_dict()

    def target_reached(self) -> bool:
        if self.target is None:
            return True
        e = self.state.entry(self.best_round)
        if e is None:
            return False
        if self.target.is_accuracy:
            return e.feasible
        if self.target.is_budget:
            kind = self.target.kind
            return self.budget.met(e.info.get(f"{kind}_measured", e.info[kind]))
        return self.reduction(e, self.target.kind) >= self.target.value - 1e-12

