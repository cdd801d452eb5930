"""ILP: iterative L1-norm filter pruning (the baseline of the spec)."""

from kprune.methods.iterative import run_iterative
from kprune.methods.registry import MethodDefaults, register_method


@register_method("ilp", defaults=MethodDefaults(criterion="l1", allocation="layer"))
def ilp(run):
    """Per round, remove in every group the units whose filter L1 norm
    (``criterion='l2'`` for L2) is at or below the ``rate`` percentile, then
    retrain.

    Example:
        >>> kprune.prune(model, "ilp", train_data=(x, y), val_data=(xv, yv), rounds=5)
    """
    return run_iterative(run)

