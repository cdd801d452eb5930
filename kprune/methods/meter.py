"""The measurement of a run's models: size, and a device budget when the
target is one (`Meter`).

Every recorded round is measured the same way (`Meter.entry`): parameters,
MACs (batch 1) and widths, plus the budget's estimate (arena bytes or
milliseconds) in ``info``. Before any training a budget below what the
smallest prunable model needs is refused (`check_reachable`), and at the end
the model to return is measured on the real runtime (`verify`).

Example:
    >>> meter = Meter(Target("arena_bytes", 16384))
    >>> meter.entry(0, RoundStatus.BASELINE, model).info["arena_bytes"]
    10352.0
"""

import warnings
from typing import Optional

from kprune.core.profile import model_size
from kprune.methods.state import RoundEntry


class Meter:
    """Measures models for `target` (a `kprune.methods.goal.Target`); with a
    device-budget target it builds the `DeviceBudget` (``latency_fn`` /
    ``latency_quantization`` for latency budgets)."""

    def __init__(self, target=None, latency_fn=None, latency_quantization: Optional[str] = "int8"):
        self.budget = None
        if target is not None and target.is_budget:
            from kprune.methods.device_budget import DeviceBudget

            latency = target.kind == "latency_ms"
            self.budget = DeviceBudget(target.kind, target.value,
                                       latency_fn=latency_fn if latency else None,
                                       quantization=latency_quantization if latency else "int8")

    def entry(self, round_index, status, model, **fields) -> RoundEntry:
        """A `RoundEntry` of `model` (with a device budget: its estimate in ``info``)."""
        info = dict(fields.pop("info", None) or {})
        if self.budget is not None:
            info[self.budget.kind] = float(self.budget.estimate(model))
        return RoundEntry(round=round_index, status=status, info=info, **model_size(model),
                          **fields)

    def check_reachable(self, model, min_channels: int, ignored_layers):
        """A device budget below what the smallest prunable model needs fails
        before any training, naming that smallest value."""
        if self.budget is None:
            return
        from kprune.methods.device_budget import reachable_floor

        budget = self.budget
        floor = reachable_floor(budget, model, min_channels, ignored_layers)
        full = budget.estimate(model)
        if floor < full and not budget.met(floor):
            unit = "bytes" if budget.kind == "arena_bytes" else "ms"
            raise ValueError(
                f"target_{budget.kind}={budget.limit:.6g} cannot be reached: the smallest "
                f"reachable model (every prunable group at min_channels={min_channels}) "
                f"needs {floor:.6g} {unit} (the model: {full:.6g}); ask for at least "
                f"{floor:.6g}, or lower min_channels / ignored_layers")

    def verify(self, entry: RoundEntry, model):
        """Measure `model` (the one `entry` returns) on the real runtime
        (TFLite-Micro arena / timed latency) into ``entry.info['<kind>_measured']``;
        a miss is a RuntimeWarning."""
        if self.budget is None or entry is None:
            return
        measured = float(self.budget.measure(model))
        entry.info[f"{self.budget.kind}_measured"] = measured
        if not self.budget.met(measured):
            warnings.warn(f"kprune: the returned model measures {measured:.6g} "
                          f"{self.budget.kind} on the runtime, over the budget "
                          f"{self.budget.limit:.6g} (the estimate said "
                          f"{entry.info[self.budget.kind]:.6g})", RuntimeWarning, stacklevel=4)
