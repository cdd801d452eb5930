"""Re-width a converted flatbuffer without converting again (`WidthMap`).

Converting a Keras model to a TFLite flatbuffer takes seconds to tens of
seconds (MobileNetV2 0.35 at 96x96: 16-25 s here), while the runtime times it
in a fraction of a second. A search over channel widths that converts every
candidate spends nearly all its time in the converter. The latency of an int8
or float32 flatbuffer depends on its operators, their tensor shapes and types,
not on the weight values, so a candidate's flatbuffer can be made by editing
the original's: every tensor dimension that carries a group's channels is set
to the candidate width, constant buffers (weights, biases) and per-channel
quantization arrays are cut to their first channels, and RESHAPE shape
constants follow.

Which dimension carries which group is read off two conversions: the original
(`flat`) and a *probe* with every group cut to a width whose ratio to its full
width is unique (`probe_widths`). A dimension ``d`` that becomes ``d'`` belongs
to the group whose ratio ``d' / d`` it shows, with multiplier ``d // channels``
(a Flatten's features are ``H * W * channels``). `WidthMap.infer` then checks
that the edit reproduces the probe's structure exactly (every tensor shape,
buffer size, quantization array length and shape constant); a graph it cannot
follow (a concatenation of two groups, a channel split) is a ValueError, and a
caller converts as before.

Example:
    >>> wm = WidthMap.infer(flat, probe_flat, {"conv1": 6, "conv2": 16},
    ...                     {"conv1": 5, "conv2": 13})
    >>> small = wm.resize({"conv1": 2, "conv2": 8})   # flatbuffer bytes
"""

import copy
import time
from fractions import Fraction
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from kprune.runtime.flatbuffer import OP_NAMES

__all__ = ["WidthMap", "probe_widths"]

#: numpy dtype of each TFLite tensor type (schema TensorType codes).
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
           7: np.int16, 9: np.int8, 10: np.float64, 15: np.uint32, 16: np.uint16}
#: Ops whose int32 constant inputs are parameters of the op (not weights or
#: biases): their values may carry a width (RESHAPE's shape) and are checked.
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def _fu():
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils


def probe_widths(channels: Mapping[str, int], min_channels: int = 1) -> Dict[str, int]:
    """A width per group whose ratio to the group's channels is unique among
    the groups (and not 1), so that a probe conversion at these widths tells
    every group's dimensions apart. Groups that cannot shrink are left out.

    Example:
        >>> probe_widths({"a": 16, "b": 16, "c": 8})
        {'a': 12, 'b': 11, 'c': 5}
    """
    used, out = set(), {}
    for name, c in channels.items():
        c = int(c)
        lo = max(int(min_channels), 1)
        if c <= lo:
            continue
        start = max(lo, int(round(0.75 * c)))
        order = list(range(min(start, c - 1), lo - 1, -1)) + list(range(start + 1, c))
        for w in order:
            if Fraction(w, c) not in used:
                used.add(Fraction(w, c))
                out[name] = w
                break
        else:
            raise ValueError(f"no probe width for group '{name}' ({c} channels) has a ratio "
                             f"distinct from the other groups'")
    return out


def _op_names(model) -> List[str]:
    fu = _fu()
    names = []
    for op in model.subgraphs[0].operators:
        code = int(fu.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex]))
        names.append(OP_NAMES.get(code, f"BUILTIN_{code}"))
    return names


def _data(model, tensor) -> Optional[np.ndarray]:
    if not 0 < tensor.buffer < len(model.buffers):
        return None
    d = model.buffers[tensor.buffer].data
    if d is None or len(d) == 0:
        return None
    return np.frombuffer(np.asarray(d, np.uint8).tobytes(), _DTYPES.get(int(tensor.type),
                                                                         np.uint8))


def _match(d_a: int, d_b: int, ratios: Dict[str, Tuple[int, int]]):
    """(group, multiplier) of a dimension d_a that the probe made d_b."""
    hits = [(g, d_a // c) for g, (c, w) in ratios.items()
            if d_a % c == 0 and (d_a // c) * w == d_b]
    return hits[0] if len(hits) == 1 else None


class WidthMap:
    """Where each prunable group's width lives in a converted flatbuffer, and
    `resize` to make the flatbuffer of any widths without the converter (see
    the module docstring). Build it with `WidthMap.infer`."""

    def __init__(self, model, channels: Dict[str, int], dims, values):
        self._model = model                  # flatbuffer_utils ModelT of the original
        self.channels = dict(channels)       # {group: full width}
        self._dims = dims                    # {tensor: {axis: (group, multiplier)}}
        self._values = values                # {tensor: {position: (group, multiplier)}}
        self.resized = 0                     # flatbuffers made by `resize`
        self.seconds = 0.0                   # wall time spent in `resize`

    @property
    def groups(self) -> List[str]:
        """The groups whose width shows in some tensor."""
        return sorted({g for ax in self._dims.values() for g, _ in ax.values()})

    @classmethod
    def infer(cls, flat: bytes, probe_flat: bytes, channels: Mapping[str, int],
              probe: Mapping[str, int]) -> "WidthMap":
        """The map from the original flatbuffer `flat` (groups at `channels`)
        and `probe_flat`, the same model converted with the groups at `probe`
        (`probe_widths`). ValueError when the two graphs differ in more than
        widths or an edit of `flat` to the probe widths does not reproduce
        `probe_flat`'s tensors (the graph mixes groups in one dimension)."""
        fu = _fu()
        a = _unshared(fu.read_model_from_bytearray(bytearray(flat)))
        b = _unshared(fu.read_model_from_bytearray(bytearray(probe_flat)))
        if len(a.subgraphs) != 1 or len(b.subgraphs) != 1:
            raise ValueError("WidthMap handles single-subgraph flatbuffers only")
        sa, sb = a.subgraphs[0], b.subgraphs[0]
        pair = _correspondence(a, b)
        ratios = {g: (int(channels[g]), int(w)) for g, w in probe.items()}
        names = _op_names(a)
        shape_inputs = set()
        for name, op in zip(names, sa.operators):
            if name not in _WEIGHT_OPS:
                shape_inputs.update(t for t in op.inputs if t >= 0)
        dims, values = {}, {}
        for i, j in pair.items():
            ta, tb = sa.tensors[i], sb.tensors[j]
            shp_a = [int(d) for d in (ta.shape if ta.shape is not None else [])]
            shp_b = [int(d) for d in (tb.shape if tb.shape is not None else [])]
            if len(shp_a) != len(shp_b) or int(ta.type) != int(tb.type):
                raise ValueError(f"tensor {i} ({ta.name!r}) changes rank or type at the "
                                 f"probe widths")
            for ax, (da, db) in enumerate(zip(shp_a, shp_b)):
                if da == db:
                    continue
                hit = _match(da, db, ratios)
                if hit is None:
                    raise ValueError(f"tensor {i} ({ta.name!r}) axis {ax}: {da} -> {db} is "
                                     f"not one group's width (e.g. a concatenation)")
                dims.setdefault(i, {})[ax] = hit
            if i in shape_inputs and int(ta.type) in (2, 4):
                va, vb = _data(a, ta), _data(b, tb)
                if va is not None and vb is not None and va.shape == vb.shape:
                    for pos, (x, y) in enumerate(zip(va.tolist(), vb.tolist())):
                        if x != y:
                            hit = _match(int(x), int(y), ratios)
                            if hit is None:
                                raise ValueError(f"constant tensor {i} ({ta.name!r}) value "
                                                 f"{x} -> {y} is not one group's width")
                            values.setdefault(i, {})[pos] = hit
        wm = cls(a, channels, dims, values)
        wm._check(b, probe, shape_inputs, pair)
        return wm

    def _check(self, b, probe, shape_inputs, pair):
        fu = _fu()
        r = fu.read_model_from_bytearray(bytearray(self.resize(probe)))
        self.resized -= 1
        sr, sb = r.subgraphs[0], b.subgraphs[0]
        for i, j in pair.items():
            tr, tb = sr.tensors[i], sb.tensors[j]
            why = None
            if list(tr.shape if tr.shape is not None else []) != \
                    list(tb.shape if tb.shape is not None else []):
                why = "shape"
            else:
                dr, db = _data(r, tr), _data(b, tb)
                if (dr is None) != (db is None) or (dr is not None and dr.size != db.size):
                    why = "buffer size"
                elif i in shape_inputs and dr is not None and int(tr.type) in (2, 4) \
                        and not np.array_equal(dr, db):
                    why = "shape constant"
                else:
                    qr, qb = tr.quantization, tb.quantization
                    lr = len(qr.scale) if qr is not None and qr.scale is not None else 0
                    lb = len(qb.scale) if qb is not None and qb.scale is not None else 0
                    if lr != lb:
                        why = "quantization scales"
            if why:
                raise ValueError(f"re-widthing the flatbuffer to the probe widths does not "
                                 f"reproduce the probe's tensor {i} ({tr.name!r}): {why}")

    def resize(self, widths: Mapping[str, int]) -> bytes:
        """The original flatbuffer with each group in `widths` at that many
        channels (its first ones; groups not named keep their width).

        Example:
            >>> interpreter_latency(wm.resize({"conv1": 3}))
        """
        t0 = time.perf_counter()
        for g, w in widths.items():
            if g in self.channels and not 1 <= int(w) <= self.channels[g]:
                raise ValueError(f"width {w} of group '{g}' must be in [1, "
                                 f"{self.channels[g]}]")
        fu = _fu()
        src = self._model
        out = copy.copy(src)
        sub = copy.copy(src.subgraphs[0])
        tensors = list(sub.tensors)
        buffers = list(src.buffers)

        def new(group, mult, full):
            if group not in widths:
                return full
            return mult * int(widths[group])

        for i, axes in self._dims.items():
            t = copy.copy(tensors[i])
            old = [int(d) for d in t.shape]
            shape = list(old)
            for ax, (g, m) in axes.items():
                shape[ax] = new(g, m, old[ax])
            if shape == old:
                continue
            t.shape = np.asarray(shape, dtype=np.int32)
            if t.shapeSignature is not None and len(t.shapeSignature) == len(shape):
                sig = [int(s) for s in t.shapeSignature]
                t.shapeSignature = np.asarray([s if s < 0 else shape[k]
                                               for k, s in enumerate(sig)], dtype=np.int32)
            data = _data(src, tensors[i])
            if data is not None:
                arr = data.reshape(old)
                for ax, (g, m) in axes.items():
                    if shape[ax] == old[ax]:
                        continue
                    c = self.channels[g]
                    split = arr.reshape(arr.shape[:ax] + (m, c) + arr.shape[ax + 1:])
                    split = np.take(split, np.arange(int(widths[g])), axis=ax + 1)
                    arr = split.reshape(arr.shape[:ax] + (m * int(widths[g]),)
                                        + arr.shape[ax + 1:])
                buf = copy.copy(buffers[t.buffer])
                buf.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8)
                buffers[t.buffer] = buf
            q = t.quantization
            if q is not None and q.scale is not None and len(q.scale) > 1:
                ax = int(q.quantizedDimension or 0)
                if ax in axes and shape[ax] != old[ax]:
                    q = copy.copy(q)
                    q.scale = np.asarray(q.scale)[:shape[ax]]
                    if q.zeroPoint is not None and len(q.zeroPoint) > 1:
                        q.zeroPoint = np.asarray(q.zeroPoint)[:shape[ax]]
                    t.quantization = q
            tensors[i] = t
        for i, positions in self._values.items():
            t = tensors[i]
            vals = _data(src, t).copy()
            for pos, (g, m) in positions.items():
                vals[pos] = new(g, m, int(vals[pos]))
            buf = copy.copy(buffers[t.buffer])
            buf.data = np.frombuffer(vals.tobytes(), np.uint8)
            buffers[t.buffer] = buf
        ops = []
        for op in sub.operators:  # RESHAPE's new_shape option mirrors its shape constant
            opts = getattr(op, "builtinOptions", None)
            ns = getattr(opts, "newShape", None)
            if ns is not None and len(op.inputs) > 1 and op.inputs[1] in self._values:
                op = copy.copy(op)
                op.builtinOptions = copy.copy(opts)
                op.builtinOptions.newShape = np.asarray(
                    _data_of(buffers, tensors[op.inputs[1]]), dtype=np.int32)
            ops.append(op)
        sub.tensors, sub.operators = tensors, ops
        out.subgraphs = [sub] + list(src.subgraphs[1:])
        out.buffers = buffers
        self.resized += 1
        flat = bytes(fu.convert_object_to_bytearray(out))
        self.seconds += time.perf_counter() - t0
        return flat


def _constant(model, tensor) -> bool:
    return _data(model, tensor) is not None


def _unshared(model):
    """`model` with every constant tensor used by more than one operator input
    copied per use, and every constant tensor on a buffer of its own (the
    converter shares equal constants, e.g. zero biases of two layers of one
    width; each may take another width)."""
    for sub in model.subgraphs:
        seen, bufs = set(), set()
        for t in sub.tensors:  # equal constants may also share one buffer
            if _constant(model, t):
                if t.buffer in bufs:
                    model.buffers.append(copy.copy(model.buffers[t.buffer]))
                    t.buffer = len(model.buffers) - 1
                bufs.add(t.buffer)
        for op in sub.operators:
            ins = [int(t) for t in (op.inputs if op.inputs is not None else [])]
            for k, t in enumerate(ins):
                if t < 0 or not _constant(model, sub.tensors[t]):
                    continue
                if t in seen:
                    dup = copy.copy(sub.tensors[t])
                    model.buffers.append(copy.copy(model.buffers[dup.buffer]))
                    dup.buffer = len(model.buffers) - 1
                    sub.tensors.append(dup)
                    ins[k] = len(sub.tensors) - 1
                seen.add(ins[k])
            op.inputs = ins
    return model


def _correspondence(a, b) -> Dict[int, int]:
    """{tensor of a: tensor of b} matched by position in the operators'
    inputs and outputs (the converter numbers constants differently from one
    conversion to the next); ValueError when the op lists differ."""
    sa, sb = a.subgraphs[0], b.subgraphs[0]
    if _op_names(a) != _op_names(b):
        raise ValueError("the probe conversion has other operators than the original "
                         "(the converter chose other ops at the probe widths)")
    pair: Dict[int, int] = {}

    def link(x, y):
        x, y = int(x), int(y)
        if (x < 0) != (y < 0) or pair.get(x, y) != y:
            raise ValueError("the probe conversion wires its operators differently from "
                             "the original")
        if x >= 0:
            pair[x] = y

    for oa, ob in zip(sa.operators, sb.operators):
        la = [list(oa.inputs if oa.inputs is not None else []),
              list(oa.outputs if oa.outputs is not None else [])]
        lb = [list(ob.inputs if ob.inputs is not None else []),
              list(ob.outputs if ob.outputs is not None else [])]
        for xa, xb in zip(la, lb):
            if len(xa) != len(xb):
                raise ValueError("the probe conversion wires its operators differently "
                                 "from the original")
            for x, y in zip(xa, xb):
                link(x, y)
    for xa, xb in ((sa.inputs, sb.inputs), (sa.outputs, sb.outputs)):
        for x, y in zip(list(xa), list(xb)):
            link(x, y)
    if len(set(pair.values())) != len(pair):
        raise ValueError("the probe conversion wires its operators differently from the "
                         "original")
    return pair


def _data_of(buffers, tensor):
    return np.frombuffer(np.asarray(buffers[tensor.buffer].data, np.uint8).tobytes(),
                         _DTYPES.get(int(tensor.type), np.uint8))
