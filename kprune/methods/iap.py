"""IAP: iterative activation-based pruning."""

import dataclasses

from kprune.methods.iterative import IterativeOptions, run_iterative
from kprune.methods.registry import register_method


@dataclasses.dataclass(frozen=True)
class IAPOptions(IterativeOptions):
    """IAP's options: `IterativeOptions` with its defaults
    (criterion 'taylor', allocation 'global')."""

    default_criterion = "taylor"
    default_allocation = "global"


@register_method("iap", options=IAPOptions)
def iap(run):
    """Per round, score every unit from its activations, remove the weakest
    ``rate`` of them, then retrain.

    Default (**kprune decision, measured**, see BENCHMARKS.md "Pruning
    quality"): ``criterion='taylor'`` (first-order Taylor: |activation x
    gradient of the loss| on calibration data, Molchanov et al.) with
    ``allocation='global'`` (one ranking over all layers of scores divided by
    their layer's mean). On LeNet-5 / Fashion-MNIST the paper's rule (mean
    activation, the same rate in every layer) lost to L1 at every
    compression: the mean activation says how large a channel's output is,
    not how much the loss needs it, and a fixed per-layer rate cuts conv1's 6
    filters as fast as the Dense layers that hold 95% of the parameters.

    The paper's IAP: ``criterion='mean_activation', allocation='layer'``
    (``p`` = power of the attention map, ``criterion='apoz'`` also works).

    Example:
        >>> kprune.prune(model, "iap", train_data=(x, y), val_data=(xv, yv))
        >>> kprune.prune(model, "iap", train_data=(x, y), val_data=(xv, yv),  # the paper's
        ...              criterion="mean_activation", allocation="layer")
    """
    return run_iterative(run)

