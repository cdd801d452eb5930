"""Where a run's time goes: seconds per phase (`Phases`).

The run times its phases (``scoring``, ``rebuild``: the channel surgery,
``training``: retraining, less ``tracing``: the estimated time its train
step took to trace (each ``fit``'s first step above the median step),
``bn_recalibration``: BatchNorm re-estimation after retraining, ``evaluation``,
``measurement``: sizes and device-budget estimates, ``checkpoint``: writes
under ``out_dir``); every round's history entry carries the seconds spent
since the previous entry in ``phase_s``, and `Phases.totals` sums the run.

Example:
    >>> phases = Phases()
    >>> with phases("scoring"):
    ...     pass
    >>> sorted(phases.take())
    ['scoring']
"""

import contextlib
import time
from typing import Dict


class Phases:
    """Accumulates wall seconds per phase name; `take` returns and clears
    those since the last `take`, `totals` all of them."""

    def __init__(self):
        self._since: Dict[str, float] = {}
        self._total: Dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float):
        self._since[name] = self._since.get(name, 0.0) + float(seconds)
        self._total[name] = self._total.get(name, 0.0) + float(seconds)

    def take(self) -> Dict[str, float]:
        out, self._since = self._since, {}
        return {k: round(v, 6) for k, v in out.items()}

    def totals(self) -> Dict[str, float]:
        return {k: round(v, 6) for k, v in self._total.items()}


def timed(phases, name: str):
    """``phases(name)``, or a no-op context when `phases` is None."""
    return phases(name) if phases is not None else contextlib.nullcontext()
