"""Shape values in a composite's trace (`kprune.core.shape_ops`): the
temporary replacements of keras.ops.shape / arange act only in the thread
that traces."""

import threading

import keras
import numpy as np

from kprune.core.shape_ops import Positions, SymbolicDim, traced_shapes


def test_replacements_act_only_in_the_tracing_thread_and_are_undone():
    original_shape, original_arange = keras.ops.shape, keras.ops.arange
    x = keras.KerasTensor((None, None, 4))
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def tracer():
        with traced_shapes():
            with traced_shapes():  # nested in one thread
                seen["nested"] = keras.ops.shape(x)
            seen["tracer"] = keras.ops.shape(x)
            seen["positions"] = keras.ops.arange(keras.ops.shape(x)[1])
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=tracer)
    thread.start()
    assert inside.wait(30)
    try:
        # another thread while the tracer is inside: the functions are
        # replaced, but act as Keras' own here
        assert keras.ops.shape is not original_shape
        assert keras.ops.shape(x) == (None, None, 4)
        np.testing.assert_array_equal(keras.ops.arange(3), [0, 1, 2])
    finally:
        release.set()
        thread.join(30)
    assert isinstance(seen["tracer"][1], SymbolicDim) and seen["tracer"][2] == 4
    assert isinstance(seen["nested"][0], SymbolicDim)
    assert isinstance(seen["positions"]._keras_history[0], Positions)
    assert keras.ops.shape is original_shape and keras.ops.arange is original_arange
