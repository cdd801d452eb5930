"""LiteRT (ai_edge_litert) on the host: outputs and latency of flatbuffers.

Latency is the wall time of `Interpreter.invoke()` alone (inputs set once
before timing), with a fixed thread count, after warm-up runs. Several models
are timed *interleaved*, in rounds (a block of runs of each model per round),
so that load from other processes sharing the CPU affects all of them alike.

Example:
    >>> stats = kprune.runtime.litert.latency(flat, num_threads=1, runs=200)
    >>> stats.median_ms, stats.p90_ms
    (0.041, 0.047)
"""

import dataclasses
import time
from typing import Dict, List, Sequence

import numpy as np


@dataclasses.dataclass
class LatencyStats:
    """Per-invoke latency of one flatbuffer on LiteRT, in milliseconds."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    num_threads: int
    kernels: str = "xnnpack"  # 'xnnpack' (default delegate) or 'builtin' (fallback)

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)


def make_interpreter(tflite_bytes, num_threads: int = 1):
    """An allocated `ai_edge_litert.interpreter.Interpreter` for the bytes
    (XNNPACK delegate where it can prepare the graph, else builtin kernels)."""
    return _make(tflite_bytes, num_threads)[0]


def _make(tflite_bytes, num_threads: int = 1):
    """(allocated interpreter, 'xnnpack' or 'builtin')."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("LiteRT measurements need the 'ai-edge-litert' package: "
                          "pip install 'kprune[edge]'") from err
    from kprune.runtime.capture import capture_fds

    data = bytes(tflite_bytes)
    try:
        with capture_fds():  # "INFO: Created TensorFlow Lite XNNPACK delegate" and the like
            interp = Interpreter(model_content=data, num_threads=int(num_threads))
            interp.allocate_tensors()
        return interp, "xnnpack"
    except RuntimeError as err:
        if "XNNPACK" not in str(err):
            raise
    # XNNPACK refuses some graphs (e.g. degenerate int8 scales): builtin kernels.
    with capture_fds():
        interp = Interpreter(
            model_content=data, num_threads=int(num_threads),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
    return interp, "builtin"


def _quant(detail):
    scale, zero = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero)


def quantize_input(x: np.ndarray, detail) -> np.ndarray:
    """Float data -> the input tensor's dtype (int8/uint8 use its scale/zero point)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.asarray(x, dtype=dtype)
    scale, zero = _quant(detail)
    if scale == 0.0:
        return np.asarray(x).astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x) / scale) + zero, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail) -> np.ndarray:
    """An output tensor -> float32 (int8/uint8 via its scale/zero point)."""
    if np.dtype(y.dtype).kind == "f":
        return y.astype(np.float32)
    scale, zero = _quant(detail)
    if scale == 0.0:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zero) * scale


def predict(tflite_bytes, x, num_threads: int = 1) -> List[np.ndarray]:
    """Runs float inputs through LiteRT in chunks of the model's batch size.

    Args:
        x: an array (N, ...); for several inputs a dict {input name: array}
            or a list of arrays with distinct shapes.

    Returns:
        A list with one float32 array (N, ...) per model output (int8 outputs
        dequantized).

    Example:
        >>> (probs,) = predict(flat, x_test[:100])
    """
    interp = make_interpreter(tflite_bytes, num_threads)
    ins = interp.get_input_details()
    outs = interp.get_output_details()
    xs = _match_inputs(x, ins)
    for a, d in zip(xs, ins):
        if tuple(a.shape[1:]) != tuple(int(v) for v in d["shape"][1:]):
            raise ValueError(f"inputs shaped {a.shape} do not match model input "
                             f"'{d['name']}' {tuple(d['shape'])}")
    n = len(xs[0])
    batch = int(ins[0]["shape"][0])
    results: List[List[np.ndarray]] = [[] for _ in outs]
    for start in range(0, n, batch):
        m = min(batch, n - start)
        for a, d in zip(xs, ins):
            chunk = a[start:start + m]
            if m < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - m,) + chunk.shape[1:], chunk.dtype)])
            interp.set_tensor(d["index"], quantize_input(chunk, d))
        interp.invoke()
        for r, d in zip(results, outs):
            r.append(dequantize_output(interp.get_tensor(d["index"]), d)[:m])
    return [np.concatenate(r) for r in results]


def input_name(detail) -> str:
    """The Keras input name of a LiteRT input ('serving_default_image:0' -> 'image')."""
    name = detail["name"]
    if name.startswith("serving_default_"):
        name = name[len("serving_default_"):]
    return name.rsplit(":", 1)[0]


def _match_inputs(x, ins) -> List[np.ndarray]:
    """Arrays in the flatbuffer's input order, from one array, a dict keyed by
    input name, or a list (matched by shape, since the flatbuffer's input order
    need not follow the Keras model's)."""
    if isinstance(x, dict):
        missing = [input_name(d) for d in ins if input_name(d) not in x]
        if missing:
            raise ValueError(f"no data for model input(s) {missing}; got keys {sorted(x)}")
        return [np.asarray(x[input_name(d)]) for d in ins]
    xs = [np.asarray(a) for a in (x if isinstance(x, (list, tuple)) else [x])]
    if len(xs) != len(ins):
        raise ValueError(f"the model has {len(ins)} inputs, got {len(xs)} arrays")
    if len(xs) == 1:
        return xs
    shapes = [tuple(int(v) for v in d["shape"][1:]) for d in ins]
    if len(set(shapes)) != len(shapes):
        raise ValueError("inputs with equal shapes cannot be matched by position: pass a "
                         f"dict keyed by input name {[input_name(d) for d in ins]}")
    by_shape = {tuple(a.shape[1:]): a for a in xs}
    if set(by_shape) != set(shapes):
        raise ValueError(f"input arrays shaped {[a.shape for a in xs]} do not match the "
                         f"model inputs {shapes}")
    return [by_shape[s] for s in shapes]


def _random_inputs(interp, seed: int = 0):
    rng = np.random.default_rng(seed)
    for d in interp.get_input_details():
        shape = tuple(int(v) for v in d["shape"])
        interp.set_tensor(d["index"], quantize_input(rng.random(shape, dtype=np.float32), d))


def latency(tflite_bytes, num_threads: int = 1, warmup: int = 20, runs: int = 200,
            rounds: int = 5) -> LatencyStats:
    """Latency of one flatbuffer (see `interleaved_latency`)."""
    return interleaved_latency([tflite_bytes], num_threads, warmup, runs, rounds)[0]


def interleaved_latency(flatbuffers: Sequence[bytes], num_threads: int = 1,
                        warmup: int = 20, runs: int = 200, rounds: int = 5,
                        seed: int = 0) -> List[LatencyStats]:
    """Median/p90 invoke latency of several flatbuffers, measured interleaved.

    Every model gets `warmup` untimed invokes, then `rounds` rounds in which
    each model in turn runs `runs / rounds` timed invokes; each invoke is timed
    on its own with `time.perf_counter_ns`. Inputs are random (latency does not
    depend on values for these ops) and set once.

    Args:
        flatbuffers: TFLite model bytes.
        num_threads: LiteRT CPU threads (XNNPACK delegate, the default; a
            graph XNNPACK refuses runs on builtin kernels, stated in `kernels`).

    Returns:
        One `LatencyStats` per flatbuffer, in order.

    Example:
        >>> before, after = interleaved_latency([flat_a, flat_b], runs=300)
        >>> speedup = before.median_ms / after.median_ms
    """
    if runs < 1 or rounds < 1 or warmup < 0:
        raise ValueError("runs and rounds must be >= 1 and warmup >= 0")
    made = [_make(fb, num_threads) for fb in flatbuffers]
    interps = [it for it, _ in made]
    for it in interps:
        _random_inputs(it, seed)
        for _ in range(warmup):
            it.invoke()
    per_round = max(1, runs // rounds)
    times: List[List[int]] = [[] for _ in interps]
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for it, t in zip(interps, times):
            invoke = it.invoke
            for _ in range(per_round):
                start = clock()
                invoke()
                t.append(clock() - start)
    stats = []
    for t, (_, kernels) in zip(times, made):
        ms = np.asarray(t, dtype=np.float64) / 1e6
        stats.append(LatencyStats(median_ms=float(np.median(ms)),
                                  p90_ms=float(np.percentile(ms, 90)),
                                  mean_ms=float(ms.mean()), min_ms=float(ms.min()),
                                  runs=len(ms), warmup=warmup, num_threads=int(num_threads),
                                  kernels=kernels))
    return stats


def check_flatbuffer(tflite_bytes, what: str = "the model") -> bytes:
    """`tflite_bytes` if LiteRT can read them, else a ValueError naming `what`
    (a truncated or damaged file passes the 'TFL3' identifier check but not
    this one)."""
    from ai_edge_litert.interpreter import Interpreter

    from kprune.runtime.capture import capture_fds

    data = bytes(tflite_bytes)
    try:
        with capture_fds():
            Interpreter(model_content=data)
    except ValueError as err:
        raise ValueError(
            f"{what} is not a complete TFLite flatbuffer ({len(data):,} bytes; LiteRT: "
            f"{err}); it is truncated or damaged: convert the model again "
            "(kprune.export.to_tflite) or copy the file again") from err
    return data


def flatbuffer_mode(tflite_bytes) -> str:
    """Guesses the quantization of a flatbuffer from its tensor types:
    'int8' (integer input), 'float16', 'dynamic' (int8 weights, float input) or
    'float32'."""
    from ai_edge_litert.interpreter import Interpreter

    from kprune.runtime.capture import capture_fds

    with capture_fds():
        interp = Interpreter(model_content=bytes(tflite_bytes))
    inputs = interp.get_input_details()
    if inputs and np.dtype(inputs[0]["dtype"]).kind in "iu":
        return "int8"
    dtypes = {np.dtype(d["dtype"]) for d in interp.get_tensor_details()}
    if np.dtype(np.float16) in dtypes:
        return "float16"
    if np.dtype(np.int8) in dtypes:
        return "dynamic"
    return "float32"


__all__ = ["LatencyStats", "check_flatbuffer", "dequantize_output", "flatbuffer_mode", "interleaved_latency",
           "latency", "make_interpreter", "predict", "quantize_input"]
