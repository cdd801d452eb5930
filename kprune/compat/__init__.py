"""Everything that differs between Keras / TensorFlow versions, in one package.

kprune's compat story has three parts, and all live here, below every other
layer (`kprune.core` and up may import `kprune.compat`; it imports nothing
else from kprune):

- `kprune.compat.keras_private`: the only module that touches Keras or
  TensorFlow private API (``keras.src``, ``tensorflow.python``, node
  internals). Each helper has a public fallback, so a release that moves a
  private symbol degrades one feature instead of breaking kprune.
  ``tests/test_layering.py`` fails on private API anywhere else.
- `kprune.compat.backend`: what differs between the Keras backends
  (TensorFlow, JAX, PyTorch): gradients from each backend's autodiff,
  compiled forward passes, ``keras.distribution`` / ``tf.distribute`` checks,
  torch DataLoaders. The only module that imports ``jax`` or ``torch``.
- `kprune.compat.tf_keras_bridge`: the Keras 3 <-> tf_keras (Keras 2) model
  bridge, used by the QAT export (tfmot needs tf_keras models) and by
  `kprune.prune` when it is handed a tf_keras model.

This namespace re-exports the bridge's public names:

Example:
    >>> m2 = kprune.compat.to_tf_keras(keras3_model)    # a tf_keras.Model
    >>> back = kprune.compat.from_tf_keras(m2)          # a keras.Model again

The old module paths `kprune.core.tf_keras` and `kprune.core._keras_compat`
are aliases of the two modules here (the same module objects) and will be
removed in a later release.
"""

from kprune.compat.tf_keras_bridge import (UnsupportedLayerError, compile_like,  # noqa: F401
                                           from_tf_keras, is_tf_keras, keras3_of, to_tf_keras)

__all__ = ["UnsupportedLayerError", "from_tf_keras", "is_tf_keras", "compile_like", "keras3_of",
           "to_tf_keras"]
