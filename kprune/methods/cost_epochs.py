"""``epochs_per_cost``: retraining in proportion to what a round removes.

A round that removes a fraction f of the current model's cost retrains
``max(epochs, round(epochs_per_cost * f))`` epochs instead of ``epochs``.
The cost is MACs when the run prices MACs or latency (a ``macs_reduction``
or latency target with the default ``cost='auto'``, or ``cost='macs'`` /
``'latency'``), else parameters. On LeNet-5 a MAC target's rounds are very
uneven: past 4x one round takes conv1 from 2 channels to 1, about half of
the MACs, while most rounds remove a few percent; this gives that round the
retraining its size asks for and leaves the small ones at ``epochs``.

Example:
    >>> kprune.prune(model, "aiap", train_data=(x, y), val_data=(xv, yv),
    ...              target={"macs_reduction": 0.83}, epochs=1, epochs_per_cost=8)
    >>> # a round removing 47 % of the MACs retrains 4 epochs, one removing 5 %: 1
"""

from typing import Dict, Optional, Tuple

from kprune.core.profile import model_size


def cost_key(cost: Optional[str], target=None) -> str:
    """'macs' or 'params': what `epochs_for_round` measures the removed
    fraction in (`cost` is the resolved ``cost=`` option).

    Example:
        >>> cost_key(None, Target("macs_reduction", 0.5)), cost_key(None, None)
        ('macs', 'params')
    """
    kind = getattr(target, "kind", None)
    if cost in ("macs", "latency") or (cost is None and kind in ("macs_reduction",
                                                                 "latency_ms")):
        return "macs"
    return "params"


def epochs_for_round(epochs: int, per_cost: Optional[float], key: str, before,
                     after) -> Tuple[int, Dict]:
    """(epochs, info) of the round that turns model `before` into `after`:
    `epochs` when `per_cost` is None, else ``max(epochs, round(per_cost * f))``
    with f the removed fraction of `key` ('macs' / 'params'). The info
    (``epochs``, ``removed_cost_fraction``) goes into the round's entry."""
    if per_cost is None:
        return int(epochs), {}
    first = max(model_size(before)[key], 1)
    fraction = max(0.0, 1.0 - model_size(after)[key] / first)
    n = max(int(epochs), int(round(float(per_cost) * fraction)))
    return n, {"epochs": n, "removed_cost_fraction": fraction}
