"""IAP: iterative activation-based pruning."""

from kprune.methods.context import PruneContext
from kprune.methods.iterative import run_iterative
from kprune.methods.registry import register_method


@register_method("iap")
def iap(ctx: PruneContext):
    """Per round, remove in every group the units whose post-activation score
    (mean over positions of (mean over samples of A) ** p, recorded on
    calibration data or during fit) is at or below the ``rate`` percentile,
    then retrain. ``criterion='apoz'`` or a callable selects another score.

    Example:
        >>> kprune.prune(model, "iap", train_data=(x, y), val_data=(xv, yv), p=1)
    """
    return run_iterative(ctx)


iap.default_criterion = "mean_activation"
