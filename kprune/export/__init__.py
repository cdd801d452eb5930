"""Deployment export: LiteRT (TFLite) flatbuffers and TFLite-Micro C sources.

Example:
    >>> flat = kprune.export.to_tflite(pruned, "int8", representative_data=x[:200])
    >>> kprune.export.to_c_source(flat, "pruned_model", "firmware/src")
    >>> qat = kprune.export.quantize_aware(pruned); qat.fit(x, y, epochs=1)
    >>> flat = kprune.export.to_tflite(qat, "int8")   # quantization-aware training

LiteRT/TFLite-Micro runtimes are imported only inside the functions that use
them, so importing this package stays light.
"""

from kprune.export.c_source import CSourceFiles, recommended_arena_bytes, to_c_source
from kprune.export.fixed_shape import with_input_shape
from kprune.export.micro import to_micro
from kprune.export.qat import QATError, is_quantize_aware, quantize_aware
from kprune.export.tflite import (ConversionError, close_tensorflow_child, is_tflite, load_tflite,
                                  synthetic_calibration, tensorflow_child, tflite_ops, to_tflite)

__all__ = ["CSourceFiles", "ConversionError", "QATError", "close_tensorflow_child",
           "is_quantize_aware", "is_tflite",
           "load_tflite", "quantize_aware",
           "recommended_arena_bytes", "synthetic_calibration", "tensorflow_child", "tflite_ops",
           "to_c_source",
           "to_micro", "to_tflite", "with_input_shape"]
