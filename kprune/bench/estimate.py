"""`arena_estimate`: the TFLite-Micro arena of a Keras model or a
flatbuffer, computed without the runtime (`kprune.runtime.arena.estimate`
after an int8 conversion for a Keras model).

Example:
    >>> kprune.bench.arena_estimate(kprune.zoo.lenet5())
    10352
"""

import warnings

from kprune.runtime.arena import TAIL_DEFAULT_OP, estimate


def arena_estimate(model_or_bytes, representative_data=None, detail: bool = False):
    """TFLite-Micro arena bytes of an int8 model, computed without the runtime.

    Args:
        model_or_bytes: TFLite flatbuffer bytes (as TFLM will load them), or a
            Keras model, converted first with
            ``kprune.export.to_tflite(model, 'int8', representative_data)``.
        representative_data: calibration inputs for a Keras model; the arena
            does not depend on their values, so by default 8 uniform random
            inputs are used.
        detail: return the `ArenaEstimate` (head, tail, planned buffers)
            instead of the total.

    Returns:
        Total arena bytes (head + tail), what ``tflm_arena_bytes`` measures and
        about the smallest arena that works (`ArenaEstimate.min_arena_bytes`).

    Raises:
        TypeError / ValueError: not a model or flatbuffer bytes, or a
            truncated flatbuffer (the message says how to fix it).

    Example:
        >>> arena_estimate(flat_int8)
        10352
        >>> e = arena_estimate(flat_int8, detail=True)
        >>> e.head_bytes, e.tail_bytes
        (5888, 4464)
    """
    if isinstance(model_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(model_or_bytes)
    elif hasattr(model_or_bytes, "inputs") and hasattr(model_or_bytes, "layers"):
        from kprune.export.tflite import synthetic_calibration, to_tflite
        calib = representative_data
        if calib is None:
            calib = synthetic_calibration(model_or_bytes)
        data = to_tflite(model_or_bytes, "int8", representative_data=calib)
    else:
        raise TypeError(f"model_or_bytes must be a Keras model or TFLite flatbuffer bytes, "
                        f"got {type(model_or_bytes).__name__}; e.g. "
                        f"arena_estimate(kprune.export.to_tflite(model, 'int8', "
                        f"representative_data=x[:100]))")
    result = estimate(data)
    if result.unmodelled_ops:
        warnings.warn(f"arena_estimate: no measured tail model for {result.unmodelled_ops}; "
                      f"priced at {TAIL_DEFAULT_OP} bytes each (the head is still exact)",
                      stacklevel=2)
    return result if detail else result.total_bytes
