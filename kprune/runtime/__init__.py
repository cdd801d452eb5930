"""The device runtimes kprune measures on: LiteRT (`litert`: latency,
outputs), TFLite-Micro (`tflm`: the real arena, int8 accuracy, in a worker
process), the computed arena (`arena`), the flatbuffer reader
(`flatbuffer`) and `WidthMap` (`resize`: a converted flatbuffer re-widthed
without the converter, for latency searches). This layer takes flatbuffer bytes and never imports
`kprune.export` (which imports it) or `kprune.bench` (built on both).

Example:
    >>> from kprune.runtime import tflm, arena
    >>> tflm.tflm_arena_bytes(flat_int8), arena.estimate(flat_int8).total_bytes
    (8992, 8992)

The runtimes (ai_edge_litert, tflite_micro) are imported lazily.
"""

from kprune.runtime.arena import ArenaEstimate, estimate
from kprune.runtime.resize import WidthMap, probe_widths
from kprune.runtime.tflm import TFLMError, min_arena_bytes, tflm_arena_bytes

__all__ = ["ArenaEstimate", "TFLMError", "WidthMap", "estimate", "min_arena_bytes",
           "probe_widths", "tflm_arena_bytes"]
