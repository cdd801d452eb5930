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
