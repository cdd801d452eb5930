"""Runs TFLite-Micro in a separate process (self-contained: numpy + tflite_micro).

TFLM aborts or segfaults instead of raising on some inputs (an arena smaller
than its own allocator, a softmax whose input scale is degenerate, ...), which
would kill the caller; `kprune.runtime.tflm` therefore runs it here.

Commands (results on stdout, TFLM's own printing on stderr):
    report MODEL ARENA               invoke once on zeros, then print_allocations
    predict MODEL ARENA X.npy OUT.npy   float inputs -> dequantized first output
    search MODEL LO HI RESOLUTION    binary search of the smallest working arena
    time ARENA RUNS WARMUP MODEL...  invoke times (s) of several models, interleaved
"""

import sys

import numpy as np
from tflite_micro import runtime

REC = runtime.InterpreterConfig.kAllocationRecording


def _load(path):
    with open(path, "rb") as f:
        return f.read()


def _make(data, arena):
    # 'intrepreter_config' (sic) is the keyword's real spelling.
    return runtime.Interpreter.from_bytes(data, arena_size=int(arena), intrepreter_config=REC)


def _inputs(it):
    details = []
    for i in range(256):
        try:
            details.append(it.get_input_details(i))
        except (RuntimeError, IndexError, ValueError):
            break
    return details


def _quant_params(detail):
    qp = detail.get("quantization_parameters", {})
    scales, zeros = qp.get("scales", []), qp.get("zero_points", [])
    return (float(scales[0]) if len(scales) else 1.0), (int(zeros[0]) if len(zeros) else 0)


def _quantize(x, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = _quant_params(detail)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _dequantize(y, detail):
    if np.dtype(y.dtype).kind == "f":
        return y.astype(np.float32)
    scale, zero = _quant_params(detail)
    return (y.astype(np.float32) - zero) * scale


def _invoke_zeros(it):
    for i, d in enumerate(_inputs(it)):
        it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
    it.invoke()


def report(model, arena):
    it = _make(_load(model), arena)
    _invoke_zeros(it)
    sys.stdout.write("invoked\n")
    sys.stdout.flush()
    it.print_allocations()


def predict(model, arena, x_path, out_path):
    it = _make(_load(model), arena)
    (detail,) = _inputs(it)[:1]
    out_detail = it.get_output_details(0)
    batch = int(detail["shape"][0])
    x = np.load(x_path).astype(np.float32)
    if tuple(x.shape[1:]) != tuple(int(d) for d in detail["shape"][1:]):
        sys.stderr.write(f"inputs shaped {x.shape} do not match the model input "
                         f"{tuple(int(d) for d in detail['shape'])}\n")
        sys.exit(2)
    outputs = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n,) + chunk.shape[1:], chunk.dtype)])
        it.set_input(_quantize(chunk, detail), 0)
        it.invoke()
        outputs.append(_dequantize(np.array(it.get_output(0)), out_detail)[:n])
    np.save(out_path, np.concatenate(outputs))
    print("done", flush=True)


def search(model, lo, hi, res):
    data = _load(model)
    lo, hi, res = int(lo), int(hi), int(res)

    def works(size, invoke=False):
        print("try", size, flush=True)
        try:
            it = _make(data, size)
            if invoke:
                _invoke_zeros(it)
        except RuntimeError:
            print("fail", size, flush=True)
            return False
        print("ok", size, flush=True)
        return True

    while not works(hi):
        lo, hi = hi, hi * 2
        if hi > 1 << 31:
            print("never", flush=True)
            return
    while hi - lo > res:
        mid = (lo + hi) // 2
        if works(mid):
            hi = mid
        else:
            lo = mid
    for _ in range(64):  # allocation works at hi; make sure an inference runs too
        if works(hi, invoke=True):
            print("result", hi, flush=True)
            return
        hi += res
    print("never", flush=True)


def time_invokes(arena, runs, warmup, *models):
    import time

    its = []
    for path in models:
        it = _make(_load(path), arena)
        for i, d in enumerate(_inputs(it)):
            it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
        for _ in range(int(warmup)):
            it.invoke()
        its.append(it)
    times = [[] for _ in its]
    for _ in range(int(runs)):  # round-robin: every model sees the same load
        for k, it in enumerate(its):
            t = time.perf_counter()
            it.invoke()
            times[k].append(time.perf_counter() - t)
    for k, ts in enumerate(times):
        print("times", k, " ".join(f"{t:.9f}" for t in ts), flush=True)


if __name__ == "__main__":
    {"report": report, "predict": predict, "search": search, "time": time_invokes}[sys.argv[1]](*sys.argv[2:])
