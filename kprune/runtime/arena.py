"""The TFLite-Micro tensor arena, computed from the flatbuffer (no runtime).

TFLite-Micro's arena has a *head* (non-persistent: activations and scratch
buffers, laid out by its greedy memory planner) and a *tail* (persistent:
tensor structs, node/registration structs, per-op data such as per-channel
requantization multipliers and shifts, allocator objects).

The head is computed by replaying the planner's rules on the graph:

* every non-constant, non-variable tensor with bytes is a buffer; its size is
  rounded up to the 16-byte arena alignment;
* lifetimes count scopes: the graph's inputs (and outputs) are created at 0,
  operator ``i`` is scope ``i + 1``; an operator's outputs are created at its
  scope, its inputs are used until it; graph outputs live to the last scope;
* buffers are placed largest first (equal sizes: the later tensor first, the
  order the planner's stable sort leaves them in), each at the lowest offset
  where it fits between the buffers already placed that are alive at the same
  time (first fit), and the head is the highest end offset.

The tail is a per-op-type model measured once with TFLM's recording
allocator (`TAIL_PER_OP`, refit with
``python benchmarks/edge_arena.py --sections fit_tail --out /tmp/fit``):
a constant (allocator objects, one input and one output ``TfLiteTensor`` with
their quantization structs), 24 bytes per tensor (``TfLiteEvalTensor``), 64
per operator (``NodeAndRegistration``), a per-type constant (op data and
parsed builtin options) and, for CONV_2D / DEPTHWISE_CONV_2D /
FULLY_CONNECTED, two 16-byte-aligned int32 arrays of one entry per output
channel. On the tested models (LeNet-5, ResNet-20, MobileNetV2 0.35/96,
DS-CNN, pruned 0-70 %) the head is exact and the total within 16 bytes.

Example:
    >>> flat = kprune.export.to_tflite(model, "int8", representative_data=x[:100])
    >>> kprune.bench.arena_estimate(flat)
    10352
    >>> kprune.bench.tflm_arena_bytes(flat)     # the real runtime agrees
    10352
    >>> kprune.bench.arena_estimate(model)       # converts first (int8)
    10352
"""

import dataclasses
import warnings
from typing import Dict, List, Tuple

from kprune.runtime import flatbuffer

#: TFLite-Micro aligns arena buffers (and kernels' persistent buffers) to 16 bytes.
ALIGNMENT = 16
#: Bytes of one TfLiteEvalTensor (64-bit host) and one NodeAndRegistration.
EVAL_TENSOR_BYTES = 24
NODE_BYTES = 64
#: A persistent TfLiteTensor plus its per-tensor quantization struct, per graph
#: input/output beyond the first input and the first output (which are in the constant).
IO_TENSOR_BYTES = 64 + 32
#: Constant tail bytes (allocator, interpreter context, one input and one
#: output TfLiteTensor with quantization) of the recording allocator.
TAIL_CONSTANT = 719
#: Persistent tail bytes per operator type (op data + parsed options), fitted
#: by least squares on 22 one-op probes plus the 16 benchmark models (LeNet-5,
#: DS-CNN, ResNet-20, MobileNetV2 at 0/30/50/70 % pruning) measured with the
#: recording allocator of tflite-micro 0.dev20261023 (64-bit host).
TAIL_PER_OP = {
    "ADD": 70, "AVERAGE_POOL_2D": 74, "CONCATENATION": 87, "CONV_2D": 109,
    "DEPTHWISE_CONV_2D": 107, "FULLY_CONNECTED": 110, "HARD_SWISH": 28,
    "LEAKY_RELU": 28, "LOGISTIC": 12, "MAX_POOL_2D": 72, "MEAN": 70, "MUL": 55,
    "RESHAPE": 38, "SOFTMAX": 86, "TANH": 12,
}
#: Used for op types missing from `TAIL_PER_OP` (reported in `unmodelled_ops`).
TAIL_DEFAULT_OP = 64
#: Ops whose kernel keeps a per-output-channel multiplier and shift (int32 each).
PER_CHANNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def _align(n: int, a: int = ALIGNMENT) -> int:
    return (int(n) + a - 1) // a * a


@dataclasses.dataclass
class Buffer:
    tensor: int
    size: int  # aligned bytes
    first: int  # scope created
    last: int  # scope last used
    offset: int = -1


@dataclasses.dataclass
class ArenaEstimate:
    """The arena TFLite-Micro plans for a flatbuffer, computed by kprune."""

    total_bytes: int  # head + tail: what the recording allocator reports
    head_bytes: int  # planned non-persistent section (activations)
    tail_bytes: int  # persistent section (modelled)
    buffers: List[Buffer]  # the planned activation buffers with their offsets
    unmodelled_ops: List[str]  # op types priced with TAIL_DEFAULT_OP

    @property
    def min_arena_bytes(self) -> int:
        """The smallest `arena_size` that works (the total; TFLM may need up to
        15 bytes more to align an unaligned arena pointer)."""
        return self.total_bytes

    def peak_tensors(self) -> List[int]:
        """Tensor indices of the buffers ending at the head's high-water mark."""
        return [b.tensor for b in self.buffers if b.offset + b.size == self.head_bytes]

    def to_dict(self) -> Dict:
        d = dataclasses.asdict(self)
        d.pop("buffers")
        return d


def lifetimes(graph: flatbuffer.Graph) -> Dict[int, Tuple[int, int]]:
    """{tensor: (first scope, last scope)} following TFLM's allocation scopes."""
    life: Dict[int, List[int]] = {}
    for t in list(graph.inputs) + list(graph.outputs):
        life[t] = [0, 0]
    for i, op in enumerate(graph.operators):
        scope = i + 1
        for t in op.outputs:
            life[t] = [scope, scope]
        for t in op.inputs:
            if t < 0:
                continue
            if t in life:
                life[t][1] = scope
            else:
                life[t] = [-1, scope]  # constants; never planned
    last = len(graph.operators)
    for t in graph.outputs:
        life[t][1] = last
    return {k: (v[0], v[1]) for k, v in life.items()}


def plan(buffers: List[Buffer]) -> int:
    """Places `buffers` as TFLM's greedy planner does (sets `.offset`); returns
    the head size (highest end offset)."""
    # Stable descending sort of the buffers listed in reverse order: equal
    # sizes are placed later-tensor first.
    order = sorted(reversed(range(len(buffers))), key=lambda i: -buffers[i].size)
    placed: List[Buffer] = []  # sorted by offset (ties: insertion order)
    for i in order:
        b = buffers[i]
        offset = 0
        for p in placed:
            if p.first > b.last or b.first > p.last:
                continue
            if p.offset - offset >= b.size:
                break
            offset = max(offset, p.offset + p.size)
        b.offset = offset
        k = len(placed)
        while k > 0 and placed[k - 1].offset > offset:
            k -= 1
        placed.insert(k, b)
    return max((b.offset + b.size for b in buffers), default=0)


def tail_bytes(graph: flatbuffer.Graph) -> Tuple[int, List[str]]:
    """Modelled persistent bytes and the op types priced with the default."""
    total = TAIL_CONSTANT + EVAL_TENSOR_BYTES * len(graph.tensors)
    total += IO_TENSOR_BYTES * max(0, len(graph.inputs) - 1)
    total += IO_TENSOR_BYTES * max(0, len(graph.outputs) - 1)
    unmodelled = []
    for op in graph.operators:
        total += NODE_BYTES
        if op.name in TAIL_PER_OP:
            total += TAIL_PER_OP[op.name]
        else:
            total += TAIL_DEFAULT_OP
            if op.name not in unmodelled:
                unmodelled.append(op.name)
        if op.name in PER_CHANNEL_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0:
            w = graph.tensors[op.inputs[1]].shape
            if w:
                channels = w[-1] if op.name == "DEPTHWISE_CONV_2D" else w[0]
                total += 2 * _align(4 * channels)
    return _align(total), unmodelled


def estimate(tflite_bytes) -> ArenaEstimate:
    """`ArenaEstimate` of a TFLite flatbuffer (see `arena_estimate`)."""
    graph = flatbuffer.parse(tflite_bytes)
    life = lifetimes(graph)
    buffers = []
    for t in graph.tensors:
        if t.constant or t.is_variable or t.nbytes == 0 or t.index not in life:
            continue
        first, last = life[t.index]
        if first < 0:
            continue
        buffers.append(Buffer(t.index, _align(t.nbytes), first, last))
    head = plan(buffers)
    tail, unmodelled = tail_bytes(graph)
    if graph.n_subgraphs > 1:
        unmodelled.append("(control-flow subgraphs)")
    return ArenaEstimate(head + tail, head, tail, buffers, unmodelled)
