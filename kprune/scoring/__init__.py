"""Scoring: which channels matter. Criteria (`Criterion` classes resolvable
from strings) and the activation recording they feed on.

Example:
    >>> crit = kprune.scoring.get_criterion("attention", p=3)
    >>> scores = kprune.scoring.score_groups(model, crit, data=x_calibration)
"""

from kprune.scoring.criteria import (APoZ, Attention, Criterion, FunctionCriterion, L1Norm,
                                     L2Norm, MeanActivation, Taylor, get_criterion,
                                     score_groups, taylor_scores)

__all__ = ["APoZ", "Attention", "Criterion", "FunctionCriterion", "L1Norm", "L2Norm",
           "MeanActivation", "Taylor", "get_criterion", "score_groups", "taylor_scores"]
