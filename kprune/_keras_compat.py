"""The one place kprune touches TensorFlow / Keras private API.

Everything here has a public fallback, so a TensorFlow or Keras release that
moves a private symbol degrades a feature instead of breaking kprune.
"""

import contextlib


def _determinism_module():
    try:
        from tensorflow.python.framework import config as tf_config
    except ImportError:  # pragma: no cover - private path moved
        return None
    if hasattr(tf_config, "is_op_determinism_enabled") and hasattr(
            tf_config, "disable_op_determinism"):
        return tf_config
    return None  # pragma: no cover


@contextlib.contextmanager
def op_determinism(enabled: bool = True):
    """Turn TensorFlow op determinism on for the ``with`` block only.

    ``tf.config.experimental.enable_op_determinism`` is process-wide and has
    no public off switch; a pruning run must not leave it on for the user's
    own training afterwards, so the previous state is restored on exit.

    Example:
        >>> with op_determinism():
        ...     model.fit(x, y)          # deterministic kernels
        >>> model.fit(x, y)              # back to the user's setting
    """
    if not enabled:
        yield
        return
    import tensorflow as tf

    mod = _determinism_module()
    was = mod.is_op_determinism_enabled() if mod is not None else None
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if mod is not None and not was:
            mod.disable_op_determinism()


def model_classes(model):
    """{name: class} of the model's own (non-Keras) layer classes, nested
    models included, so that custom layers that were never registered still
    deserialize: the user's classes are already imported in this process."""
    classes = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        cls = type(layer)
        if cls.__module__.startswith("keras."):
            continue
        classes[cls.__name__] = cls
        import keras

        classes[keras.saving.get_registered_name(cls)] = cls
    return classes


def has_lambda(model) -> bool:
    """True when `model` (or a nested model) holds a ``keras.layers.Lambda``."""
    import keras

    return any(isinstance(layer, keras.layers.Lambda)
               for layer in model._flatten_layers(include_self=False, recursive=True))


class _DropRetracing:
    """logging filter: drops TensorFlow's "triggered tf.function retracing" warning."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def quiet_retracing():
    """Silence TensorFlow's retracing warning for the ``with`` block only.

    Every pruning round builds a new (smaller) model, whose first
    ``predict`` traces a new function by design; TensorFlow then warns about
    "excessive retracing" once per round. The user's own code after the block
    keeps the warning.

    Example:
        >>> with quiet_retracing():
        ...     for m in pruned_models:
        ...         m.predict(x)
    """
    import tensorflow as tf

    logger = tf.get_logger()
    f = _DropRetracing()
    logger.addFilter(f)
    try:
        yield
    finally:
        logger.removeFilter(f)
