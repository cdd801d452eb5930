"""Float64 accumulators of per-channel activation statistics.

For each score point (a post-activation tensor of shape (N, ..., C)) we keep:

* ``position_sum``: sum over samples of A at every (..., c) position (float64);
  the sample mean per position is ``position_sum / count``. It gives the spec's
  ``mean over positions of (mean over samples of A) ** p`` for any p.
* ``zero_count``: per channel, how many of the ``count * positions`` values
  are <= 0 (APoZ numerator).
* ``count``: samples seen.
"""

import dataclasses
from typing import Dict, List

import numpy as np

from kprune.scoring.aggregate import aggregate_members


@dataclasses.dataclass
class PointStats:
    """Statistics of one score-point tensor."""

    path: str
    units: np.ndarray  # channel -> group unit (or -1)
    position_sum: np.ndarray  # float64, shape (..., C) without the batch axis
    zero_count: np.ndarray  # float64, shape (C,)
    count: int = 0
    has_apoz: bool = True

    @property
    def positions(self) -> int:
        return int(np.prod(self.position_sum.shape[:-1])) if self.position_sum.ndim > 1 else 1

    def add(self, position_sum, zero_count, count):
        self.position_sum += np.asarray(position_sum, dtype=np.float64)
        if zero_count is None:
            self.has_apoz = False
        else:
            self.zero_count += np.asarray(zero_count, dtype=np.float64)
        self.count += int(count)

    def channel_mean_power(self, p: float = 1.0) -> np.ndarray:
        """mean over positions of (mean over samples of A) ** p, per channel."""
        if self.count == 0:
            raise ValueError(f"no samples were recorded for '{self.path}'")
        m = self.position_sum / self.count
        if p != 1:
            m = np.power(np.maximum(m, 0.0) if p % 1 else m, p)
        axes = tuple(range(m.ndim - 1))
        return m.mean(axis=axes) if axes else m

    def channel_apoz(self) -> np.ndarray:
        """Fraction of values <= 0 per channel (Average Percentage of Zeros)."""
        if not self.has_apoz:
            raise ValueError(f"zero counts were not recorded for '{self.path}'; "
                             "record with apoz=True")
        if self.count == 0:
            raise ValueError(f"no samples were recorded for '{self.path}'")
        return self.zero_count / (self.count * self.positions)


class ActivationStats:
    """Statistics for every score point of every group, keyed by group index.

    Use `mean_power(group, p)` and `apoz(group)` to get per-unit scores of a
    group; member score points are aggregated with `aggregate`.

    Example:
        >>> stats.mean_power(group, p=2, aggregate="sum").shape == (group.channels,)
        True
    """

    def __init__(self, groups, points: Dict[int, List[PointStats]]):
        self.groups = list(groups)
        self.points = points

    @property
    def count(self) -> int:
        for plist in self.points.values():
            for p in plist:
                return p.count
        return 0

    def _per_unit(self, group, values_of, aggregate):

        members = []
        for ps in self.points.get(group.index, []):
            vals = values_of(ps)
            mask = ps.units >= 0
            unit_sum = np.zeros(group.channels, dtype=np.float64)
            unit_n = np.zeros(group.channels, dtype=np.float64)
            np.add.at(unit_sum, ps.units[mask], vals[mask])
            np.add.at(unit_n, ps.units[mask], 1.0)
            # A unit may appear on several channels of one tensor (concat of
            # one tensor twice): average them within the member.
            members.append(np.where(unit_n > 0, unit_sum / np.maximum(unit_n, 1), np.nan))
        if not members:
            raise ValueError(
                f"group '{group.name}' has no recorded activation tensors; "
                "use a weight-based criterion (l1/l2) for it")
        return aggregate_members(members, aggregate)

    def mean_power(self, group, p: float = 1.0, aggregate="sum") -> np.ndarray:
        """Per-unit activation score (spec IAP score, `p` = 1 mean, >1 attention)."""
        return self._per_unit(group, lambda ps: ps.channel_mean_power(p), aggregate)

    def apoz(self, group, aggregate="mean") -> np.ndarray:
        """Per-unit APoZ (fraction of zeros; higher = less important)."""
        return self._per_unit(group, lambda ps: ps.channel_apoz(), aggregate)

    def to_dict(self):
        return {str(g): [{"path": ps.path, "count": ps.count,
                          "mean": ps.channel_mean_power(1).tolist(),
                          "apoz": ps.channel_apoz().tolist() if ps.has_apoz else None}
                         for ps in plist]
                for g, plist in self.points.items()}
