"""Option records: what `kprune.prune`'s ``**options`` become, checked.

Every option belongs to exactly one record:

* `RunOptions`: what every method uses (seed, batch size, widths floor,
  pretraining, fine-tuning, device budgets, ...);
* a method's own record, a `MethodOptions` subclass declared with its
  registration (`kprune.methods.registry.register_method`). The scoring
  methods (ILP, IAP, AIAP) share `PruningOptions` (criterion, per-round caps,
  rewinding, ...) and add their own fields.

An option that no record of the chosen method declares is a TypeError that
names the methods taking it. Each record checks itself in `validate`, before
any data work or training.

Example:
    >>> @dataclasses.dataclass(frozen=True)
    ... class MyOptions(MethodOptions):
    ...     temperature: float = 1.0
    ...     def validate(self, ctx):
    ...         check_positive("temperature", self.temperature)
    ...         return self
"""

import dataclasses
import numbers
from typing import Any, ClassVar, Dict, NamedTuple, Optional, Tuple

from kprune.methods.checks import (check_bool, check_choice, check_fraction, check_int,
                                   check_positive, layer_names)


class OptionContext(NamedTuple):
    """What a record's `validate` may look at besides its own fields."""

    model: Any
    options: Any = None       # the run's validated `RunOptions`
    target: Any = None        # the run's `kprune.methods.goal.Target` (or None)
    fit_fn: Any = None


@dataclasses.dataclass(frozen=True)
class MethodOptions:
    """Base of every option record: a frozen dataclass whose fields are
    option names with their defaults. Override `validate` to check (and
    normalize, via ``dataclasses.replace``) the values; read fields as
    attributes (``opts.step``) or by name (``opts["step"]``)."""

    def validate(self, ctx: OptionContext) -> "MethodOptions":
        """The record checked and normalized (raise TypeError / ValueError
        naming the option and the fix)."""
        return self

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        return {f.name: f.default for f in dataclasses.fields(cls)}

    def to_dict(self) -> Dict[str, Any]:
        """{option: value}, without array-valued entries (``rewind_weights``)."""
        return {n: getattr(self, n) for n in self.names() if n not in ("rewind_weights",)}

    def __getitem__(self, name):
        if name not in self.names():
            raise KeyError(name)
        return getattr(self, name)

    def keys(self):
        return self.names()


_LR = (None, "constant", "cosine")
_LATENCY_Q = (None, "int8", "float32")


def parse_distill(value):
    """distill= None | weight | {'weight': w, 'temperature': T} -> None or (w, T).

    Example:
        >>> parse_distill(0.5)
        (0.5, 4.0)
    """
    if value is None or value is False:
        return None
    if value is True:
        value = 0.5
    if isinstance(value, numbers.Real):
        w, t = float(value), 4.0
    elif isinstance(value, dict) and set(value) <= {"weight", "temperature"}:
        try:
            w, t = float(value.get("weight", 0.5)), float(value.get("temperature", 4.0))
        except (TypeError, ValueError):
            w, t = -1.0, -1.0
    else:
        raise ValueError(f"distill={value!r}: use a weight in (0, 1] or "
                         "{'weight': 0.5, 'temperature': 4.0}")
    if not (0 < w <= 1) or not t > 0 or t == float("inf"):
        raise ValueError(f"distill={value!r}: weight must be in (0, 1] and temperature > 0 "
                         "(e.g. distill={'weight': 0.5, 'temperature': 4.0})")
    return (w, t)


@dataclasses.dataclass(frozen=True)
class RunOptions(MethodOptions):
    """The options every method uses."""

    seed: Optional[int] = 0
    batch_size: int = 32
    min_channels: int = 1           # no group below this many channels
    ignored_layers: Tuple[str, ...] = ()
    pretrain_epochs: int = 0        # train the baseline first
    finetune_epochs: int = 0        # final fine-tuning of the returned model (in the budget)
    calibration_samples: int = 2000  # scores and BatchNorm re-estimation
    bn_recalibration: bool = True   # re-estimate BatchNorm statistics after training
    lr_schedule: Optional[str] = None  # None/'constant' | 'cosine' within each training
    distill: Any = None             # None | weight | {'weight': w, 'temperature': T}
    target_arena_bytes: Optional[int] = None  # TFLite-Micro arena budget of the int8 model
    target_latency_ms: Optional[float] = None  # measured latency budget
    latency_fn: Any = None          # f(tflite_bytes) -> seconds; default LiteRT, 1 thread
    latency_quantization: Optional[str] = "int8"  # conversion whose latency counts
    validation_split: float = 0.1   # when val_data is None (numpy train data only)
    deterministic: bool = True      # tf op determinism (for the run only) when seed is set
    verbose: int = 0
    metric: Any = None              # what every decision is taken on (kprune.methods.metric)
    metric_direction: Optional[str] = None  # 'max' | 'min' | None: inferred from the metric

    def validate(self, ctx: OptionContext) -> "RunOptions":
        from kprune.methods.metric import Metric, parse_metric

        v = {}
        if not isinstance(self.metric, Metric):
            v["metric"] = parse_metric(self.metric, self.metric_direction, ctx.model)
        for key, minimum in (("batch_size", 1), ("calibration_samples", 1),
                             ("min_channels", 1), ("pretrain_epochs", 0),
                             ("finetune_epochs", 0)):
            v[key] = check_int(key, getattr(self, key), minimum)
        if self.seed is not None:
            v["seed"] = check_int("seed", self.seed, 0, fix="; or seed=None for no seeding")
        v["validation_split"] = check_fraction("validation_split", self.validation_split)
        v["ignored_layers"] = tuple(layer_names(ctx.model, self.ignored_layers,
                                                "ignored_layers"))
        check_choice("lr_schedule", self.lr_schedule, _LR, "None / 'constant' or 'cosine'")
        check_choice("latency_quantization", self.latency_quantization, _LATENCY_Q,
                     "'int8' or None / 'float32'")
        if isinstance(self.verbose, bool) or not isinstance(self.verbose, numbers.Integral) \
                or self.verbose not in (0, 1, 2):
            raise TypeError(f"verbose must be 0, 1 or 2, got {self.verbose!r}")
        check_bool("bn_recalibration", self.bn_recalibration)
        check_bool("deterministic", self.deterministic)
        parse_distill(self.distill)
        if self.target_arena_bytes is not None:
            v["target_arena_bytes"] = check_int(
                "target_arena_bytes", self.target_arena_bytes, 1,
                fix="; the TFLite-Micro arena budget in bytes, e.g. 32768")
        if self.target_latency_ms is not None:
            v["target_latency_ms"] = check_positive(
                "target_latency_ms", self.target_latency_ms,
                fix="; the latency budget in milliseconds, e.g. 2.5")
        if self.latency_fn is not None and not callable(self.latency_fn):
            raise TypeError(f"latency_fn must be a callable f(tflite_bytes) -> seconds, got "
                            f"{self.latency_fn!r}")
        return dataclasses.replace(self, **v)

    def to_dict(self) -> Dict[str, Any]:
        """{option: value}; the metric as its name and direction ('max' / 'min')."""
        d = super().to_dict()
        m = self.metric
        if m is not None and hasattr(m, "direction"):
            d["metric"], d["metric_direction"] = m.name, m.direction
        return d


#: choices of `PruningOptions` fields with their help text
_CHOICES = {
    "retrain": (("lr_rewind", "weight_rewind"),
                "'lr_rewind' (fresh optimizer every round) or 'weight_rewind'"),
    "recording": (("calibration", "fit"),
                  "'calibration' (a pass over calibration data) or 'fit' (training passes)"),
    "complexity_aware": ((None, "params", "macs", "flops", "memory", "latency"),
                         "None, 'params', 'macs', 'memory' or 'latency'"),
}


COST_KINDS = ("params", "macs", "latency")


def resolve_latency_steps(latency_steps, target=None, round_to=None) -> bool:
    """``latency_steps=`` -> whether pruned widths are rounded to the measured
    latency staircase of each group (`kprune.methods.complexity.group_step_widths`:
    LiteRT's XNNPACK runs int8 convolutions in tiles of 8 output channels and
    reads input channels in blocks of 8, so a width inside a tile costs the
    whole tile). None (the default) is True for a latency budget
    (``target_latency_ms``) without ``round_to``. True works with any target:
    with a MAC or parameter target the staircase is measured with
    ``latency_fn`` (default LiteRT on this host, 1 thread) on
    ``latency_quantization``'s model, so the widths a MAC target reaches run
    at the speed their MACs promise.

    Example:
        >>> resolve_latency_steps(None, Target("latency_ms", 2.0))
        True
        >>> resolve_latency_steps(None, Target("params_reduction", 0.5))
        False
        >>> resolve_latency_steps(True, Target("macs_reduction", 0.75))
        True
    """
    if latency_steps is not None and not isinstance(latency_steps, bool):
        raise ValueError(f"latency_steps={latency_steps!r} must be True, False or None "
                         f"(None: on with target_latency_ms)")
    latency = getattr(target, "kind", None) == "latency_ms"
    if latency_steps and round_to is not None:
        raise ValueError(f"latency_steps=True and round_to={round_to!r} both round the "
                         f"widths: give one of them (latency_steps=False keeps round_to)")
    if latency_steps is None:
        return latency and round_to is None
    return latency_steps


def resolve_cost(cost, target=None, complexity_aware=None) -> Optional[str]:
    """``cost=`` -> None or one of `COST_KINDS`: what removing one unit saves,
    the price its importance is divided by (importance per MAC / per ms, as
    in HALP and FLOPs-regularized Taylor pruning).

    ``'auto'`` (the default) follows the target kind: ``'macs'`` for a
    ``macs_reduction`` target, ``'latency'`` for a latency budget
    (``target_latency_ms``), None otherwise (parameter and accuracy targets
    keep the measured defaults), and None when ``complexity_aware`` is given
    (that option then prices the groups). ``'flops'`` is an alias of
    ``'macs'``. ILP / IAP then drop an 'auto' cost again for scores without
    one scale across groups (`kprune.methods.iterative`).

    Example:
        >>> resolve_cost("auto", Target("macs_reduction", 0.5))
        'macs'
        >>> resolve_cost("auto", Target("params_reduction", 0.5)) is None
        True
    """
    kind = getattr(target, "kind", None)
    if isinstance(cost, str) and cost == "auto":
        if complexity_aware is not None:
            return None
        return {"macs_reduction": "macs", "latency_ms": "latency"}.get(kind)
    if isinstance(cost, str) and cost == "flops":
        cost = "macs"
    check_choice("cost", cost, (None,) + COST_KINDS,
                 "'auto' (follow the target), None, 'params', 'macs' or 'latency'")
    if cost is not None and complexity_aware is not None:
        raise ValueError(f"cost={cost!r} and complexity_aware={complexity_aware!r} both price "
                         "the groups: give one of them (cost= divides each unit's importance "
                         "by what it saves; complexity_aware= scales the groups' rates)")
    if cost == "latency" and kind != "latency_ms":
        raise ValueError("cost='latency' prices units by their measured latency: give the "
                         "budget too, target_latency_ms=<ms>, or use cost='macs'")
    return cost


@dataclasses.dataclass(frozen=True)
class PruningOptions(MethodOptions):
    """Options of the methods that score units and remove the weakest,
    then retrain (ILP, IAP, AIAP). ``criterion=None`` is the method's
    `default_criterion` (`criterion_without_loss` when that one needs a loss
    the model lacks)."""

    #: the method's default criterion, and the one used when that needs the
    #: model's loss and the model has none (e.g. trained with fit_fn)
    default_criterion: ClassVar[str] = "l1"
    criterion_without_loss: ClassVar[str] = "mean_activation"

    criterion: Any = None           # a name, a kprune.scoring.Criterion or fn(model, group[, stats])
    p: Optional[float] = None       # power of the activation criteria
    aggregate: Any = "sum"          # member aggregation: sum | mean | max | callable
    max_round_fraction: Optional[float] = None  # cap on a group's units one round may remove
    round_to: Optional[int] = None  # keep channel counts multiples of N
    max_fraction: Any = None        # float, or {layer name: fraction} of the original width
    retrain: str = "lr_rewind"      # 'lr_rewind' | 'weight_rewind'
    rewind_epoch: int = 1           # weight rewinding: weights after this pretraining epoch
    rewind_weights: Any = None      # or: list of arrays / model of the original architecture
    recording: str = "calibration"  # 'calibration' pass | 'fit' (training passes)
    complexity_aware: Optional[str] = None  # None | 'params' | 'macs' | 'memory' | 'latency'
    cost: Optional[str] = "auto"    # what a unit costs: 'auto' (follows the target) |
                                    # None | 'params' | 'macs' | 'latency' (see resolve_cost)
    latency_steps: Optional[bool] = None  # widths rounded to the measured latency staircase
                                    # (None: on with target_latency_ms and no round_to;
                                    # True: with any target, measured with latency_fn)
    epochs_per_cost: Optional[float] = None  # a round removing a fraction f of the cost
                                    # retrains max(epochs, round(epochs_per_cost * f)) epochs
    gqa_units: str = "key_value_heads"  # grouped-query attention's units: whole
                                    # 'key_value_heads' groups | 'query_heads' in every group
    tie_repeated: Any = False       # True: repeated groups (names equal up to their
                                    # numbers, same width) lose the same count per round;
                                    # or fn(group name) -> tie key (None: untied)

    def validate(self, ctx: OptionContext) -> "PruningOptions":
        from kprune.scoring.criteria import get_criterion

        model, common = ctx.model, ctx.options
        v = {"rewind_epoch": check_int("rewind_epoch", self.rewind_epoch, 1)}
        if self.round_to is not None:
            v["round_to"] = check_int("round_to", self.round_to, 1)
        if self.epochs_per_cost is not None:
            v["epochs_per_cost"] = check_positive(
                "epochs_per_cost", self.epochs_per_cost,
                fix=" (a round that removes a fraction f of the model's cost, MACs for a MAC "
                    "or latency target, else parameters, retrains max(epochs, "
                    "round(epochs_per_cost * f)) epochs; e.g. 8: a round removing half "
                    "retrains 4), or None for epochs every round")
        if self.max_round_fraction is not None:
            v["max_round_fraction"] = check_fraction(
                "max_round_fraction", self.max_round_fraction, high_closed=True,
                fix="; None for no per-round cap")
        if self.p is not None:
            p = self.p
            if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p < float("inf"):
                raise ValueError(f"p must be a positive number (the activation power), "
                                 f"got {p!r}")
        mf = self.max_fraction
        if isinstance(mf, dict):
            layer_names(model, list(mf), "max_fraction")
            v["max_fraction"] = {k: check_fraction(f"max_fraction['{k}']", x, low_open=False,
                                                   high_closed=True) for k, x in mf.items()}
        elif mf is not None:
            v["max_fraction"] = check_fraction("max_fraction", mf, low_open=False,
                                               high_closed=True,
                                               fix="; or a dict {layer name: fraction}")
        for name, (choices, help_text) in _CHOICES.items():
            check_choice(name, getattr(self, name), choices, help_text)
        if self.complexity_aware == "flops":
            v["complexity_aware"] = "macs"  # one vocabulary: MACs
        v["cost"] = resolve_cost(self.cost, ctx.target, v.get("complexity_aware",
                                                               self.complexity_aware))
        check_choice("gqa_units", self.gqa_units, ("key_value_heads", "query_heads"),
                     "'key_value_heads' (a unit is a key/value head with its query heads) "
                     "or 'query_heads' (the j-th query head of every key/value group)")
        tie = self.tie_repeated
        if not (isinstance(tie, bool) or callable(tie)):
            raise ValueError(f"tie_repeated={tie!r} must be True, False or a function "
                             "fn(group name) -> tie key (None for an untied group)")
        v["latency_steps"] = resolve_latency_steps(self.latency_steps, ctx.target,
                                                   self.round_to)
        has_loss = getattr(model, "loss", None) is not None
        name = self.criterion
        if name is None:
            name = self.default_criterion
            if get_criterion(name).needs == "gradients" and not has_loss:
                name = self.criterion_without_loss
        crit = get_criterion(name, p=self.p, aggregate=self.aggregate)
        if crit.needs == "gradients" and not has_loss:
            raise ValueError(f"criterion={name!r} needs the model's loss: compile the "
                             "model (loss=...) or use another criterion (e.g. 'l1')")
        if self.p is not None and not hasattr(crit, "p"):
            raise ValueError(f"p={self.p!r} is the power of the activation criteria "
                             f"('mean_activation', 'attention'); criterion {crit.name!r} "
                             "has no power: drop p= or choose one of those")
        v["criterion"] = crit
        if ctx.fit_fn is not None and self.recording == "fit":
            raise ValueError("recording='fit' needs kprune's own training loop; "
                             "it cannot be combined with fit_fn")
        if self.retrain == "weight_rewind" and self.rewind_weights is None and \
                common is not None and common.pretrain_epochs < v["rewind_epoch"]:
            raise ValueError(
                "retrain='weight_rewind' needs early-epoch weights: set pretrain_epochs "
                f">= rewind_epoch (now {common.pretrain_epochs} < {v['rewind_epoch']}), "
                "or pass rewind_weights= (a list of arrays or a model of the original "
                "architecture)")
        if self.retrain != "weight_rewind" and self.rewind_weights is not None:
            raise ValueError("rewind_weights= is read by retrain='weight_rewind' only: "
                             "pass retrain='weight_rewind' too, or drop rewind_weights")
        return dataclasses.replace(self, **v)
