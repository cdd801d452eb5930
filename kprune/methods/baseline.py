"""The baseline of a run: optional pretraining (``pretrain_epochs``) and
the weight-rewinding reference (``retrain='weight_rewind'``).

Example:
    >>> stats, rewind = prepare_baseline(trainer, model, config.options,
    ...                                  config.method_options)
"""

import keras
import numpy as np


def prepare_baseline(trainer, model, common, method_opts, record_groups=None):
    """Pretrain `model` in place for ``common.pretrain_epochs`` (recording
    the activations of `record_groups`) and build the rewinding reference.
    Returns (activation statistics or None, rewind model or None)."""
    retrain = getattr(method_opts, "retrain", "lr_rewind")
    rewind_weights = getattr(method_opts, "rewind_weights", None)
    stats = None
    trainer.seed(0)
    if common.pretrain_epochs:
        k = int(getattr(method_opts, "rewind_epoch", 1))
        cbs, holder = [], {}
        if retrain == "weight_rewind" and rewind_weights is None:
            class _Grab(keras.callbacks.Callback):
                def on_epoch_end(cb, epoch, logs=None):  # noqa: N805
                    if epoch + 1 == k:
                        holder["w"] = [np.array(w) for w in model.get_weights()]

            cbs.append(_Grab())
        out = trainer.fit(model, int(common.pretrain_epochs), record_groups=record_groups,
                          callbacks=cbs)
        if out.nan:
            raise FloatingPointError("the baseline training (pretrain_epochs) produced a "
                                     "NaN loss; lower the learning rate")
        stats = out.stats
        if cbs:
            rewind_weights = holder["w"]
    if retrain != "weight_rewind":
        return stats, None
    rw = keras.models.clone_model(model)
    weights = (rewind_weights.get_weights() if isinstance(rewind_weights, keras.Model)
               else rewind_weights)
    try:
        rw.set_weights(weights)
    except (ValueError, TypeError) as e:
        raise ValueError(f"rewind_weights do not fit the model '{model.name}' ({e}); pass "
                         "the list model.get_weights() of the same architecture, or a model "
                         "of it") from None
    return stats, rw


def run_baseline(run):
    """Round 0 of `run` (a `kprune.methods.run.Run`): check that a device
    budget is reachable, pretrain (``pretrain_epochs``), evaluate the run's
    metric on the validation data and measure the model. Returns the
    baseline's ``(RoundEntry, Proposal)`` for ``run.commit``.

    Raises FloatingPointError when the baseline outputs NaN/inf, and the
    metric's own error when a user metric cannot judge the model.
    """
    import math
    import time

    from kprune.methods.goal import validation_standard_error
    from kprune.methods.metric import check_value
    from kprune.methods.proposer import Proposal
    from kprune.methods.state import RoundStatus

    t0, model = time.time(), run.record.original
    run.meter.check_reachable(model, run.opts.min_channels, run.opts.ignored_layers)
    groups = run.proposer.record_groups(model) if run.proposer else None
    if run.opts.pretrain_epochs and not run.metric.is_top1:
        # a metric that cannot judge the model fails before any training
        check_value(run.metric, run.metric.evaluate(model, run.data.val)[0])
    stats, rewind = prepare_baseline(run.trainer, model, run.opts,
                                     run.method_options, groups)
    acc, n_val = run.metric.evaluate(model, run.data.val)
    if not math.isfinite(acc):
        if not run.metric.is_top1:
            check_value(run.metric, acc)
        raise FloatingPointError("the baseline model outputs NaN/inf on val_data; check "
                                 "the model's weights and the validation inputs")
    run.goal.warn_if_noisy(acc, n_val)
    info = {"val_samples": n_val}
    if run.metric.is_top1:
        info["val_standard_error"] = validation_standard_error(acc, n_val)
    entry = run.meter.entry(0, RoundStatus.BASELINE, model, feasible=True, info=info)
    run.goal.quality.set(entry, acc)
    entry.time_s = time.time() - t0
    run.goal.baseline = entry
    return entry, Proposal(model, {}, {}, rewind, stats)
