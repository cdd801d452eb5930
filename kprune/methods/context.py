"""The state and shared machinery of one `kprune.prune` run.

Methods drive rounds through a `PruneContext`:

* ``ctx.scores(model, analysis)``: importance per group unit (the method's criterion);
* ``ctx.propose(model, select)``: prune a copy of `model` with a per-group
  selection rule, returning a `Proposal` (the new model, removed counts);
* ``ctx.retrain(proposal)`` / ``ctx.evaluate(model)``: retraining by
  learning-rate or weight rewinding, with NaN detection;
* ``ctx.commit(entry, proposal=None)``: record a round; accepted rounds become
  the current model. With ``out_dir`` the round is checkpointed atomically;
* ``ctx.controller``: a JSON-able dict a method keeps its own state in (saved
  with every round, restored on resume);
* ``ctx.finish(reason)``: the `PruneResult`.
"""

import dataclasses
import json
import math
import time
import warnings
from typing import Callable, Dict, Optional

import keras
import numpy as np

from kprune import training
from kprune.checkpoint import Checkpointer
from kprune.dependency import analyze
from kprune.methods import selection
from kprune.methods.fingerprint import run_fingerprint
from kprune.surgery import remove_channels

TARGET_KINDS = ("accuracy_loss", "params_reduction", "macs_reduction")

#: Options every method understands, with their defaults.
DEFAULT_OPTIONS = {
    "criterion": None,          # method default (ilp: 'l1', iap/aiap: 'taylor')
    "p": None,                  # power of the activation criterion
    "aggregate": "sum",         # member aggregation: sum | mean | max | callable
    "rate": 0.1,                # ILP/IAP: per-round fraction of alive units to remove
    "allocation": None,         # ILP/IAP: 'layer' (paper: rate per group) | 'global' (method default)
    "max_round_fraction": None,  # cap on the fraction of a group's units one round may remove
    "round_to": None,           # keep channel counts multiples of N
    "min_channels": 1,
    "max_fraction": None,       # float, or {layer name: fraction} of the original width
    "ignored_layers": (),
    "seed": 0,
    "batch_size": 32,
    "retrain": "lr_rewind",     # 'lr_rewind' | 'weight_rewind'
    "rewind_epoch": 1,          # weight rewinding: weights after this pretraining epoch
    "rewind_weights": None,     # or: list of arrays / model of the original architecture
    "pretrain_epochs": 0,       # train the baseline first
    "calibration_samples": 2000,
    "bn_recalibration": True,   # re-estimate BatchNorm moving statistics after each retraining
    "recording": "calibration",  # 'calibration' pass | 'fit' (training passes)
    "complexity_aware": None,   # None | 'params' | 'flops' | 'memory'
    "patience": 0,              # ILP/IAP: stop after this many consecutive rounds that break
                                # the target (0: run every round, return the smallest feasible)
    "lr_schedule": None,        # None/'constant' | 'cosine': learning rate within each retraining
    "distill": None,            # None | weight | {'weight': w, 'temperature': T}: KD from the unpruned model
    "finetune_epochs": 0,       # final fine-tuning of the returned model (counted in the budget)
    "step": None,               # AIAP threshold step (None: auto)
    "max_retries": 3,           # AIAP retries (step halvings) at one round
    "max_round_reduction": None,  # AIAP: at most this fraction of the params (MACs) per round
                                  # (None: 0.5, measured; 1.0: no cap)
    "tolerance": 0.0,           # AIAP reduction targets: allowed overshoot (0: land on the target)
    "validation_split": 0.1,    # when val_data is None (numpy train data only)
    "deterministic": True,      # tf op determinism when seed is set
    "verbose": 0,
}


def parse_target(target, default=("accuracy_loss", 0.01), number_means="accuracy_loss"):
    """None | float | 'kind' | ('kind', value) | {'kind': value} -> (kind, value) or None.

    A bare number is `number_means` (the accuracy loss for ILP/IAP/AIAP; the
    fraction of the chosen complexity to remove for method='complexity')."""
    if target is None:
        return None if default is None else tuple(default)
    if target == "none":
        return None
    if isinstance(target, (int, float)) and not isinstance(target, bool):
        kind, value = "accuracy_loss", float(target)
    elif isinstance(target, str):
        kind, value = target, {"accuracy_loss": 0.01}.get(target)
        if value is None:
            raise ValueError(f"target {target!r} needs a value, e.g. ({target!r}, 0.5)")
    elif isinstance(target, dict) and len(target) == 1:
        (kind, value), = target.items()
    elif isinstance(target, (tuple, list)) and len(target) == 2:
        kind, value = target
    else:
        raise ValueError(f"cannot read target {target!r}; use e.g. 0.01, "
                         "('params_reduction', 0.8) or {'macs_reduction': 0.5}")
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r}; use one of {TARGET_KINDS}")
    value = float(value)
    if not (0 <= value < 1):
        what = (number_means if isinstance(target, (int, float))
                and number_means != "accuracy_loss" else kind)
        raise ValueError(f"target={target!r} ({what}) must be in [0, 1), got {value}"
                         + ("; removing everything is impossible"
                            if value >= 1 and what != "accuracy_loss" else ""))
    return (kind, value)


@dataclasses.dataclass
class Proposal:
    """A pruned candidate: the new model and what was removed."""

    model: object
    removed: Dict[str, int]  # group name -> units removed
    removal: Dict[str, list]  # remove_channels argument
    rewind_model: object = None

    @property
    def total_removed(self):
        return int(sum(self.removed.values()))


def layer_widths(model) -> Dict[str, int]:
    """{layer: output channels} for every Conv/Dense-like layer."""
    widths = {}
    for layer in _leaf_layers(model):
        for attr in ("filters", "units"):
            v = getattr(layer, attr, None)
            if isinstance(v, int):
                widths[layer.name] = v
                break
    return widths


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def measure(model) -> Dict:
    """params, MACs (batch 1) and widths of `model`."""
    from kprune.profile import profile

    prof = profile(model)
    return {"params": int(prof.params), "macs": int(prof.macs), "widths": layer_widths(model)}


class PruneContext:
    """See the module docstring."""

    #: tf.distribute strategy of the run (set by `kprune.prune`; None: one device).
    strategy = None
    #: callables ``hook(entry, model)`` run after every recorded round
    #: (TensorBoard logger, ``on_round``), set by `kprune.prune`.
    round_hooks = ()

    def __init__(self, model, method, train_data, val_data, epochs, rounds, target,
                 out_dir, fit_fn, options, default_criterion="l1", target_default=("accuracy_loss", 0.01),
                 default_allocation="layer"):
        from kprune.methods.registry import method_options, owners_of

        own = method_options(method)
        known = {**DEFAULT_OPTIONS, **own}
        unknown = sorted(set(options) - set(known))
        if unknown:
            elsewhere = {k: owners_of(k) for k in unknown if owners_of(k)}
            hint = "".join(f"; {k!r} is an option of method {' / '.join(map(repr, v))}"
                           for k, v in elsewhere.items())
            raise TypeError(f"unknown option(s) {unknown} for kprune.prune(method="
                            f"{method!r}){hint}; options of {method!r}: {sorted(known)}")
        opts = dict(known)
        opts.update(options)
        if not opts["criterion"] and default_criterion == "taylor" and (
                getattr(model, "loss", None) is None):
            # Taylor needs the loss; an uncompiled model (fit_fn) gets the paper's score.
            default_criterion = "mean_activation"
        opts["criterion"] = opts["criterion"] or default_criterion
        opts["allocation"] = opts["allocation"] or default_allocation
        opts["ignored_layers"] = list(opts["ignored_layers"] or ())
        self.opts = opts
        self.method = method
        self.epochs = int(epochs)
        self.rounds = int(rounds)
        self.target = parse_target(
            target, target_default,
            "the fraction of complexity to remove" if method == "complexity"
            else "accuracy_loss")
        self.fit_fn = fit_fn
        self.verbose = opts["verbose"]
        if opts["retrain"] not in ("lr_rewind", "weight_rewind"):
            raise ValueError(f"retrain must be 'lr_rewind' or 'weight_rewind', got {opts['retrain']!r}")
        if opts["recording"] not in ("calibration", "fit"):
            raise ValueError(f"recording must be 'calibration' or 'fit', got {opts['recording']!r}")
        if opts["complexity_aware"] not in (None, "params", "flops", "memory"):
            raise ValueError("complexity_aware must be None, 'params', 'flops' or 'memory', "
                             f"got {opts['complexity_aware']!r}")
        if opts["complexity_aware"] is not None:
            try:
                from kprune.methods import complexity  # noqa: F401
            except ImportError as e:
                raise NotImplementedError(
                    "complexity_aware needs kprune.methods.complexity, which is not "
                    "available in this installation") from e
        if opts["allocation"] not in ("layer", "global"):
            raise ValueError(f"allocation must be 'layer' (the paper's per-group rate) or "
                             f"'global' (one ranking over all groups), got {opts['allocation']!r}")
        # Numbers and layer names were checked by kprune.arguments; these
        # options need the method's context.
        training.check_lr_schedule(opts["lr_schedule"])
        self.distill = training.parse_distill(opts["distill"])
        if (self.distill or opts["lr_schedule"] == "cosine") and fit_fn is not None:
            raise ValueError("distill= and lr_schedule= need kprune's own training loop; "
                             "they cannot be combined with fit_fn")
        if opts["criterion"] == "taylor" and fit_fn is not None and \
                getattr(model, "loss", None) is None:
            raise ValueError("criterion='taylor' needs the model's loss: compile the model")
        if opts["round_to"] is not None and int(opts["round_to"]) < 1:
            raise ValueError(f"round_to must be a positive integer, got {opts['round_to']}")
        # Training configuration.
        self.compile_config = training.compile_config_of(model)
        if self.compile_config is None and fit_fn is None:
            raise ValueError(
                f"model '{model.name}' is not compiled and no fit_fn was given: "
                "compile it (optimizer, loss, metrics) or pass fit_fn(model, data, epochs)")
        if fit_fn is not None and opts["recording"] == "fit":
            raise ValueError("recording='fit' needs kprune's own training loop; "
                             "it cannot be combined with fit_fn")
        # Data.
        bs = int(opts["batch_size"])
        train = training.as_data(train_data, bs, "train_data")
        if train is None:
            raise ValueError("train_data is required")
        val = training.as_data(val_data, bs, "val_data")
        training.check_data(model, train, "train_data")
        if val is None:
            train, val = training.split_validation(train, opts["validation_split"], opts["seed"] or 0)
        training.check_data(model, val, "val_data")
        for data, what in ((train, "train_data"), (val, "val_data")):
            training.check_label_format(model, data, self.compile_config, what)
        self.train, self.val = train, val
        if self.distill and train.kind != "numpy":
            raise ValueError("distill= needs numpy (x, y) train_data (the teacher's outputs "
                             "are computed once per training sample)")
        self._teacher_outputs = None
        self.user_train = train_data
        self.calibration = training.subset(train, int(opts["calibration_samples"]), opts["seed"] or 0)
        # State.
        self.original = model
        self.ckpt = Checkpointer(out_dir, model) if out_dir else None
        self.out_dir = self.ckpt.out_dir if self.ckpt else None
        # Only a run with out_dir needs its identity (it hashes weights and data).
        self.fingerprint = run_fingerprint(
            model, method, {k: v for k, v in opts.items() if k != "rewind_weights"},
            epochs, rounds, self.target, data=(train, val)) if self.ckpt else None
        self.history = []
        self.controller = {}
        self.current = None
        self.current_rewind = None
        self.current_stats = None
        self.best_round = 0
        self._models = {}  # round -> model (in memory when no out_dir)
        self.done = False
        self.reason = ""

    # -- setup / resume --------------------------------------------------------
    def start(self) -> bool:
        """Resume from out_dir or evaluate (and pretrain) the baseline. Returns
        True when a finished run was found (nothing left to do)."""
        if self.ckpt is not None:
            self.ckpt.cleanup_temporaries()
            state = self.ckpt.load_state()
            if state is not None:
                self._resume(state)
                return self.done
        self._baseline()
        return False

    def _resume(self, state):
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"out_dir '{self.out_dir}' holds another run (method "
                f"{state.get('method')!r}): its model weights, data or settings differ from "
                "this call's; use a new out_dir, or the same model, data and arguments to "
                "resume")
        self.history = state["history"]
        self.controller = state["controller"]
        self.best_round = state["best_round"]
        self.done = state["done"]
        self.reason = state["reason"]
        self.current = self.ckpt.load_model(state["current_file"])
        if state.get("rewind_file"):
            self.current_rewind = self.ckpt.load_model(state["rewind_file"])
        if self.verbose:
            print(f"kprune: resuming '{self.out_dir}' after round {self.history[-1]['round']}")

    def _seed(self, round_index):
        seed = self.opts["seed"]
        if seed is not None:
            keras.utils.set_random_seed(int(seed) * 1000 + int(round_index))

    def _baseline(self):
        t0 = time.time()
        model = self.original
        self._seed(0)
        rewind_weights = self.opts["rewind_weights"]
        if self.opts["pretrain_epochs"]:
            k = int(self.opts["rewind_epoch"])
            cbs = []
            if self.opts["retrain"] == "weight_rewind" and rewind_weights is None:
                holder = {}

                class _Grab(keras.callbacks.Callback):
                    def on_epoch_end(cb, epoch, logs=None):  # noqa: N805
                        if epoch + 1 == k:
                            holder["w"] = [np.array(w) for w in model.get_weights()]

                cbs.append(_Grab())
            out = training.fit_once(model, self.train, int(self.opts["pretrain_epochs"]),
                                    self.compile_config, self.fit_fn, callbacks=cbs,
                                    verbose=self.verbose, record_groups=self._record_groups(model))
            if out.nan:
                raise FloatingPointError("the baseline training produced a NaN loss; "
                                         "lower the learning rate")
            self.current_stats = out.stats
            if cbs:
                if "w" not in holder:
                    raise ValueError(f"rewind_epoch={k} is beyond pretrain_epochs="
                                     f"{self.opts['pretrain_epochs']}")
                rewind_weights = holder["w"]
        if self.opts["retrain"] == "weight_rewind":
            if rewind_weights is None:
                raise ValueError(
                    "retrain='weight_rewind' needs early-epoch weights: set pretrain_epochs "
                    ">= rewind_epoch, or pass rewind_weights= (a list of arrays or a model "
                    "of the original architecture)")
            rw = keras.models.clone_model(model)
            rw.set_weights(rewind_weights.get_weights() if isinstance(rewind_weights, keras.Model)
                           else rewind_weights)
            self.current_rewind = rw
        self.current = model
        acc = self.evaluate(model)
        if not math.isfinite(acc):
            raise FloatingPointError("the baseline model outputs NaN/inf on val_data")
        entry = {"round": 0, "status": "baseline", "val_accuracy": acc, "removed": 0,
                 "feasible": True, "time_s": time.time() - t0}
        entry.update(measure(model))
        self.commit(entry, None)

    def _record_groups(self, model):
        if self.opts["recording"] != "fit" or not self.uses_activations():
            return None
        return analyze(model, self.opts["ignored_layers"]).groups

    # -- scoring and selection ---------------------------------------------------
    def uses_activations(self) -> bool:
        from kprune.criteria import needs_activations

        return needs_activations(self.opts["criterion"])

    def _needs_apoz(self):
        crit = self.opts["criterion"]
        return callable(crit) or crit == "apoz"

    def analyze(self, model):
        return analyze(model, self.opts["ignored_layers"])

    def scores(self, model, analysis) -> Dict[int, np.ndarray]:
        """{group index: per-unit importance} under the method's criterion."""
        from kprune.criteria import GRADIENT_CRITERIA, group_scores, taylor_scores

        stats = None
        if self.opts["criterion"] in GRADIENT_CRITERIA:
            if self.compile_config is not None and getattr(model, "loss", None) is None:
                training.recompile(model, self.compile_config)
            stats = taylor_scores(model, self.calibration, analysis.groups, analysis=analysis,
                                  aggregate=self.opts["aggregate"], strategy=self.strategy)
        elif self.uses_activations():
            stats = self.current_stats if model is self.current else None
            if stats is None or self.opts["recording"] == "calibration":
                from kprune.distribute import record_activations

                stats = record_activations(model, self.calibration, self.strategy,
                                           groups=analysis.groups)
        return {g.index: group_scores(model, g, self.opts["criterion"], stats,
                                      self.opts["aggregate"], self.opts["p"], analysis)
                for g in analysis.groups}

    def original_width(self, group) -> int:
        widths = self.history[0]["widths"] if self.history else {}
        vals = [widths[p] for p in group.producers if p in widths]
        return max(vals) if vals else group.channels

    def max_fraction_of(self, group) -> Optional[float]:
        mf = self.opts["max_fraction"]
        if mf is None or isinstance(mf, (int, float)):
            return mf
        vals = [mf[name] for name in group.layers if name in mf]
        return min(vals) if vals else None

    def complexity_weights(self, model, analysis) -> Optional[Dict[int, float]]:
        """With ``complexity_aware``: {group index: weight}, mean 1, from
        `kprune.methods.complexity.complexity_weights` (None otherwise)."""
        mode = self.opts["complexity_aware"]
        if mode is None:
            return None
        from kprune.methods.complexity import complexity_weights

        try:
            w = complexity_weights(model, mode, analysis=analysis)
        except TypeError:
            w = complexity_weights(model, mode)
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
        rng = np.random.default_rng((self.opts["seed"] or 0) * 1000 + round_index)
        removal, removed = {}, {}
        for g in analysis.groups:
            s = scores[g.index]
            cand = selection.cap_candidates(s, np.asarray(select(g, s), bool),
                                            self.opts["max_round_fraction"])
            units = selection.limit_removal(
                s, cand, self.original_width(g), self.opts["min_channels"],
                self.max_fraction_of(g), self.opts["round_to"], rng)
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
    def retrain(self, proposal: Proposal, round_index: int) -> training.FitOutcome:
        """Retrain the proposal's model in place (LR or weight rewinding)."""
        self._seed(round_index)
        model = proposal.model
        if proposal.rewind_model is not None:
            model.set_weights(proposal.rewind_model.get_weights())
        out = self._fit(model, self.epochs)
        proposal.stats = out.stats
        if not out.nan and self.opts["bn_recalibration"]:
            self._seed(round_index)
            training.recalibrate_batchnorm(model, self.calibration)
        return out

    def _fit(self, model, epochs, record=True):
        teacher = None
        if self.distill:
            if self._teacher_outputs is None:
                base = self.model_of_round(0)
                self._teacher_outputs = base.predict(self.train.x, batch_size=1024, verbose=0)
            teacher = self._teacher_outputs
        return training.fit_once(model, self.train, epochs, self.compile_config,
                                 self.fit_fn, verbose=self.verbose,
                                 record_groups=self._record_groups(model) if record else None,
                                 lr_schedule=self.opts["lr_schedule"], distill=self.distill,
                                 teacher_outputs=teacher)

    def finetune(self):
        """``finetune_epochs``: train the model to return once more and record
        it as a round of status 'finetuned' (its epochs count in the budget)."""
        n = int(self.opts["finetune_epochs"])
        if n <= 0 or self.best_round == 0 or any(e["status"] == "finetuned" for e in self.history):
            return
        t0 = time.time()
        r = self.history[-1]["round"] + 1
        self._seed(r)
        src = self.model_of_round(self.best_round)
        model = keras.models.clone_model(src)
        model.set_weights(src.get_weights())
        if self.compile_config is not None:
            training.recompile(model, self.compile_config)
        out = self._fit(model, n, record=False)
        if out.nan:
            warnings.warn("kprune: the final fine-tuning produced NaN; returning the "
                          "model before it", RuntimeWarning, stacklevel=2)
            return
        if self.opts["bn_recalibration"]:
            training.recalibrate_batchnorm(model, self.calibration)
        entry = {"round": r, "status": "finetuned", "from_round": self.best_round,
                 "epochs": n, "removed": 0, "val_accuracy": self.evaluate(model)}
        entry.update(measure(model))
        entry["feasible"] = self.meets_target(entry)
        entry["time_s"] = time.time() - t0
        keep = entry["feasible"] or not self.target or self.target[0] != "accuracy_loss"
        self.commit(entry, Proposal(model, {}, {}), accept=True, best=keep)

    def evaluate(self, model) -> float:
        """Top-1 accuracy on the validation data."""
        return training.evaluate_accuracy(model, self.val)

    def try_round(self, proposal: Proposal, round_index: int, extra=None) -> Dict:
        """Retrain + evaluate + measure a proposal; returns its history entry
        (status 'nan_discarded' when the loss or weights became NaN)."""
        t0 = time.time()
        out = self.retrain(proposal, round_index)
        entry = {"round": round_index, "removed": proposal.total_removed,
                 "removed_by_group": proposal.removed}
        entry.update(extra or {})
        acc = float("nan") if out.nan else self.evaluate(proposal.model)
        if out.nan or not math.isfinite(acc):
            warnings.warn(f"kprune: round {round_index} produced a NaN loss or NaN "
                          "weights; the round is discarded and the previous model kept",
                          RuntimeWarning, stacklevel=2)
            entry.update({"status": "nan_discarded", "val_accuracy": None, "feasible": False})
            entry.update(measure(proposal.model))
        else:
            entry["status"] = "trained"
            entry["val_accuracy"] = acc
            entry.update(measure(proposal.model))
            entry["feasible"] = self.meets_target(entry)
        entry["time_s"] = time.time() - t0
        return entry

    # -- targets -------------------------------------------------------------------
    def reduction(self, entry, kind):
        base = self.history[0]
        key = "params" if kind == "params_reduction" else "macs"
        return 1.0 - entry[key] / max(base[key], 1)

    def meets_target(self, entry) -> bool:
        """Accuracy targets: accuracy within the allowed loss. Reduction
        targets: the reduction is reached."""
        if self.target is None:
            return True
        kind, value = self.target
        if kind == "accuracy_loss":
            return entry["val_accuracy"] >= self.history[0]["val_accuracy"] - value - 1e-12
        return self.reduction(entry, kind) >= value - 1e-12

    # -- commit / finish -------------------------------------------------------------
    def commit(self, entry, proposal: Optional[Proposal], accept=None, best=None):
        """Record a round. `accept` (default: status 'accepted'/'baseline') makes
        the proposal the current model; `best` marks it as the model to return."""
        entry = json.loads(json.dumps(entry, default=_jsonable))
        if accept is None:
            accept = entry["status"] in ("accepted", "baseline")
        r = entry["round"]
        if accept:
            if proposal is not None:
                self.current = proposal.model
                self.current_rewind = proposal.rewind_model
                self.current_stats = getattr(proposal, "stats", None)
        self.history.append(entry)
        for hook in self.round_hooks:
            hook(entry, proposal.model if proposal is not None
                 else (self.current if accept else None))
        if best is None:
            best = accept and entry.get("feasible", False)
        if best:
            self.best_round = r
        if self.ckpt is None:
            if accept:
                self._models[r] = self.current
            return
        if accept:
            self.ckpt.save_model(self.current, f"round_{r:03d}.keras")
            if self.current_rewind is not None:
                self.ckpt.save_model(self.current_rewind, f"rewind_{r:03d}.keras")
        self._save_state(accepted_round=r if accept else None)

    def _save_state(self, accepted_round=None):
        if accepted_round is not None:
            self.controller["_current_round"] = accepted_round
        cr = self.controller.get("_current_round", 0)
        state = {"version": 1, "fingerprint": self.fingerprint, "method": self.method,
                 "history": self.history, "controller": self.controller,
                 "best_round": self.best_round, "done": self.done, "reason": self.reason,
                 "current_file": f"round_{cr:03d}.keras",
                 "rewind_file": f"rewind_{cr:03d}.keras" if self.current_rewind is not None else None}
        self.ckpt.save_state(state)

    def set_current_round(self, r):
        """Roll the current model back to accepted round `r` (AIAP)."""
        if self.ckpt is None:
            self.current = self._models[r]
        else:
            self.current = self.ckpt.load_model(f"round_{r:03d}.keras")
            if self.current_rewind is not None:
                self.current_rewind = self.ckpt.load_model(f"rewind_{r:03d}.keras")
        self.current_stats = None
        self.controller["_current_round"] = r

    def save_controller(self):
        """Persist `ctx.controller` changes made outside a commit."""
        if self.ckpt is not None:
            self._save_state()

    def model_of_round(self, r):
        if r == 0 and self.ckpt is None:
            return self._models.get(0, self.original)
        if self.ckpt is None:
            return self._models[r]
        return self.ckpt.load_model(f"round_{r:03d}.keras")

    def finish(self, reason: str = ""):
        """Mark the run done and build the `PruneResult`."""
        from kprune.result import PruneResult

        if not self.done:
            self.finetune()
            self.done = True
            self.reason = reason
            if self.ckpt is not None:
                self._save_state()
        reached = self._target_reached()
        model = self.model_of_round(self.best_round)
        if self.compile_config is not None:
            training.recompile(model, self.compile_config)
        target = None if self.target is None else {self.target[0]: self.target[1]}
        return PruneResult(model, self.history, self.best_round, self.method, target,
                           self.reason, reached,
                           {k: v for k, v in self.opts.items() if k != "rewind_weights"},
                           self.out_dir)

    def _target_reached(self):
        if self.target is None:
            return True
        for e in self.history:
            if e["round"] == self.best_round and e["status"] in ("accepted", "baseline",
                                                                  "finetuned"):
                if self.target[0] == "accuracy_loss":
                    return e["feasible"]
                return self.reduction(e, self.target[0]) >= self.target[1] - 1e-12
        return False


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return repr(o)
