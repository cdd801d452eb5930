"""Benchmarks of Keras models on the real runtimes: LiteRT latency,
TFLite-Micro arena and int8 accuracy, flatbuffer sizes, next to
`kprune.profile` complexity. Built on `kprune.export` (conversion) and
`kprune.runtime` (the runtimes; its modules are re-exported here as
``kprune.bench.litert`` / ``tflm`` / ``arena`` / ``flatbuffer``).

Example:
    >>> c = kprune.bench.compare(original, pruned, eval_data=(x_test, y_test),
    ...                          representative_data=x_train[:200])
    >>> print(c)
    >>> kprune.bench.tflm_arena_bytes(flat_int8)
    8992
    >>> kprune.bench.arena_estimate(flat_int8)   # computed, no runtime: same bytes
    8992
    >>> kprune.bench.op_profile(flat_int8, "litert").by_op()   # ms per op type

Command line: ``kprune-bench pruned.keras --compare original.keras --data fashion_mnist --out bench_out``.
"""

from kprune.bench.estimate import arena_estimate
from kprune.bench.measure import Comparison, Measurement, compare, measure, measure_many
from kprune.bench.report import format_side_by_side
from kprune.runtime import arena, flatbuffer, litert, tflm  # noqa: F401  (re-exported)
from kprune.runtime.arena import ArenaEstimate
from kprune.runtime.op_profile import OpProfile, op_profile
from kprune.runtime.tflm import TFLMError, min_arena_bytes, tflm_arena_bytes

__all__ = ["ArenaEstimate", "Comparison", "Measurement", "OpProfile", "TFLMError",
           "arena_estimate", "compare", "format_side_by_side", "measure", "measure_many",
           "min_arena_bytes", "op_profile",
           "tflm_arena_bytes"]
