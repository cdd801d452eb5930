"""Where a flatbuffer's invoke time goes, op by op, on LiteRT or TFLite-Micro
(`op_profile`).

Neither Python runtime exposes its op profiler (LiteRT's ``Interpreter`` has
no profiling hook; the ``tflite_micro`` runtime has no per-op timer), so the
profile is built from the runtimes' own invokes: every operator of subgraph 0
is cut out into a **one-op flatbuffer** (its non-constant inputs become the
model's inputs, its constants and quantization parameters are kept, so the
runtime picks the same kernel: XNNPACK or builtin for LiteRT, the reference
kernel for TFLite-Micro), and the one-op models, the whole model and an
**empty model** (no operator: the runtime's fixed per-invoke cost) are timed
interleaved (`kprune.runtime.litert.interleaved_latency` /
`kprune.runtime.tflm.interleaved_latency`). An op's time is its one-op
model's median minus the empty model's. ``whole_ms - floor_ms - sum of the
ops`` is what the isolation does not explain (cache effects, XNNPACK work
shared across ops).

Each op also carries its MACs (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
TRANSPOSE_CONV, BATCH_MATMUL), so ``ms_per_mmac`` tells whether a layer runs
at the rate of its neighbours (a width off the kernel's vector width runs
slower per MAC).

Example:
    >>> prof = op_profile(flat_int8, runtime="litert")
    >>> prof.by_op()["CONV_2D"]          # ms in every CONV_2D
    0.021
    >>> print(prof.format())
"""

import copy
import dataclasses
from typing import Dict, List, Optional, Tuple

from kprune.runtime.flatbuffer import OP_NAMES, TYPE_NAMES

RUNTIMES = ("litert", "tflm")
_MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV",
            "BATCH_MATMUL")


@dataclasses.dataclass
class OpTime:
    """One operator's share of an invoke."""

    index: int                       # position in subgraph 0's operator list
    op: str                          # builtin name, e.g. 'CONV_2D'
    inputs: List[Tuple[int, ...]]    # shapes of its non-constant inputs
    output: Tuple[int, ...]          # shape of its first output
    dtype: str                       # type of its first output ('int8', 'float32')
    macs: int                        # multiply-accumulates (0 for ops without any)
    ms: float                        # one-op model median minus the empty model's
    raw_ms: float                    # the one-op model's median invoke

    @property
    def ms_per_mmac(self) -> Optional[float]:
        """Milliseconds per million MACs (None for ops without MACs)."""
        return self.ms / (self.macs / 1e6) if self.macs else None

    def to_dict(self) -> Dict:
        d = dataclasses.asdict(self)
        d["inputs"] = [list(s) for s in self.inputs]
        d["output"] = list(self.output)
        d["ms_per_mmac"] = self.ms_per_mmac
        return d


@dataclasses.dataclass
class OpProfile:
    """The per-op times of one flatbuffer on one runtime (see the module docstring)."""

    runtime: str       # 'litert' or 'tflm'
    kernels: str       # what ran the whole model ('xnnpack', 'builtin', 'tflm-reference')
    ops: List[OpTime]
    whole_ms: float    # the whole model's median invoke
    floor_ms: float    # the empty model's median invoke: the fixed per-invoke cost

    @property
    def ops_ms(self) -> float:
        """Sum of the ops' times."""
        return float(sum(o.ms for o in self.ops))

    @property
    def unexplained_ms(self) -> float:
        """``whole_ms - floor_ms - ops_ms`` (negative: isolation costs more)."""
        return self.whole_ms - self.floor_ms - self.ops_ms

    def by_op(self) -> Dict[str, float]:
        """{op name: ms summed over its occurrences}, largest first."""
        out: Dict[str, float] = {}
        for o in self.ops:
            out[o.op] = out.get(o.op, 0.0) + o.ms
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> Dict:
        return {"runtime": self.runtime, "kernels": self.kernels, "whole_ms": self.whole_ms,
                "floor_ms": self.floor_ms, "ops_ms": self.ops_ms,
                "unexplained_ms": self.unexplained_ms, "by_op": self.by_op(),
                "ops": [o.to_dict() for o in self.ops]}

    def format(self) -> str:
        """A markdown table: one row per op, then the floor and the whole model."""
        rows = ["| # | op | output | MACs | ms | ms / MMAC |", "|---:|---|---|---:|---:|---:|"]
        for o in self.ops:
            per = "" if o.ms_per_mmac is None else f"{o.ms_per_mmac:.3f}"
            rows.append(f"| {o.index} | {o.op} | {'x'.join(map(str, o.output))} "
                        f"{o.dtype} | {o.macs:,} | {o.ms:.4f} | {per} |")
        rows.append(f"| | per-invoke floor (empty model) | | | {self.floor_ms:.4f} | |")
        rows.append(f"| | whole model ({self.kernels}) | | | {self.whole_ms:.4f} | |")
        return "\n".join(rows)


def _flatbuffer_utils():
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils


def _op_name(model, op) -> str:
    code = _flatbuffer_utils().get_builtin_code_from_operator_code(
        model.operatorCodes[op.opcodeIndex])
    return OP_NAMES.get(int(code), f"BUILTIN_{int(code)}")


def _constant(model, tensor) -> bool:
    buf = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def _submodel(model, operators: list, inputs: List[int], outputs: List[int]) -> bytes:
    """A flatbuffer of `model`'s subgraph 0 restricted to `operators`, with
    graph `inputs` / `outputs` (indices into the original tensor list)."""
    fu = _flatbuffer_utils()
    sub = model.subgraphs[0]
    used: List[int] = []

    def keep(t):
        if t >= 0 and t not in used:
            used.append(t)

    for t in inputs:
        keep(t)
    for op in operators:
        for t in list(op.inputs or []) + list(op.outputs or []) + list(op.intermediates or []):
            keep(t)
    for t in outputs:
        keep(t)
    remap = {t: i for i, t in enumerate(used)}
    buffers = [copy.copy(model.buffers[0])]
    tensors = []
    for t in used:
        tensor = copy.copy(sub.tensors[t])
        if 0 < tensor.buffer < len(model.buffers) and _constant(model, sub.tensors[t]):
            buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(buffers) - 1
        else:
            buffers.append(type(model.buffers[0])())  # an empty buffer per tensor
            tensor.buffer = len(buffers) - 1
        tensors.append(tensor)
    ops = []
    for op in operators:
        new = copy.copy(op)
        new.inputs = [remap[t] if t >= 0 else -1 for t in (op.inputs or [])]
        new.outputs = [remap[t] for t in (op.outputs or [])]
        new.intermediates = [remap[t] for t in (op.intermediates or [])] or None
        ops.append(new)
    new_sub = copy.copy(sub)
    new_sub.tensors, new_sub.operators = tensors, ops
    new_sub.inputs = [remap[t] for t in inputs]
    new_sub.outputs = [remap[t] for t in outputs]
    out = copy.copy(model)
    out.subgraphs, out.buffers = [new_sub], buffers
    out.signatureDefs, out.metadata, out.metadataBuffer = None, None, None
    return bytes(fu.convert_object_to_bytearray(out))


def _macs(model, op, name: str) -> int:
    sub = model.subgraphs[0]
    shape = [list(sub.tensors[t].shape or []) for t in op.inputs]
    out = list(sub.tensors[op.outputs[0]].shape or [])
    n_out = 1
    for d in out:
        n_out *= max(int(d), 1)
    if name in ("CONV_2D", "TRANSPOSE_CONV"):
        w = shape[1] if name == "CONV_2D" else shape[1]  # [cout, kh, kw, cin]
        return n_out * int(w[1]) * int(w[2]) * int(w[3]) if len(w) == 4 else 0
    if name == "DEPTHWISE_CONV_2D":
        w = shape[1]  # [1, kh, kw, cout]
        return n_out * int(w[1]) * int(w[2]) if len(w) == 4 else 0
    if name == "FULLY_CONNECTED":
        w = shape[1]  # [units, features]
        return n_out * int(w[-1]) if w else 0
    if name == "BATCH_MATMUL":
        a = shape[0]
        return n_out * int(a[-1]) if a else 0
    return 0


def split_ops(tflite_bytes) -> Tuple[List[Dict], bytes]:
    """The one-op flatbuffers of `tflite_bytes`' subgraph 0 (one dict per
    operator: ``index``, ``op``, ``inputs``, ``output``, ``dtype``, ``macs``,
    ``flatbuffer``) and the empty model (one input passed through, no
    operator). ValueError for a model with more than one subgraph (control
    flow: an op of it cannot be timed alone).

    Example:
        >>> ops, empty = split_ops(flat_int8)
        >>> [o["op"] for o in ops][:2]
        ['CONV_2D', 'MAX_POOL_2D']
    """
    fu = _flatbuffer_utils()
    model = fu.read_model_from_bytearray(bytearray(tflite_bytes))
    if len(model.subgraphs) != 1:
        raise ValueError(f"op_profile times the ops of a single-subgraph model; this one "
                         f"has {len(model.subgraphs)} subgraphs (control flow such as "
                         "WHILE / IF); export with a fixed sequence length (unrolled)")
    sub = model.subgraphs[0]
    ops = []
    for i, op in enumerate(sub.operators):
        name = _op_name(model, op)
        ins = [t for t in (op.inputs or []) if t >= 0 and not _constant(model, sub.tensors[t])
               and not sub.tensors[t].isVariable]
        first = sub.tensors[op.outputs[0]]
        ops.append({"index": i, "op": name,
                    "inputs": [tuple(int(d) for d in sub.tensors[t].shape) for t in ins],
                    "output": tuple(int(d) for d in first.shape),
                    "dtype": TYPE_NAMES.get(int(first.type), str(first.type)),
                    "macs": int(_macs(model, op, name)),
                    "flatbuffer": _submodel(model, [op], ins, list(op.outputs))})
    first_in = int(sub.inputs[0])
    empty = _submodel(model, [], [first_in], [first_in])
    return ops, empty


def op_profile(tflite_bytes, runtime: str = "litert", runs: Optional[int] = None,
               num_threads: int = 1) -> OpProfile:
    """Per-op invoke time of `tflite_bytes` on `runtime` (``'litert'``:
    the LiteRT interpreter with its default XNNPACK delegate, `num_threads`
    threads; ``'tflm'``: TFLite-Micro's reference kernels in a worker
    process). `runs`: timed invokes per model (default 300 for LiteRT, 20 for
    TFLite-Micro). See the module docstring for the method.

    Example:
        >>> prof = op_profile(flat_int8, "tflm")
        >>> round(prof.whole_ms, 3), round(prof.floor_ms, 3)
        (0.41, 0.002)
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r}: use one of {RUNTIMES}")
    if not isinstance(tflite_bytes, (bytes, bytearray)) or bytes(tflite_bytes[4:8]) != b"TFL3":
        raise ValueError("op_profile takes TFLite flatbuffer bytes (kprune.export.to_tflite); "
                         f"got {type(tflite_bytes).__name__}")
    if runs is not None and (isinstance(runs, bool) or int(runs) != runs or runs < 1):
        raise ValueError(f"runs={runs!r} must be a positive integer (invokes timed per model)")
    ops, empty = split_ops(bytes(tflite_bytes))
    flats = [bytes(tflite_bytes), empty] + [o["flatbuffer"] for o in ops]
    if runtime == "litert":
        from kprune.runtime.litert import interleaved_latency

        stats = interleaved_latency(flats, num_threads=num_threads, runs=int(runs or 300))
    else:
        from kprune.runtime.tflm import interleaved_latency

        stats = interleaved_latency(flats, runs=int(runs or 20), warmup=2)
    floor = stats[1].median_ms
    times = [OpTime(index=o["index"], op=o["op"], inputs=o["inputs"], output=o["output"],
                    dtype=o["dtype"], macs=o["macs"], ms=max(0.0, s.median_ms - floor),
                    raw_ms=s.median_ms) for o, s in zip(ops, stats[2:])]
    return OpProfile(runtime=runtime, kernels=stats[0].kernels, ops=times,
                     whole_ms=stats[0].median_ms, floor_ms=floor)
