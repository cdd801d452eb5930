"""TFLite-Micro on the host: arena bytes, smallest working arena, accuracy.

Uses the `tflite_micro` Python runtime: the C++ interpreter and reference
kernels that firmware links. Its recording allocator reports the arena bytes
actually allocated, printed from C++ to the process's stderr.

TFLM aborts or segfaults (instead of raising) on some inputs, e.g. an arena
smaller than its own allocator objects, or an int8 softmax whose input scale
is degenerate (a network whose last activations are all ~0). So by default
every measurement runs in a child process (`isolate=True`), where stderr is
captured by the OS pipe and a crash becomes a `TFLMError`. With
`isolate=False` it runs in-process and file descriptor 2 is captured with
`os.dup2` (faster, for many small calls).

Example:
    >>> flat = kprune.export.to_tflite(model, "int8", representative_data=x[:200])
    >>> kprune.bench.tflm_arena_bytes(flat)
    8992
    >>> kprune.runtime.tflm.min_arena_bytes(flat)
    9008
"""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
from typing import Dict, Optional

import numpy as np

from kprune.runtime.capture import capture_fds

_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_TAIL = re.compile(r"Arena allocation tail (\d+) bytes")
_ITEM = re.compile(r"'([^']+)' used (\d+) bytes")
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tflm_worker.py")

#: Arena given to the interpreter when none is specified: an upper bound to
#: allocate from (the recording reports what was used).
DEFAULT_ARENA = 64 * 1024 * 1024


class TFLMError(RuntimeError):
    """TFLite-Micro could not load, allocate or run a model (or crashed)."""


@dataclasses.dataclass
class ArenaReport:
    """What the TFLM recording allocator reported for one model."""

    total_bytes: int  # head + tail: the arena bytes actually allocated
    head_bytes: int  # non-persistent (activations, scratch), planned by the memory planner
    tail_bytes: int  # persistent (tensor structs, quantization params, op data)
    breakdown: Dict[str, int]  # allocation kind -> bytes, as printed by TFLM

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)


def _runtime():
    try:
        from tflite_micro import runtime
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("TFLite-Micro measurements need the 'tflite-micro' package: "
                          "pip install 'kprune[edge]'") from err
    return runtime


def _check_bytes(tflite_bytes) -> bytes:
    if not isinstance(tflite_bytes, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected TFLite flatbuffer bytes, got {type(tflite_bytes).__name__}")
    data = bytes(tflite_bytes)
    if data[4:8] != b"TFL3":
        raise ValueError("expected TFLite flatbuffer bytes (identifier 'TFL3'), e.g. from "
                         "kprune.export.to_tflite(model, 'int8', ...)")
    return data


def _arena(data: bytes, arena_size: Optional[int]) -> int:
    return int(arena_size) if arena_size else max(DEFAULT_ARENA, 10 * len(data))


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"crashed with {signal.Signals(-code).name}"
        except ValueError:
            return f"died with signal {-code}"
    return f"exited with status {code}"


class _ModelFile:
    """The flatbuffer in a temporary file for the worker process."""

    def __init__(self, data: bytes):
        self.data = data

    def __enter__(self) -> str:
        fd, self.path = tempfile.mkstemp(suffix=".tflite")
        with os.fdopen(fd, "wb") as f:
            f.write(self.data)
        return self.path

    def __exit__(self, *exc):
        os.unlink(self.path)


def _run_worker(*args, timeout: float = 3600) -> subprocess.CompletedProcess:
    _runtime()  # a clear ImportError here rather than in the child
    return subprocess.run([sys.executable, _WORKER] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout)


def interpreter(tflite_bytes, arena_size: Optional[int] = None, recording: bool = True):
    """An in-process TFLM interpreter (C-level chatter swallowed); an allocation
    failure raises `TFLMError` with TFLM's own message. Note that TFLM may
    crash the process on some models; the other functions here isolate it."""
    runtime = _runtime()
    data = _check_bytes(tflite_bytes)
    config = (runtime.InterpreterConfig.kAllocationRecording if recording
              else runtime.InterpreterConfig.kPreserveAllTensors)
    size = _arena(data, arena_size)
    try:
        with capture_fds() as cap:
            # 'intrepreter_config' (sic) is the keyword's real spelling.
            return runtime.Interpreter.from_bytes(data, arena_size=size,
                                                  intrepreter_config=config)
    except RuntimeError as err:
        raise TFLMError(f"TFLite-Micro could not allocate the model in a {size}-byte "
                        f"arena: {err}. TFLM said: {cap.text.strip()[-500:]}") from err


def _parse(text: str) -> Optional[ArenaReport]:
    total = _TOTAL.search(text)
    if not total:
        return None
    head, tail = _HEAD.search(text), _TAIL.search(text)
    return ArenaReport(
        total_bytes=int(total.group(1)),
        head_bytes=int(head.group(1)) if head else 0,
        tail_bytes=int(tail.group(1)) if tail else 0,
        breakdown={k: int(v) for k, v in _ITEM.findall(text)})


def arena_report(tflite_bytes, arena_size: Optional[int] = None,
                 isolate: bool = True) -> ArenaReport:
    """The TFLM recording allocator's report (total/head/tail/breakdown).

    The model is invoked once on zeros first, so a model that allocates but
    cannot run fails here rather than on the device.
    """
    data = _check_bytes(tflite_bytes)
    size = _arena(data, arena_size)
    if isolate:
        with _ModelFile(data) as path:
            proc = _run_worker("report", path, size)
        text = proc.stderr + proc.stdout
        if proc.returncode != 0 or "invoked" not in proc.stdout:
            raise TFLMError(f"TFLite-Micro {_describe_exit(proc.returncode)} while allocating "
                            f"or invoking the model (arena {size} bytes). TFLM aborts e.g. "
                            f"when an int8 softmax gets a degenerate input scale because "
                            f"the activations before it are all ~0 (untrained weights or "
                            f"unrepresentative calibration data). Its output: "
                            f"{text.strip()[-800:]}")
    else:
        it = interpreter(data, size)
        _invoke_zeros(it)
        with capture_fds() as cap:
            it.print_allocations()
        text = cap.text
    report = _parse(text)
    if report is None:
        raise TFLMError("TFLite-Micro's recording allocator printed no 'Arena allocation "
                        f"total' line; captured: {text[-300:]!r}")
    return report


def tflm_arena_bytes(tflite_bytes) -> int:
    """Arena bytes the TFLite-Micro recording allocator reports for the model
    (head + tail): what the model allocates in its tensor arena.

    Example:
        >>> tflm_arena_bytes(kprune.export.to_tflite(m, "int8", representative_data=x))
        8992
    """
    return arena_report(tflite_bytes).total_bytes


def min_arena_bytes(tflite_bytes, resolution: int = 16, upper: Optional[int] = None) -> int:
    """The smallest `arena_size` (to `resolution` bytes) with which TFLM allocates
    and runs the model, found by binary search on `Interpreter.from_bytes`.

    TFLM can crash (not raise) when an arena is too small even for its own
    allocator, so the search runs in a child process; a size that crashes it
    counts as too small and the search resumes in a fresh process.

    Example:
        >>> min_arena_bytes(flat)
        9008
    """
    data = _check_bytes(tflite_bytes)
    hi = upper or max(arena_report(data).total_bytes + 1024, 4096)
    lo = 0  # an empty arena never works
    with _ModelFile(data) as path:
        for _ in range(32):
            proc = _run_worker("search", path, lo, hi, resolution)
            last_try = None
            for line in proc.stdout.splitlines():
                word, _, value = line.partition(" ")
                if word == "result":
                    return int(value)
                if word == "never":
                    raise TFLMError("TFLite-Micro cannot allocate and run the model in "
                                    "any arena up to 2 GiB")
                if word == "try":
                    last_try = int(value)
                elif word == "ok":
                    hi = int(value)
                elif word == "fail":
                    lo = int(value)
            if last_try is None:
                raise TFLMError(f"the TFLite-Micro arena search could not start: "
                                f"{proc.stderr.strip()[-500:]}")
            lo = max(lo, last_try)  # the size being tried crashed the process
            if lo >= hi:
                hi = lo + resolution
    raise TFLMError("the TFLite-Micro arena search crashed too often")


def _invoke_zeros(it):
    for i, detail in _input_details(it):
        it.set_input(np.zeros(detail["shape"], dtype=detail["dtype"]), i)
    try:
        with capture_fds() as cap:
            it.invoke()
    except RuntimeError as err:
        raise TFLMError(f"TFLite-Micro failed to invoke the model: {err}. "
                        f"TFLM said: {cap.text.strip()[-500:]}") from err


def _input_details(it):
    """[(index, details)] of every input (TFLM has no input count: probe)."""
    details = []
    with capture_fds():  # an out-of-range probe prints from C++
        for i in range(256):
            try:
                details.append((i, it.get_input_details(i)))
            except (RuntimeError, IndexError, ValueError):
                break
    return details


def predict(tflite_bytes, x: np.ndarray, arena_size: Optional[int] = None) -> np.ndarray:
    """Runs float inputs `x` (N, ...) through TFLite-Micro sample by sample, in
    a child process (quantizing int8 inputs, dequantizing the first output).

    Example:
        >>> probs = predict(flat_int8, x_test[:100])
    """
    data = _check_bytes(tflite_bytes)
    x = np.asarray(x, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp, _ModelFile(data) as path:
        x_path, out_path = os.path.join(tmp, "x.npy"), os.path.join(tmp, "out.npy")
        np.save(x_path, x)
        proc = _run_worker("predict", path, _arena(data, arena_size), x_path, out_path)
        if proc.returncode != 0 or not os.path.exists(out_path):
            raise TFLMError(f"TFLite-Micro {_describe_exit(proc.returncode)} running the "
                            f"model: {(proc.stderr + proc.stdout).strip()[-800:]}")
        return np.load(out_path)


def accuracy(tflite_bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the flatbuffer on (x, y) run through TFLite-Micro."""
    pred = predict(tflite_bytes, x).argmax(axis=-1)
    y = np.asarray(y)
    labels = y.argmax(axis=-1) if y.ndim > 1 else y.reshape(-1)
    return float(np.mean(pred == labels))


def interleaved_latency(flatbuffers, runs: int = 10, warmup: int = 1):
    """Invoke latency of TFLite-Micro's reference kernels on this host for
    several int8 flatbuffers, timed round-robin in one child process (a proxy
    for a microcontroller without SIMD kernels). Returns one
    `kprune.runtime.litert.LatencyStats` per flatbuffer (kernels 'tflm-reference').

    Example:
        >>> before, after = interleaved_latency([flat_int8, pruned_int8], runs=20)
        >>> before.median_ms / after.median_ms   # speedup on the reference kernels
        1.9
    """
    from kprune.runtime.litert import LatencyStats

    if isinstance(runs, bool) or int(runs) != runs or runs < 1:
        raise ValueError(f"runs={runs!r} must be a positive integer (invokes timed per model)")
    datas = [_check_bytes(f) for f in flatbuffers]
    if not datas:
        return []
    arena = max(_arena(d, None) for d in datas)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k, d in enumerate(datas):
            paths.append(os.path.join(tmp, f"m{k}.tflite"))
            with open(paths[-1], "wb") as f:
                f.write(d)
        proc = _run_worker("time", arena, int(runs), int(warmup), *paths)
    times = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["times"]:
            times[int(parts[1])] = np.array([float(t) for t in parts[2:]]) * 1e3
    if proc.returncode != 0 or len(times) != len(datas):
        raise TFLMError(f"TFLite-Micro {_describe_exit(proc.returncode)} while timing the "
                        f"models: {(proc.stderr + proc.stdout).strip()[-800:]}")
    return [LatencyStats(median_ms=float(np.median(t)), p90_ms=float(np.percentile(t, 90)),
                         mean_ms=float(t.mean()), min_ms=float(t.min()), runs=int(runs),
                         warmup=int(warmup), num_threads=1, kernels="tflm-reference")
            for t in (times[k] for k in range(len(datas)))]


def latency(tflite_bytes, runs: int = 10, warmup: int = 1):
    """`interleaved_latency` of one flatbuffer (a `LatencyStats`, ms)."""
    return interleaved_latency([tflite_bytes], runs=runs, warmup=warmup)[0]
