"""Combining a group's member layers' per-unit values into one score per unit.

Example:
    >>> aggregate_members([np.array([1., 2.]), np.array([3., np.nan])], "sum")
    array([4., 2.])
"""

from typing import List

import numpy as np

#: Built-in aggregations of member scores.
AGGREGATES = ("sum", "mean", "max")


def aggregate_members(members: List[np.ndarray], aggregate="sum") -> np.ndarray:
    """Combine per-member score arrays (NaN = member lacks that unit)."""
    if callable(aggregate):
        return np.asarray(aggregate(members), dtype=np.float64)
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES} or a callable, got {aggregate!r}")
    stack = np.vstack([np.asarray(m, dtype=np.float64) for m in members])
    if aggregate == "sum":
        return np.nansum(stack, axis=0)
    if aggregate == "mean":
        n = np.sum(~np.isnan(stack), axis=0)
        return np.where(n > 0, np.nansum(stack, axis=0) / np.maximum(n, 1), 0.0)
    out = np.where(np.all(np.isnan(stack), axis=0), 0.0,
                   np.nanmax(np.where(np.isnan(stack), -np.inf, stack), axis=0))
    return out
