"""Which units of a group to remove: the per-round rules and their limits.

Rules produce a *candidate* mask (percentile rule for ILP/IAP, threshold rule
for AIAP); `limit_removal` then applies ``min_channels``, the per-layer
``max_fraction`` of the original width and ``round_to``, and picks the
lowest-scoring units (ties broken by a seeded permutation).
"""

import math
from typing import Optional

import numpy as np


def percentile_candidates(scores: np.ndarray, rate: float) -> np.ndarray:
    """Units whose score is at or below the `rate`-th percentile (rate in [0, 1]).

    Example:
        >>> percentile_candidates(np.array([3., 1., 2., 5.]), 0.25)
        array([False,  True, False, False])
    """
    if rate <= 0 or len(scores) == 0:
        return np.zeros(len(scores), bool)
    if rate >= 1:
        return np.ones(len(scores), bool)
    return scores <= np.percentile(scores, rate * 100.0)


def threshold_candidates(scores: np.ndarray, threshold: float) -> np.ndarray:
    """AIAP rule: units whose score, divided by the group's mean score, is <= threshold."""
    mean = float(np.mean(scores)) if len(scores) else 0.0
    norm = scores / mean if mean > 0 else np.zeros_like(scores)
    return norm <= threshold


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
                  round_to: Optional[int] = None, rng=None) -> np.ndarray:
    """Unit indices to remove, after applying the limits.

    * keeps at least ``min_channels`` and at least ``(1 - max_fraction)`` of
      the group's ``original`` width;
    * with ``round_to=N`` the kept count is a multiple of N: rounded to the
      nearest multiple, or down to the next lower one when rounding would
      cancel a non-empty removal (so pruning never stalls);
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
    keep = max(keep, keep_floor(original, min_channels, max_fraction, round_to))
    if keep >= current:
        return np.zeros(0, np.int64)
    n_remove = current - keep
    rng = rng if rng is not None else np.random.default_rng(0)
    perm = rng.permutation(current)
    # Candidates first, then by score, ties by the permutation.
    order = np.lexsort((perm, scores, ~candidates))
    return np.sort(order[:n_remove]).astype(np.int64)
