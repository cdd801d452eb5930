"""A small read-only parser of TFLite flatbuffers (no TensorFlow import).

Reads what the arena model needs from subgraph 0 and the buffers: tensors
(shape, type, constant or not, quantization array lengths), operators (op
name, inputs, outputs, intermediates) and the graph's inputs and outputs.
Written from the public TFLite schema's field order; every offset is
bounds-checked, so a truncated or corrupt file raises `ValueError` instead
of reading garbage.

Example:
    >>> g = kprune.runtime.flatbuffer.parse(flat)
    >>> [op.name for op in g.operators][:2], g.tensors[0].shape
    (['CONV_2D', 'MAX_POOL_2D'], (1, 28, 28, 6))
"""

import dataclasses
import struct
from typing import List, Optional, Tuple

#: Builtin operator codes (TFLite schema) of the ops kprune's models produce.
OP_NAMES = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D",
    4: "DEPTHWISE_CONV_2D", 5: "DEPTH_TO_SPACE", 6: "DEQUANTIZE", 8: "FLOOR",
    9: "FULLY_CONNECTED", 11: "L2_NORMALIZATION", 14: "LOGISTIC", 17: "MAX_POOL_2D",
    18: "MUL", 19: "RELU", 21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR",
    25: "SOFTMAX", 26: "SPACE_TO_DEPTH", 28: "TANH", 32: "CUSTOM", 34: "PAD",
    36: "GATHER", 37: "BATCH_TO_SPACE_ND", 38: "SPACE_TO_BATCH_ND", 39: "TRANSPOSE",
    40: "MEAN", 41: "SUB", 42: "DIV", 43: "SQUEEZE", 45: "STRIDED_SLICE", 47: "EXP",
    49: "SPLIT", 50: "LOG_SOFTMAX", 53: "CAST", 54: "PRELU", 55: "MAXIMUM",
    57: "MINIMUM", 60: "PADV2", 65: "SLICE", 67: "TRANSPOSE_CONV", 70: "EXPAND_DIMS",
    74: "SUM", 75: "SQRT", 76: "RSQRT", 77: "SHAPE", 82: "REDUCE_MAX", 83: "PACK",
    88: "UNPACK", 92: "SQUARE", 97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU",
    99: "SQUARED_DIFFERENCE", 100: "MIRROR_PAD", 101: "ABS", 102: "SPLIT_V",
    111: "ELU", 114: "QUANTIZE", 117: "HARD_SWISH", 126: "BATCH_MATMUL",
}

#: Bytes per element of each TFLite tensor type (schema TensorType codes).
TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16,
              12: 8, 15: 4, 16: 2, 18: 2}
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool",
              7: "int16", 9: "int8", 10: "float64"}


@dataclasses.dataclass
class Tensor:
    index: int
    shape: Tuple[int, ...]
    type: int
    constant: bool  # its buffer holds data (weights, biases, shape constants)
    is_variable: bool
    n_scales: int  # quantization scale array length (0: unquantized)
    n_zero_points: int

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(int(d), 0)
        return n * TYPE_BYTES.get(self.type, 4)


@dataclasses.dataclass
class Operator:
    name: str
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    intermediates: Tuple[int, ...]


@dataclasses.dataclass
class Graph:
    tensors: List[Tensor]
    operators: List[Operator]
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    n_subgraphs: int


class _Reader:
    def __init__(self, data: bytes):
        self.b = data

    def _need(self, pos: int, n: int):
        if pos < 0 or pos + n > len(self.b):
            raise ValueError(f"truncated or corrupt TFLite flatbuffer: a field at byte {pos} "
                             f"lies past its end ({len(self.b)} bytes); re-export it with "
                             f"kprune.export.to_tflite")

    def u32(self, pos):
        self._need(pos, 4)
        return struct.unpack_from("<I", self.b, pos)[0]

    def i32(self, pos):
        self._need(pos, 4)
        return struct.unpack_from("<i", self.b, pos)[0]

    def field(self, table: int, i: int) -> int:
        """Absolute position of field i of the table at `table`, or 0 if absent."""
        vt = table - self.i32(table)
        self._need(vt, 4)
        vt_len = struct.unpack_from("<H", self.b, vt)[0]
        off = 4 + 2 * i
        if off + 2 > vt_len:
            return 0
        self._need(vt + off, 2)
        rel = struct.unpack_from("<H", self.b, vt + off)[0]
        return table + rel if rel else 0

    def scalar(self, table, i, fmt, default=0):
        pos = self.field(table, i)
        if not pos:
            return default
        self._need(pos, struct.calcsize(fmt))
        return struct.unpack_from("<" + fmt, self.b, pos)[0]

    def table(self, table, i) -> int:
        pos = self.field(table, i)
        return pos + self.u32(pos) if pos else 0

    def vector(self, table, i) -> Optional[Tuple[int, int]]:
        """(start, length) of a vector field, or None."""
        pos = self.field(table, i)
        if not pos:
            return None
        start = pos + self.u32(pos)
        n = self.u32(start)
        return start + 4, n

    def ints(self, table, i) -> Tuple[int, ...]:
        v = self.vector(table, i)
        if v is None:
            return ()
        start, n = v
        self._need(start, 4 * n)
        return struct.unpack_from(f"<{n}i", self.b, start)

    def tables(self, table, i) -> List[int]:
        v = self.vector(table, i)
        if v is None:
            return []
        start, n = v
        return [start + 4 * k + self.u32(start + 4 * k) for k in range(n)]

    def length(self, table, i) -> int:
        v = self.vector(table, i)
        return v[1] if v else 0


def parse(tflite_bytes) -> Graph:
    """Subgraph 0 of a TFLite flatbuffer as a `Graph`.

    Raises:
        TypeError: not bytes.
        ValueError: no 'TFL3' identifier, or truncated/corrupt.
    """
    if not isinstance(tflite_bytes, (bytes, bytearray, memoryview)):
        raise TypeError(f"tflite_bytes must be TFLite flatbuffer bytes, got "
                        f"{type(tflite_bytes).__name__}; convert a Keras model with "
                        f"kprune.export.to_tflite(model, 'int8', representative_data=...)")
    data = bytes(tflite_bytes)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("tflite_bytes is not a TFLite flatbuffer (no 'TFL3' identifier at "
                         "byte 4); pass the bytes of kprune.export.to_tflite(...)")
    r = _Reader(data)
    try:
        root = r.u32(0)
        subgraphs = r.tables(root, 2)
        if not subgraphs:
            raise ValueError("the TFLite flatbuffer has no subgraph")
        buffers = r.tables(root, 4)
        codes = []
        for oc in r.tables(root, 1):
            code = max(r.scalar(oc, 0, "b"), r.scalar(oc, 3, "i"))
            codes.append(OP_NAMES.get(code, f"BUILTIN_{code}"))
        sg = subgraphs[0]
        tensors = []
        for k, t in enumerate(r.tables(sg, 0)):
            buf = r.scalar(t, 2, "I")
            constant = False
            if 0 < buf < len(buffers):
                constant = r.length(buffers[buf], 0) > 0 or r.scalar(buffers[buf], 2, "Q") > 0
            q = r.table(t, 4)
            tensors.append(Tensor(
                index=k, shape=tuple(r.ints(t, 0)), type=r.scalar(t, 1, "b"),
                constant=constant, is_variable=bool(r.scalar(t, 5, "b")),
                n_scales=r.length(q, 2) if q else 0,
                n_zero_points=r.length(q, 3) if q else 0))
        ops = []
        for op in r.tables(sg, 3):
            idx = r.scalar(op, 0, "I")
            if idx >= len(codes):
                raise ValueError(f"corrupt TFLite flatbuffer: opcode index {idx} of "
                                 f"{len(codes)}")
            ops.append(Operator(codes[idx], tuple(r.ints(op, 1)), tuple(r.ints(op, 2)),
                                tuple(r.ints(op, 8))))
        return Graph(tensors, ops, tuple(r.ints(sg, 1)), tuple(r.ints(sg, 2)),
                     len(subgraphs))
    except struct.error as err:
        raise ValueError(f"truncated or corrupt TFLite flatbuffer ({err}); re-export it "
                         f"with kprune.export.to_tflite") from err
