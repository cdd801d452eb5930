"""Benchmarks on the real runtimes: LiteRT latency, TFLite-Micro arena and
int8 accuracy, flatbuffer sizes, next to `kprune.profile` complexity.

Example:
    >>> c = kprune.bench.compare(original, pruned, eval_data=(x_test, y_test),
    ...                          representative_data=x_train[:200])
    >>> print(c)
    >>> kprune.bench.tflm_arena_bytes(flat_int8)
    8992
    >>> kprune.bench.arena_estimate(flat_int8)   # computed, no runtime: same bytes
    8992

Command line: ``kprune-bench pruned.keras --compare original.keras --json out.json``.
The runtimes (ai_edge_litert, tflite_micro) are imported lazily.
"""

from kprune.bench.arena import ArenaEstimate, arena_estimate
from kprune.bench.measure import Comparison, Measurement, compare, measure, measure_many
from kprune.bench.tflm import TFLMError, min_arena_bytes, tflm_arena_bytes

__all__ = ["ArenaEstimate", "Comparison", "Measurement", "TFLMError", "arena_estimate",
           "compare", "measure", "measure_many", "min_arena_bytes", "tflm_arena_bytes"]
