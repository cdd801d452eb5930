"""What a run aims at (`Target`) and how it is judged (`Goal`).

`Goal` holds the target arithmetic in one place: whether a round meets the
target, the reduction reached, whether a candidate overshoots a size target,
landing on it (one bisection, `bisect`), and the reached / not-reached
reasons. A quality target (``accuracy_loss``, ``metric_loss``,
``metric_loss_relative``) is a loss on the run's metric (`Quality`: by
default the validation top-1 accuracy, higher is better; ``metric=`` gives
another, with its direction; see `kprune.methods.metric`).

Example:
    >>> goal = Goal(parse_target({"params_reduction": 0.5}))
    >>> goal.baseline = RoundEntry(0, "baseline", 0.9, params=1000, macs=100)
    >>> goal.meets(RoundEntry(1, "accepted", 0.8, params=400, macs=50))
    True
"""

import math
import numbers
import warnings
from typing import Callable, Dict, NamedTuple, Optional

from kprune.core.profile import model_size
from kprune.methods.state import RoundEntry

#: Target kinds: a quality loss to stay within, a size reduction to reach,
#: or a device budget to fit (TFLite-Micro arena bytes of the int8 model,
#: measured latency in milliseconds).
TARGET_KINDS = ("accuracy_loss", "params_reduction", "macs_reduction", "arena_bytes",
                "latency_ms", "metric_loss", "metric_loss_relative")
#: Quality targets: an allowed loss on the run's metric (``metric=``):
#: ``accuracy_loss`` and ``metric_loss`` absolute (in the metric's units; for
#: accuracy, 0.01 = 1 point), ``metric_loss_relative`` a fraction of the
#: baseline's value (0.02: at most 2% worse).
QUALITY_KINDS = ("accuracy_loss", "metric_loss", "metric_loss_relative")
BUDGET_KINDS = ("arena_bytes", "latency_ms")
#: z of a one-sided 95% bound: an accuracy target narrower than NOISE_Z
#: standard errors of the validation accuracy cannot be judged reliably.
NOISE_Z = 1.645
_EPS = 1e-12


class Target(NamedTuple):
    """What a run aims at: ``kind`` in `TARGET_KINDS` and its ``value``.

    Example:
        >>> parse_target({"params_reduction": 0.8})
        Target(kind='params_reduction', value=0.8)
    """

    kind: str
    value: float

    @property
    def is_accuracy(self) -> bool:
        """A quality target (a loss on the run's metric, see `QUALITY_KINDS`)."""
        return self.kind in QUALITY_KINDS

    @property
    def is_relative(self) -> bool:
        return self.kind == "metric_loss_relative"

    @property
    def is_budget(self) -> bool:
        """A device budget (arena bytes / latency), not a fraction."""
        return self.kind in BUDGET_KINDS

    def to_dict(self) -> Dict[str, float]:
        return {self.kind: self.value}


def parse_target(target, default=("accuracy_loss", 0.01),
                 number_means="accuracy_loss") -> Optional[Target]:
    """None | float | 'kind' | ('kind', value) | {'kind': value} -> `Target` or None.

    A bare number is `number_means` (the accuracy loss for ILP/IAP/AIAP; the
    fraction of the chosen complexity to remove for method='complexity');
    ``'none'`` means no target (ILP/IAP: run every round).

    Example:
        >>> parse_target(0.02)
        Target(kind='accuracy_loss', value=0.02)
    """
    if target is None:
        return None if default is None else Target(*default)
    if isinstance(target, str) and target == "none":
        return None
    if isinstance(target, numbers.Real) and not isinstance(target, bool):
        kind, value = "accuracy_loss", target
    elif isinstance(target, str):
        kind, value = target, {"accuracy_loss": 0.01}.get(target)
        if value is None:
            raise ValueError(f"target {target!r} needs a value, e.g. target=({target!r}, 0.5)")
    elif isinstance(target, dict) and len(target) == 1:
        (kind, value), = target.items()
    elif isinstance(target, (tuple, list)) and len(target) == 2:
        kind, value = target
    else:
        raise ValueError(f"cannot read target={target!r}; use e.g. 0.01, "
                         "('params_reduction', 0.8) or {'macs_reduction': 0.5}")
    if not isinstance(kind, str) or kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r} in target={target!r}; use one of "
                         f"{TARGET_KINDS}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"target={target!r}: the {kind} value must be a number, got {value!r}")
    value = float(value)
    if kind in BUDGET_KINDS:
        if not (0 < value < float("inf")):
            raise ValueError(f"target={target!r}: {kind} must be a positive number "
                             f"({'bytes' if kind == 'arena_bytes' else 'milliseconds'}), "
                             f"got {value}")
        return Target(kind, value)
    if kind in ("metric_loss", "metric_loss_relative"):
        if not (0 <= value < float("inf")):
            raise ValueError(f"target={target!r}: {kind} must be a finite number >= 0 (the "
                             f"allowed worsening of the metric{'' if kind == 'metric_loss' else ' as a fraction of its baseline value'}), got {value}")
        return Target(kind, value)
    if not (0 <= value < 1):
        what = (number_means if isinstance(target, numbers.Real)
                and number_means != "accuracy_loss" else kind)
        raise ValueError(f"target={target!r} ({what}) must be in [0, 1), got {value}"
                         + ("; removing everything is impossible"
                            if value >= 1 and what != "accuracy_loss" else ""))
    return Target(kind, value)


class Quality(NamedTuple):
    """The measure a quality-loss target is a loss of: a `RoundEntry`
    field (``val_accuracy``, or ``'val_<metric name>'`` in ``info``), its
    direction and whether it is kprune's top-1 accuracy (a binomial
    proportion, whose noise `Goal.warn_if_noisy` judges).

    Example:
        >>> Quality.of(parse_metric("mae", None, model)).field
        'val_mae'
    """

    field: str = "val_accuracy"
    higher_is_better: bool = True
    top1: bool = True

    @classmethod
    def of(cls, metric) -> "Quality":
        """The quality of a `kprune.methods.metric.Metric` (None: top-1 accuracy)."""
        if metric is None:
            return cls()
        return cls(metric.key, metric.higher_is_better, metric.is_top1)

    @property
    def name(self) -> str:
        return self.field[4:] if self.field.startswith("val_") else self.field

    def value(self, entry: RoundEntry) -> Optional[float]:
        if self.field in ("val_accuracy",):
            return entry.val_accuracy
        return entry.info.get(self.field)

    def set(self, entry: RoundEntry, value: Optional[float]):
        """Record `value` in `entry` (``val_accuracy`` for the top-1 default)."""
        if self.field == "val_accuracy":
            entry.val_accuracy = value
        else:
            entry.info[self.field] = value

    def loss(self, baseline: RoundEntry, entry: RoundEntry, relative: bool = False) -> float:
        """How much worse `entry` is than `baseline` (positive: worse); with
        `relative`, as a fraction of the baseline's magnitude."""
        b, v = self.value(baseline), self.value(entry)
        d = (b - v) if self.higher_is_better else (v - b)
        return d / max(abs(b), _EPS) if relative else d

    def describe_loss(self, loss: float, relative: bool = False) -> str:
        """A loss in words: points of accuracy, % of the baseline, or units."""
        if relative:
            return f"{100 * loss:.2f}% of the baseline validation {self.name}"
        if self.top1:
            return f"{100 * loss:.2f} points of validation {self.name}"
        return f"{loss:.6g} of validation {self.name}"


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
    return int(math.ceil(accuracy * (1.0 - accuracy) * (NOISE_Z / max(loss, _EPS)) ** 2))


def bisect(make: Callable, low: float, high: float, above: Callable, steps: int = 12):
    """Bisect a knob in (low, high] whose candidates ``make(value)`` cross a
    monotone predicate: ``above(candidate)`` is False below a boundary and
    True from it (a candidate whose ``model`` is None counts as below).
    Returns ``(below, above)``: the largest ``(value, candidate)`` found below
    the boundary (or None) and the smallest found above it (or None).

    Example:
        >>> class C:  # a candidate whose size is its knob value
        ...     def __init__(self, v): self.model, self.v = object(), v
        >>> lo, hi = bisect(C, 0.0, 1.0, lambda c: c.v >= 0.3, steps=20)
        >>> round(hi[0], 3), round(lo[0], 3)
        (0.3, 0.3)
    """
    lo, hi, below, over = low, high, None, None
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        cand = make(mid)
        if cand.model is not None and above(cand):
            hi, over = mid, (mid, cand)
        else:
            lo = mid
            if cand.model is not None:
                below = (mid, cand)
    return below, over


class Goal:
    """The run's target judged against its baseline (round 0), with the
    device budget (a `kprune.methods.device_budget.DeviceBudget`) that
    prices budget targets. ``baseline`` is set when round 0 is recorded."""

    def __init__(self, target: Optional[Target], budget=None, quality: Quality = Quality()):
        # quality: the run's metric (`Quality.of(metric)`), which every
        # quality target is a loss on
        self.target, self.budget, self.quality = target, budget, quality
        self.baseline: Optional[RoundEntry] = None

    @property
    def kind(self) -> Optional[str]:
        return self.target.kind if self.target else None

    @property
    def is_size(self) -> bool:
        """A reduction or device-budget target (reached by removing enough)."""
        return self.target is not None and not self.target.is_accuracy

    def reduction(self, entry: RoundEntry, kind: Optional[str] = None) -> float:
        """1 - params (MACs for ``macs_reduction``) of `entry` / the baseline's."""
        kind = kind or self.kind
        key = "macs" if kind == "macs_reduction" else "params"
        return 1.0 - getattr(entry, key) / max(getattr(self.baseline, key), 1)

    def meets(self, entry: RoundEntry) -> bool:
        """Quality loss within the allowed one; reduction reached; device
        estimate (``entry.info[kind]``) within the budget."""
        if self.target is None:
            return True
        kind, value = self.target
        if self.target.is_accuracy:
            return self.quality_loss(entry) <= value + _EPS
        if self.target.is_budget:
            return self.budget.met(entry.info[kind])
        return self.reduction(entry) >= value - _EPS

    def quality_loss(self, entry: RoundEntry) -> float:
        """How much worse `entry`'s metric is than the baseline's, in the
        target's terms (absolute, or relative for ``metric_loss_relative``)."""
        relative = self.target is not None and self.target.is_relative
        return self.quality.loss(self.baseline, entry, relative)

    def describe_loss(self, loss: float) -> str:
        relative = self.target is not None and self.target.is_relative
        return self.quality.describe_loss(loss, relative)

    def size_progress(self, model, tolerance: float = 0.0):
        """For size targets: (reaches, overshoots) of a candidate `model`:
        whether it meets the target, and whether it goes beyond it by more
        than `tolerance` (reductions) or below the budget's ``low`` end
        (device budgets: 0.9 x the budget)."""
        if self.target.is_budget:
            v = float(self.budget.estimate(model))
            return self.budget.met(v), v < self.budget.low
        red = self.model_reduction(model)
        value = self.target.value
        return red >= value - _EPS, red > value + tolerance + _EPS

    def model_reduction(self, model) -> float:
        """The reduction (parameters, or MACs for ``macs_reduction``) of `model`."""
        m = model_size(model)
        return self.reduction(RoundEntry(0, "accepted", params=m["params"], macs=m["macs"]))

    def land(self, make: Callable, low: float, high: float, candidate,
             tolerance: float = 0.0, steps: int = 12, finer: Optional[Callable] = None):
        """Trim a size-target round that overshoots: the smallest knob value
        in (low, high] (AIAP's threshold, ILP/IAP's rate) whose candidate
        ``make(value)`` still reaches the target. A candidate that does not
        overshoot is kept. `finer`: a second candidate family over the same
        knob whose least step is smaller (ILP's rate without the one unit per
        group); for a reduction target both are bisected and the candidate
        that removes less is kept. Returns (value, candidate)."""
        reaches, overshoots = self.size_progress(candidate.model, tolerance)
        if not (reaches and overshoots):
            return high, candidate

        def above(c):
            return self.size_progress(c.model, tolerance)[0]

        _, over = bisect(make, low, high, above, steps)
        if finer is not None and not self.target.is_budget:
            _, alt = bisect(finer, low, high, above, steps)
            if alt is not None and (over is None or self.model_reduction(alt[1].model)
                                    < self.model_reduction(over[1].model) - _EPS):
                over = alt
        return over or (high, candidate)

    def reached(self, best: Optional[RoundEntry]) -> bool:
        """Whether the round to return (`best`) reached the target (a device
        budget: as measured on the runtime when it was)."""
        if self.target is None:
            return True
        if best is None:
            return False
        if self.target.is_accuracy:
            return bool(best.feasible)
        if self.target.is_budget:
            kind = self.target.kind
            return self.budget.met(best.info.get(f"{kind}_measured", best.info[kind]))
        return self.reduction(best) >= self.target.value - _EPS

    def reason(self, why: str, best: Optional[RoundEntry]) -> str:
        """`why` the run stopped, with "target not reached" (and a
        RuntimeWarning) when a size target was missed by `best`."""
        if not self.is_size or best is None or self.reached(best):
            return why
        kind, value = self.target
        got = (best.info.get(kind) if self.target.is_budget else self.reduction(best))
        msg = (f"{why}; target {kind}={value:.6g} not reached (best: {got:.6g} at round "
               f"{best.round}); returning the most reduced model")
        warnings.warn("kprune: " + msg, RuntimeWarning, stacklevel=3)
        return msg

    def warn_if_noisy(self, acc: float, n_val: int):
        """An accuracy target finer than the validation set can measure: warn
        (every round's accept / reject would then be decided by chance)."""
        if self.target is None or not self.target.is_accuracy or not self.quality.top1 \
                or self.target.is_relative or not n_val:
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
            RuntimeWarning, stacklevel=3)
