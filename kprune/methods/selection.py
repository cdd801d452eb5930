"""Which units of a group to remove: the per-round rules and their limits.

Rules produce a *candidate* mask (percentile rule for ILP/IAP, threshold rule
for AIAP); `limit_removal` then applies ``min_channels``, the per-layer
``max_fraction`` of the original width and ``round_to``, and picks the
lowest-scoring units (ties broken by a seeded permutation).
"""

import math
from typing import Sequence, Optional

import numpy as np


def percentile_candidates(scores: np.ndarray, rate: float, rng=None,
                          at_least_one: bool = True) -> np.ndarray:
    """The ``round(rate * n)`` lowest-scoring units (at least one when rate > 0,
    unless ``at_least_one=False``: then a small group may lose none, which is
    how a size target's last round lands between whole-group steps).

    The paper's rule removes the units at or below the `rate`-th percentile;
    with tied scores (dead units all score 0) that removed every tied unit, so
    `rate` was a floor, not a cap. kprune removes exactly ``round(rate * n)``
    units, ties broken in index order or by a permutation from `rng`.

    Example:
        >>> percentile_candidates(np.array([3., 1., 2., 5.]), 0.25)
        array([False,  True, False, False])
        >>> int(percentile_candidates(np.zeros(8), 0.25).sum())   # ties: still 2 of 8
        2
        >>> int(percentile_candidates(np.zeros(2), 0.2, at_least_one=False).sum())
        0
    """
    n = len(scores)
    if rate <= 0 or n == 0:
        return np.zeros(n, bool)
    if rate >= 1:
        return np.ones(n, bool)
    return lowest_k(scores, _round_count(rate, n, 1 if at_least_one else 0), rng)


def _round_count(rate: float, n: int, minimum: int = 1) -> int:
    """``round(rate * n)`` units (half up), at least `minimum` and at most n."""
    return min(n, max(minimum, int(np.floor(rate * n + 0.5)))) if n else 0


def lowest_k(scores: np.ndarray, k: int, rng=None) -> np.ndarray:
    """Mask of the `k` lowest scores (ties in index order, or seeded by `rng`)."""
    n = len(scores)
    tie = rng.permutation(n) if rng is not None else np.arange(n)
    order = np.lexsort((tie, np.asarray(scores, dtype=np.float64)))
    mask = np.zeros(n, bool)
    mask[order[:max(0, min(int(k), n))]] = True
    return mask


def round_cap(n: int, max_round_fraction: float) -> int:
    """The most units a group of `n` may lose in one round under
    ``max_round_fraction``: ``ceil(max_round_fraction * n)``, at least one."""
    return max(1, int(np.ceil(float(max_round_fraction) * n - 1e-9)))


def cap_candidates(scores: np.ndarray, candidates: np.ndarray, max_round_fraction) -> np.ndarray:
    """Keep at most ``ceil(max_round_fraction * n)`` candidates (the lowest
    scores): the per-round cap on how much one group may lose.

    Example:
        >>> int(cap_candidates(np.arange(10.), np.ones(10, bool), 0.3).sum())
        3
    """
    if max_round_fraction is None:
        return candidates
    k = round_cap(len(scores), max_round_fraction)
    if int(np.sum(candidates)) <= k:
        return candidates
    masked = np.where(candidates, np.asarray(scores, dtype=np.float64), np.inf)
    return lowest_k(masked, k) & candidates


def eligible(scores_by_group, room=None):
    """{group: mask} of the units a global ranking may take: in each group
    the ``room[group]`` lowest-scoring ones (what its limits still allow it to
    lose, see `Proposer.room`), every unit without `room`. A group already at
    its floor offers none, so a global rate is spent on groups that can still
    shrink instead of on units the limits would refuse.

    Example:
        >>> [m.tolist() for m in eligible({0: np.array([2., 1., 3.])}, {0: 1}).values()]
        [[False, True, False]]
    """
    out = {}
    for k, s in scores_by_group.items():
        s = np.asarray(s, dtype=np.float64)
        out[k] = (np.ones(len(s), bool) if room is None or k not in room
                  else lowest_k(s, max(0, int(room[k]))))
    return out


def _per_group(mask, keys, arrays):
    """A mask over the concatenation of `arrays` -> {key: its slice}."""
    out, start = {}, 0
    for k, a in zip(keys, arrays):
        out[k] = mask[start:start + len(a)]
        start += len(a)
    return out


def global_candidates(scores_by_group, rate: float, normalize=True, room=None):
    """Global ranking: {group: mask} of the ``round(rate * N)`` lowest units
    over all groups (N = all units), each group's scores divided by their
    mean first when `normalize` (so one scale fits all layers). With `room`
    ({group: units it may still lose}) only the `eligible` units are ranked.

    Example:
        >>> m = global_candidates({0: np.array([1., 3.]), 1: np.array([.1, 3., 2.9])}, 0.4)
        >>> [int(m[0].sum()), int(m[1].sum())]
        [1, 1]
        >>> m = global_candidates({0: np.array([1., 3.]), 1: np.array([.1, 3., 2.9])}, 0.4,
        ...                       room={0: 0, 1: 3})    # group 0 at its floor
        >>> [int(m[0].sum()), int(m[1].sum())]
        [0, 2]
    """
    keys = list(scores_by_group)
    ok = eligible(scores_by_group, room)
    flat, allowed = [], []
    for k in keys:
        s = np.asarray(scores_by_group[k], dtype=np.float64)
        flat.append(normalized(s) if normalize else s)
        allowed.append(ok[k])
    allv = np.concatenate(flat) if flat else np.zeros(0)
    allowed = np.concatenate(allowed) if allowed else np.zeros(0, bool)
    n = len(allv)
    k_take = min(_round_count(rate, n), int(allowed.sum()))
    mask = lowest_k(np.where(allowed, allv, np.inf), k_take) & allowed
    return _per_group(mask, keys, flat)


def cost_candidates(scores_by_group, costs, rate: float, room=None, normalize=True):
    """Allocation by cost: {group: mask} of the units with the least
    importance per cost (each group's scores divided by their mean when
    `normalize`, then by the group's per-unit cost), taken in that order
    while they add up to at most a fraction `rate` of the total cost of all
    units (at least one unit when rate > 0). A unit that saves nothing
    (cost 0) is never taken, nor, with `room`, one its group's limits would
    refuse (see `eligible`).

    Normalizing puts every group's mean unit at 1, so the ranking across
    groups is the cost alone: the costliest group is taken nearly whole
    before any other (a ResNet's full-resolution residual stream, 16 -> 1
    channels in one round). Scores on one scale across groups (Taylor's
    loss-change estimates, ``Criterion.comparable``) keep that information
    with ``normalize=False``: importance per cost as in HALP.

    Example:
        >>> m = cost_candidates({0: np.array([1., 1.]), 1: np.array([1., 1., 1., 1.])},
        ...                     {0: 3.0, 1: 0.5}, 0.5)
        >>> [int(m[0].sum()), int(m[1].sum())]   # group 0's units save 6x more each
        [1, 0]
    """
    keys = list(scores_by_group)
    ok = eligible(scores_by_group, room)
    per_cost, unit_cost, allowed = [], [], []
    for k in keys:
        s = (normalized(scores_by_group[k]) if normalize
             else np.asarray(scores_by_group[k], dtype=np.float64))
        c = max(float(costs.get(k, 0.0)), 0.0)
        per_cost.append(s / c if c > 0 else np.full(len(s), np.inf))
        unit_cost.append(np.full(len(s), c))
        allowed.append(ok[k] & (c > 0))
    allv = np.concatenate(per_cost) if per_cost else np.zeros(0)
    allc = np.concatenate(unit_cost) if unit_cost else np.zeros(0)
    allowed = np.concatenate(allowed) if allowed else np.zeros(0, bool)
    mask = np.zeros(len(allv), bool)
    total = float(allc.sum())
    if rate > 0 and total > 0:
        order = np.lexsort((np.arange(len(allv)), allv))
        order = order[allowed[order]]
        taken = np.cumsum(allc[order])
        k = max(1, int(np.searchsorted(taken, rate * total + 1e-12, side="right")))
        mask[order[:min(k, len(order))]] = True
    return _per_group(mask, keys, per_cost)


def threshold_candidates(scores: np.ndarray, threshold: float) -> np.ndarray:
    """AIAP rule: units whose score, divided by the group's mean score, is <= threshold."""
    return normalized(scores) <= threshold


def normalized(scores) -> np.ndarray:
    """Scores divided by their mean (all zeros when the mean is not positive),
    so that one threshold or one ranking fits every layer."""
    s = np.asarray(scores, dtype=np.float64)
    mean = float(np.mean(s)) if len(s) else 0.0
    return s / mean if mean > 0 else np.zeros_like(s)


def keep_floor(original: int, min_channels: int = 1, max_fraction: Optional[float] = None,
               round_to: Optional[int] = None) -> int:
    """The fewest units a group may keep."""
    floor = max(1, int(min_channels))
    if max_fraction is not None:
        floor = max(floor, int(math.ceil(original * (1.0 - float(max_fraction)) - 1e-9)))
    if round_to:
        floor = int(math.ceil(floor / round_to)) * round_to
    return floor


def limit_removal(scores: np.ndarray, candidates: np.ndarray, original: int,
                  min_channels: int = 1, max_fraction: Optional[float] = None,
                  round_to: Optional[int] = None, rng=None,
                  steps: Optional[Sequence[int]] = None) -> np.ndarray:
    """Unit indices to remove, after applying the limits.

    * keeps at least ``min_channels`` and at least ``(1 - max_fraction)`` of
      the group's ``original`` width;
    * with ``round_to=N`` the kept count is a multiple of N: rounded to the
      nearest multiple, or down to the next lower one when rounding would
      cancel a non-empty removal (so pruning never stalls);
    * with ``steps`` (a group's measured latency step widths, the widest width
      of each latency level) the kept count is rounded the same way to a step
      width, or to the current width; below the narrowest step width no
      rounding (no step is known there);
    * removes the lowest scores first (ties in seeded random order).

    Example:
        >>> limit_removal(np.arange(16.), np.arange(16) < 3, 16, round_to=8)
        array([0, 1, 2, 3, 4, 5, 6, 7])
    """
    current = len(scores)
    wanted = int(np.sum(candidates))
    if wanted == 0:
        return np.zeros(0, np.int64)
    keep = current - wanted
    if round_to:
        k = int(round(keep / round_to)) * round_to
        if k >= current:
            k = ((current - 1) // round_to) * round_to
        keep = k
    if steps:
        levels = sorted({int(w) for w in steps if int(w) < current} | {current})
        if keep >= levels[0]:
            k = min(levels, key=lambda w: (abs(w - keep), -w))
            if k >= current:
                k = max(w for w in levels if w < current) if len(levels) > 1 else current
            keep = k
    keep = max(keep, keep_floor(original, min_channels, max_fraction, round_to))
    if keep >= current:
        return np.zeros(0, np.int64)
    n_remove = current - keep
    rng = rng if rng is not None else np.random.default_rng(0)
    perm = rng.permutation(current)
    # Candidates first, then by score, ties by the permutation.
    order = np.lexsort((perm, scores, ~candidates))
    return np.sort(order[:n_remove]).astype(np.int64)
