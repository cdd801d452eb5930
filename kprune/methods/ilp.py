"""ILP: iterative L1-norm filter pruning (the baseline of the spec)."""

import dataclasses

from kprune.methods.iterative import IterativeOptions, run_iterative
from kprune.methods.registry import register_method


@dataclasses.dataclass(frozen=True)
class ILPOptions(IterativeOptions):
    """ILP's options: `IterativeOptions` with its defaults
    (criterion 'l1', allocation 'layer')."""

    default_criterion = "l1"
    default_allocation = "layer"


@register_method("ilp", options=ILPOptions)
def ilp(run):
    """Per round, remove in every group the units whose filter L1 norm
    (``criterion='l2'`` for L2) is at or below the ``rate`` percentile, then
    retrain.

    Example:
        >>> kprune.prune(model, "ilp", train_data=(x, y), val_data=(xv, yv), rounds=5)
    """
    return run_iterative(run)

