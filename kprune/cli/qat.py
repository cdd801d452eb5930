"""``--qat_epochs N`` (``--qat-epochs N``) for ``kprune export`` and
``kprune bench``: quantization-aware fine-tuning before int8 conversion."""

from absl import flags, logging

from kprune.cli.common import CommandError

#: Used when the model file carries no compile config.
DEFAULT_LEARNING_RATE = 1e-4


def define_flags(fv):
    flags.DEFINE_integer("qat_epochs", 0, "quantization-aware training (tfmot) epochs on "
                         "--data before int8 conversion; 0 = post-training int8",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("qat_batch_size", 64, "QAT batch size", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("qat_samples", 0, "QAT on the first N training samples "
                         "(0 = all)", lower_bound=0, flag_values=fv)


def maybe_quantize_aware(model, fv, data):
    """`model` itself when --qat_epochs is 0, else its QAT-fine-tuned version.

    The model file's compile config (loss, metrics, optimizer class) is reused;
    a model saved uncompiled is compiled with Adam(1e-4),
    sparse categorical cross-entropy (from logits unless the last layer is a
    softmax) and accuracy.
    """
    if not fv.qat_epochs:
        return model
    if data is None or data.get("train") is None:
        raise CommandError("--qat_epochs needs training data: pass --data (fashion_mnist "
                           "or a .npz with x_train and y_train)")
    from kprune.export import QATError, quantize_aware
    from kprune.compat.tf_keras_bridge import UnsupportedLayerError
    try:
        qat = quantize_aware(model)
    except (QATError, UnsupportedLayerError, ImportError) as e:
        raise CommandError(f"--qat_epochs: {e}") from e
    if not getattr(qat, "optimizer", None):
        import tf_keras
        softmax = getattr(model.layers[-1], "activation", None)
        from_logits = getattr(softmax, "__name__", "") != "softmax"
        qat.compile(optimizer=tf_keras.optimizers.Adam(DEFAULT_LEARNING_RATE),
                    loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                    metrics=["accuracy"])
        logging.info("the model file is not compiled: QAT uses Adam(%g), sparse categorical "
                     "cross-entropy (from_logits=%s)", DEFAULT_LEARNING_RATE, from_logits)
    x, y = data["train"]
    if fv.qat_samples:
        x, y = x[:fv.qat_samples], y[:fv.qat_samples]
    logging.info("quantization-aware training: %d epoch(s) on %d samples", fv.qat_epochs,
                 len(x))
    qat.fit(x, y, epochs=fv.qat_epochs, batch_size=fv.qat_batch_size,
            validation_data=data.get("val"), verbose=0)
    return qat
