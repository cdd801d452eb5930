"""Keras 3 <-> tf_keras (Keras 2) bridge: the public namespace of
`kprune.core.tf_keras`.

Example:
    >>> m2 = kprune.compat.to_tf_keras(keras3_model)    # a tf_keras.Model
    >>> back = kprune.compat.from_tf_keras(m2)          # a keras.Model again
"""

from kprune.core.tf_keras import (UnsupportedLayerError, from_tf_keras, is_tf_keras,  # noqa: F401
                                  compile_like, keras3_of, to_tf_keras)

__all__ = ["UnsupportedLayerError", "from_tf_keras", "is_tf_keras", "compile_like", "keras3_of", "to_tf_keras"]
