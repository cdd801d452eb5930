"""The final fine-tuning of the model to return (``finetune_epochs``).

Recorded as a round of status FINETUNED (its epochs count in the budget); a
fine-tuning that loses the accuracy target is recorded but not returned.

Example:
    >>> kprune.prune(model, "iap", train_data=(x, y), finetune_epochs=3)
"""

import time
import warnings

import keras

from kprune.methods.proposer import Proposal
from kprune.methods.state import RoundStatus


def finetune(run):
    """``finetune_epochs``: train the model to return once more and record
    it as a round of status FINETUNED (its epochs count in the budget)."""
    n, best = int(run.opts.finetune_epochs), run.record.best_round
    if n <= 0 or best == 0 or any(e.status is RoundStatus.FINETUNED
                                  for e in run.record.history):
        return
    t0, r = time.time(), run.record.next_round
    run.trainer.seed(r)
    src = run.record.model_of_round(best)
    model = keras.models.clone_model(src)
    model.set_weights(src.get_weights())
    run.trainer.recompile(model)
    out = run.trainer.fit(model, n)
    if out.nan:
        warnings.warn("kprune: the final fine-tuning produced NaN; returning the "
                      "model before it", RuntimeWarning, stacklevel=2)
        return
    if run.opts.bn_recalibration:
        from kprune.methods.trainer import recalibrate_batchnorm

        recalibrate_batchnorm(model, run.data.calibration)
    entry = run.meter.entry(r, RoundStatus.FINETUNED, model,
                            info={"from_round": best, "epochs": n})
    run.judge(entry, run.evaluate(model))
    entry.time_s = time.time() - t0
    if entry.status is RoundStatus.FINETUNED:
        keep = entry.feasible or not run.goal.target or run.goal.is_size
        run.commit(entry, Proposal(model, {}, {}), accept=True, best=keep)
