"""Measuring a model against a device budget: TFLite-Micro arena bytes or
measured latency.

A `DeviceBudget` is a limit in the units a device has (``'arena_bytes'``: the
tensor arena the int8 model needs on TFLite-Micro; ``'latency_ms'``: the
latency the converted model measures on the runtime it is deployed to) and the
ways to price a Keras model against it:

* `DeviceBudget.estimate`: fast, for a search. Arena: `kprune.runtime.arena.estimate`
  on the int8 flatbuffer (exact on the tested models, no runtime). Latency: the
  median of ``repeats`` calls of ``latency_fn(tflite_bytes) -> seconds``.
  Values are cached by the flatbuffer's hash.
* `DeviceBudget.measure`: the real runtime, for the verdict. Arena: TFLite-Micro's
  recording allocator in a child process (a model TFLM aborts on cannot take the
  search down). Latency: median of interleaved runs (`interleaved_ms`).
* `DeviceBudget.group_weights`: each dependency group's marginal cost per
  channel on this budget, normalized to mean 1, for ``complexity_aware``.
* `reachable_floor`: the value of the smallest model channel pruning can reach.

A result is accepted when ``budget.low <= value <= budget.limit``: within
`TOLERANCE` (10 %) below the limit.

Example:
    >>> budget = DeviceBudget("arena_bytes", 32 * 1024)
    >>> budget.estimate(model), budget.measure(model)       # bytes
    (79792.0, 79792.0)
    >>> budget.met(budget.measure(small))
    True
    >>> DeviceBudget("latency_ms", 0.05).to_config()["latency_fn"]
    'kprune.methods.device_budget.default_latency_fn(int8)'
"""

import hashlib
import numbers
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from kprune.core.dependency import analyze
from kprune.core.surgery import remove_channels

__all__ = ["DeviceBudget", "KINDS", "TOLERANCE", "call_latency_fn", "conversion_session",
           "default_latency_fn",
           "flatbuffer_for",
           "interleaved_ms", "measured_arena", "minimal_model", "reachable_floor"]

#: Budget kinds and their units.
KINDS = {"arena_bytes": "bytes", "latency_ms": "ms"}
#: A result is accepted in [(1 - TOLERANCE) * limit, limit].
TOLERANCE = 0.1
#: `DeviceBudget.group_weights` removes this fraction of a group's channels.
GROUP_WEIGHT_FRACTION = 0.25
#: For a latency budget it removes each of these fractions and keeps the best
#: saving per channel: kernels work in tiles of channels (XNNPACK int8
#: convolutions: 8 output channels, `benchmarks/op_profile.py`), so a quarter
#: of 16 channels saves nothing while half of them saves a whole tile.
LATENCY_WEIGHT_FRACTIONS = (0.25, 0.5)
#: `DeviceBudget.measure` times this many calls of a user `latency_fn` at least.
MIN_MEASURE_CALLS = 5


def flatbuffer_for(model, quantization: Optional[str] = "int8", representative_data=None):
    """`model` converted for the device: int8 (calibrated on
    `representative_data`, default `kprune.export.synthetic_calibration`) or
    float32 (``quantization=None``).

    Example:
        >>> flat = flatbuffer_for(kprune.zoo.lenet5())      # int8 bytes
    """
    from kprune.export.tflite import synthetic_calibration, to_tflite

    if quantization != "int8":
        return to_tflite(model, quantization)
    calib = representative_data if representative_data is not None \
        else synthetic_calibration(model)
    return to_tflite(model, "int8", representative_data=calib)


def conversion_session():
    """A context manager for a run: its conversions on the JAX or PyTorch
    backend share one TensorFlow child process, closed when the block ends
    if the block started it (`kprune.export.tensorflow_child`); a budget
    search then starts TensorFlow once, not once per estimate.

    Example:
        >>> with conversion_session():
        ...     [budget.estimate(m) for m in candidates]
    """
    from kprune.export.tflite import tensorflow_child

    return tensorflow_child()


def measured_arena(model_or_flat, representative_data=None) -> int:
    """TFLite-Micro arena bytes of an int8 flatbuffer (or of a Keras model
    converted with `flatbuffer_for`), from the recording allocator run in a
    child process after one invoke.

    Example:
        >>> measured_arena(kprune.zoo.lenet5())
        10352
    """
    from kprune.runtime.tflm import arena_report

    flat = model_or_flat if isinstance(model_or_flat, (bytes, bytearray)) \
        else flatbuffer_for(model_or_flat, "int8", representative_data)
    return arena_report(bytes(flat)).total_bytes


def minimal_model(model, min_channels: int = 1, ignored_layers: Sequence[str] = ()):
    """`model` with every prunable group cut to `min_channels` channels: the
    most any channel pruning can remove (weights copied, not re-initialised).

    Example:
        >>> kprune.profile(minimal_model(kprune.zoo.lenet5())).params
        100
    """
    analysis = analyze(model, ignored_layers)
    removal = {}
    for g in analysis.groups:
        if g.channels > min_channels:
            removal.update(g.to_layer_indices(range(min_channels, g.channels)))
    if not removal:
        return model
    return remove_channels(model, removal, analysis=analysis)


def default_latency_fn(quantization: Optional[str] = "int8", runs: int = 60):
    """A ``latency_fn(tflite_bytes) -> seconds``: LiteRT on this host, 1 thread,
    median of `runs` invokes (XNNPACK where it applies). Its ``interleaved``
    attribute times several flatbuffers round-robin (`interleaved_ms` uses it).

    Example:
        >>> fn = default_latency_fn()
        >>> fn(kprune.export.to_tflite(model, "int8", representative_data=x)) < 0.01
        True
    """
    from kprune.runtime import litert

    def latency_fn(tflite_bytes):
        return litert.interleaved_latency([tflite_bytes], num_threads=1, warmup=10,
                                          runs=runs, rounds=1)[0].median_ms / 1e3

    def interleaved(flats, runs=300, rounds=5):
        return [s.median_ms / 1e3 for s in
                litert.interleaved_latency(list(flats), num_threads=1, warmup=20,
                                           runs=runs, rounds=rounds)]

    latency_fn.quantization = quantization
    latency_fn.interleaved = interleaved
    latency_fn.config_name = f"{__name__}.default_latency_fn({quantization or 'float32'})"
    return latency_fn


def _check_seconds(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"latency_fn returned {v!r}: it must return the latency in "
                         f"seconds as a positive finite number, e.g. 0.0042")
    return float(v)


def _call(latency_fn, flat):
    try:
        v = latency_fn(flat)
    except Exception as err:  # noqa: BLE001 - the user's function
        raise ValueError(f"latency_fn raised {type(err).__name__}: {err}; it must take "
                         f"TFLite flatbuffer bytes and return seconds") from err
    return _check_seconds(v)


def call_latency_fn(latency_fn, flat, repeats: int = 3) -> float:
    """Median seconds of `repeats` calls of ``latency_fn(flat)``; a function
    that raises or returns no positive number is a ValueError saying so."""
    return float(np.median([_call(latency_fn, flat) for _ in range(int(repeats))]))


def interleaved_ms(latency_fn, flats: Sequence[bytes], repeats: int = 5) -> List[float]:
    """Median milliseconds of each flatbuffer, timed interleaved so that a
    machine slowing down or speeding up affects them alike: the function's own
    ``interleaved(flats)`` when it has one (`default_latency_fn`: LiteRT,
    300 invokes each in 5 round-robin rounds), else `repeats` round-robin
    rounds of one call per flatbuffer.

    Example:
        >>> ref_ms, small_ms = interleaved_ms(default_latency_fn(), [flat, small_flat])
        >>> ref_ms / small_ms          # speedup, drift cancelled to first order
        1.6
    """
    flats = [bytes(f) for f in flats]
    own = getattr(latency_fn, "interleaved", None)
    if callable(own):
        return [_check_seconds(v) * 1e3 for v in own(flats)]
    times = [[] for _ in flats]
    for _ in range(max(1, int(repeats))):
        for f, t in zip(flats, times):
            t.append(_call(latency_fn, f))
    return [float(np.median(t)) * 1e3 for t in times]


def _positive(name, value, fix):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive number: {fix}")
    return value


def _check_representative(data):
    if data is None:
        return None
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    for a in arrays:
        a = np.asarray(a) if not isinstance(a, np.ndarray) else a
        if a.ndim < 2 or len(a) == 0 or not np.issubdtype(a.dtype, np.number):
            raise ValueError(
                f"representative_data must be a batch of model inputs (an array shaped "
                f"(samples, ...) with at least one sample, or a list of them for a "
                f"multi-input model), got {type(data).__name__} "
                f"{getattr(a, 'shape', '')}; e.g. representative_data=x_train[:200]")
    return data


def _callable_name(fn) -> str:
    name = getattr(fn, "config_name", None)
    if name:
        return name
    module = getattr(fn, "__module__", None) or type(fn).__module__
    qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qual}"


def _data_fingerprint(data) -> Optional[dict]:
    if data is None:
        return None
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    h = hashlib.sha256()
    shapes = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        shapes.append(list(a.shape))
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    return {"shapes": shapes, "sha256": h.hexdigest()}


class DeviceBudget:
    """A limit in device units and how to price a model against it.

    Args:
        kind: ``'arena_bytes'`` (TFLite-Micro tensor arena of the int8 model)
            or ``'latency_ms'`` (latency of the converted model on the deploy
            runtime).
        limit: the budget: bytes or milliseconds, a positive number.
        latency_fn: ``f(tflite_bytes) -> seconds`` for the deploy target (a
            phone, a board); default `default_latency_fn` (LiteRT on this
            host, 1 thread). Only with ``kind='latency_ms'``.
        quantization: ``'int8'`` (default) or None/``'float32'``: what the
            latency is measured on. The arena is always the int8 model's.
        representative_data: int8 calibration inputs; default
            `kprune.export.synthetic_calibration` (the arena and the latency do
            not depend on the values).
        repeats: calls of `latency_fn` per `estimate` (their median).

    Attributes:
        kind, limit, low: ``low = (1 - TOLERANCE) * limit``, the lowest
        value a search should settle for (0.9 of the limit).

    Raises:
        ValueError: an unknown kind, a limit that is not a positive number, a
            `latency_fn` that is not callable or given for an arena budget, a
            quantization other than int8 for an arena, a `repeats` that is
            not a positive integer, or representative data that is not a batch.

    Example:
        >>> budget = DeviceBudget("latency_ms", 2.0, latency_fn=board_latency)
        >>> budget.estimate(model)          # ms, median of 3 calls, cached
        3.1
        >>> budget.low, budget.met(1.9)
        (1.8, True)
    """

    def __init__(self, kind: str, limit: float, latency_fn=None,
                 quantization: Optional[str] = "int8", representative_data=None,
                 repeats: int = 3):
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not a device budget: use 'arena_bytes' "
                             f"(TFLite-Micro tensor arena of the int8 model) or 'latency_ms' "
                             f"(measured latency)")
        unit = KINDS[kind]
        _positive("limit", limit, f"the budget in {unit}, e.g. "
                  + ("32 * 1024" if kind == "arena_bytes" else "5.0"))
        from kprune.export.tflite import normalize_quantization

        try:
            q = normalize_quantization(quantization)
        except ValueError as err:
            raise ValueError(f"quantization={quantization!r}: use 'int8' or None "
                             f"(float32) ({err})") from None
        if kind == "arena_bytes":
            if latency_fn is not None:
                raise ValueError("latency_fn is only used with kind='latency_ms'; an arena "
                                 "budget is priced from the int8 flatbuffer: drop latency_fn")
            if q != "int8":
                raise ValueError(f"quantization={quantization!r} cannot price a TFLite-Micro "
                                 f"arena: the arena is the int8 model's; use "
                                 f"quantization='int8'")
        elif q not in ("int8", None):
            raise ValueError(f"quantization={quantization!r}: latency budgets measure the "
                             f"'int8' or None (float32) model; use one of those")
        if latency_fn is not None and not callable(latency_fn):
            raise ValueError(f"latency_fn={latency_fn!r} must be a callable "
                             f"f(tflite_bytes) -> seconds, e.g. the board's timer")
        if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral) \
                or repeats < 1:
            raise ValueError(f"repeats={repeats!r} must be a positive integer: the calls "
                             f"of latency_fn whose median is one estimate, e.g. 3")
        self.kind = kind
        self.limit = float(limit)
        self.low = (1.0 - TOLERANCE) * self.limit
        self.quantization = q
        self.representative_data = _check_representative(representative_data)
        self.repeats = int(repeats)
        self.latency_fn = None
        if kind == "latency_ms":
            self.latency_fn = latency_fn if latency_fn is not None else default_latency_fn(q)
        self._cache: Dict[str, float] = {}
        #: Keras models converted by `flatbuffer`, and flatbuffers priced by
        #: `estimate` (cache misses): what a search spent.
        self.conversions = 0
        self.pricings = 0
        self.seconds = {"convert": 0.0, "price": 0.0}  # wall time spent in each

    def __repr__(self):
        return f"DeviceBudget({self.kind!r}, {self.limit:g})"

    def flatbuffer(self, model) -> bytes:
        """The flatbuffer this budget prices: `model` converted (int8 or
        float32), or `model` itself when it is already flatbuffer bytes."""
        if isinstance(model, (bytes, bytearray, memoryview)):
            return bytes(model)
        self.conversions += 1
        t = time.perf_counter()
        try:
            return flatbuffer_for(model, self.quantization, self.representative_data)
        finally:
            self.seconds["convert"] += time.perf_counter() - t

    def estimate(self, model) -> float:
        """The fast price of `model` (a Keras model or flatbuffer bytes) in the
        budget's unit: the arena computed by `kprune.runtime.arena.estimate`, or
        the median of `repeats` calls of `latency_fn` in ms. Cached by the
        flatbuffer's SHA-256, so a width seen before costs one conversion.

        Example:
            >>> DeviceBudget("arena_bytes", 8192).estimate(kprune.zoo.lenet5())
            10352.0
        """
        flat = self.flatbuffer(model)
        key = hashlib.sha256(flat).hexdigest()
        if key not in self._cache:
            self.pricings += 1
            t = time.perf_counter()
            if self.kind == "arena_bytes":
                from kprune.runtime.arena import estimate

                self._cache[key] = float(estimate(flat).total_bytes)
            else:
                self._cache[key] = call_latency_fn(self.latency_fn, flat, self.repeats) * 1e3
            self.seconds["price"] += time.perf_counter() - t
        return self._cache[key]

    def measure(self, model) -> float:
        """The real runtime's value for `model` (a Keras model or flatbuffer
        bytes): the TFLite-Micro recording allocator's arena bytes (child
        process, after one invoke) or the median ms of interleaved runs
        (`interleaved_ms`; at least `MIN_MEASURE_CALLS` calls of a user
        `latency_fn`). Not cached.

        Raises:
            kprune.bench.TFLMError: TFLite-Micro cannot allocate or run the model.

        Example:
            >>> DeviceBudget("arena_bytes", 8192).measure(kprune.zoo.lenet5())
            10352.0
        """
        flat = self.flatbuffer(model)
        if self.kind == "arena_bytes":
            return float(measured_arena(flat))
        return interleaved_ms(self.latency_fn, [flat],
                              max(self.repeats, MIN_MEASURE_CALLS))[0]

    def met(self, value) -> bool:
        """Whether `value` (bytes / ms) is within the budget: ``value <= limit``.

        Example:
            >>> DeviceBudget("arena_bytes", 8192).met(8192)
            True
        """
        return float(value) <= self.limit * (1 + 1e-12)

    def group_weights(self, model, analysis=None) -> Dict[int, float]:
        """{group index: weight}, mean 1 over the groups of `analysis` (of
        `model`): what one channel of each group costs on this budget.

        For every group, `GROUP_WEIGHT_FRACTION` (a quarter, at least one) of
        its channels is removed and the model priced with `estimate`; the
        weight is the bytes or ms saved per channel removed. For a latency
        budget a quarter and a half are removed (`LATENCY_WEIGHT_FRACTIONS`)
        and the larger saving per channel counts, so a group whose kernel
        works in tiles (8 channels on XNNPACK) is priced by the tile it can
        drop, not by a cut inside one tile that saves nothing. A group that
        saves nothing (one channel left, or, for the arena, a group whose
        tensors are not at the arena's peak: the arena is a maximum) weighs 0;
        if no group saves anything every weight is 1. One conversion (arena)
        or two (latency) per group and call (the cache spares repeats). For
        ``complexity_aware``:
        heavier groups are pruned faster.

        Example:
            >>> w = DeviceBudget("arena_bytes", 32768).group_weights(model)
            >>> round(sum(w.values()) / len(w), 6)
            1.0
        """
        if analysis is None:
            analysis = analyze(model)
        if not analysis.groups:
            return {}
        base = self.estimate(model)
        fractions = ((GROUP_WEIGHT_FRACTION,) if self.kind == "arena_bytes"
                     else LATENCY_WEIGHT_FRACTIONS)
        saved = {}
        for g in analysis.groups:
            saved[g.index] = 0.0
            for k in sorted({min(max(1, int(round(f * g.channels))), g.channels - 1)
                             for f in fractions} - {0}):
                cut = remove_channels(model, g.to_layer_indices(range(g.channels - k,
                                                                      g.channels)),
                                      analysis=analysis, keep_classes=False)  # measured only
                saved[g.index] = max(saved[g.index], (base - self.estimate(cut)) / k)
        mean = float(np.mean(list(saved.values())))
        if mean <= 0:
            return {i: 1.0 for i in saved}
        return {i: v / mean for i, v in saved.items()}

    def to_config(self) -> dict:
        """A stable, JSON-able description (for checkpoint fingerprints): no
        memory addresses; a callable `latency_fn` by module and qualname,
        representative data by shapes and SHA-256.

        Example:
            >>> DeviceBudget("arena_bytes", 32768).to_config()
            {'kind': 'arena_bytes', 'limit': 32768.0, 'low': 29491.2, 'tolerance': 0.1, 'quantization': 'int8', 'latency_fn': None, 'repeats': 3, 'representative_data': None}
        """
        return {"kind": self.kind, "limit": self.limit, "low": self.low,
                "tolerance": TOLERANCE, "quantization": self.quantization or "float32",
                "latency_fn": None if self.latency_fn is None
                else _callable_name(self.latency_fn),
                "repeats": self.repeats,
                "representative_data": _data_fingerprint(self.representative_data)}


def reachable_floor(budget: DeviceBudget, model, min_channels: int = 1,
                    ignored_layers: Sequence[str] = ()) -> float:
    """`budget.estimate` of the smallest model channel pruning can reach
    (every prunable group at `min_channels`, `ignored_layers` kept): a limit
    below it cannot be met, and the error should say so with this value.

    For latency the smallest model is not always the fastest: on LiteRT
    (XNNPACK, 1 thread) MobileNetV2 (0.35, 96) with every group at one channel
    measured 0.165 ms against 0.110 ms unpruned. Treat the value as a floor
    only when it is below the unpruned model's.

    Example:
        >>> b = DeviceBudget("arena_bytes", 100)
        >>> reachable_floor(b, kprune.zoo.lenet5())
        2816.0
    """
    if isinstance(min_channels, bool) or not isinstance(min_channels, numbers.Integral) \
            or min_channels < 1:
        raise ValueError(f"min_channels={min_channels!r} must be a positive integer: the "
                         f"channels every group keeps, e.g. 1")
    return budget.estimate(minimal_model(model, int(min_channels), tuple(ignored_layers)))
