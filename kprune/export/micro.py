"""One call from a (pruned) Keras model to TFLite-Micro firmware sources.

Example:
    >>> files = kprune.export.to_micro("pruned.keras", "pruned_model", "firmware/src",
    ...                                representative_data=x_train[:200])
    >>> files.cc, files.h, files.arena_bytes
"""

import os
from typing import Optional

from kprune.export.c_source import CSourceFiles, to_c_source
from kprune.export.tflite import to_tflite


def to_micro(model, name: str, path: str, representative_data=None,
             arena_size: Optional[int] = None) -> CSourceFiles:
    """int8 conversion + C source: writes `<name>.tflite`, `<name>.cc` and
    `<name>.h` into the directory `path`.

    Args:
        model: a Keras model (Keras 3, tf_keras, or the quantization-aware
            model from `quantize_aware`) or the path of a `.keras`/`.h5` file.
        name: C identifier for the symbols (see `to_c_source`).
        path: output directory (created if needed).
        representative_data: int8 calibration inputs, (N,) + input shape;
            optional for a quantization-aware model.
        arena_size: overrides the measured recommended arena size.

    Returns:
        `CSourceFiles(cc, h, model_bytes, arena_bytes)`.
    """
    if isinstance(model, (str, os.PathLike)):
        from kprune.data import load_model_file

        model = load_model_file(model, "model")
    os.makedirs(path, exist_ok=True)
    flat = to_tflite(model, "int8", representative_data=representative_data,
                     path=os.path.join(path, name + ".tflite"))
    return to_c_source(flat, name, path, arena_size=arena_size)
