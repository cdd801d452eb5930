"""`keras.ops` that select or pad positions and keep every channel:
`x[:, 0, :]` (a BERT pooler's first token, `GetItem`), `ops.pad` over
spatial or sequence axes (`Pad`) and `ops.expand_dims` before the last
axis (`ExpandDims`). Over the channel axis they are
boundaries for the channels they read."""

import keras

from kprune.core._keras_compat import keras_ops_modules
from kprune.core.handlers.base import ChannelKeepingOp, register_handler

_nn, _np = keras_ops_modules()


def _full(index) -> bool:
    return isinstance(index, slice) and index == slice(None)


def _keeps_channels(key, rank: int) -> bool:
    """True when indexing with `key` leaves the last axis whole."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(isinstance(k, keras.KerasTensor) or k is None for k in key):
        return False  # tensor indices or new axes: not worth the risk
    if Ellipsis in key:
        tail = key[key.index(Ellipsis) + 1:]
        return not tail or _full(tail[-1])
    if len(key) < rank:
        return True  # trailing axes (the channel axis among them) untouched
    return len(key) == rank and _full(key[-1])


class GetItemHandler(ChannelKeepingOp):
    mixing = "selects along the channel axis"
    layer_types = tuple(c for c in (getattr(_np, "GetItem", None),) if c)

    def keeps(self, call, ctx):
        args = call.node.arguments.args
        rank = len(ctx.tensor(call.inputs[0]).shape) + 1
        return len(args) == 2 and len(call.inputs) == 1 and _keeps_channels(args[1], rank)


class PadHandler(ChannelKeepingOp):
    mixing = "pads along the channel axis"
    layer_types = tuple(c for c in (getattr(_np, "Pad", None),) if c)

    def keeps(self, call, ctx):
        width = getattr(call.layer, "pad_width", None)
        try:
            last = tuple(width[-1])
        except (TypeError, IndexError):
            return False
        return last == (0, 0) and len(call.inputs) == 1


class ExpandDimsHandler(ChannelKeepingOp):
    """`ops.expand_dims` before the channel axis (a padding mask made
    (batch, 1, seq) for attention) keeps the channels; a new last axis is
    a boundary."""

    mixing = "adds an axis after the channels"
    layer_types = tuple(c for c in (getattr(_np, "ExpandDims", None),) if c)

    def keeps(self, call, ctx):
        axes = getattr(call.layer, "axis", None)
        axes = axes if isinstance(axes, (list, tuple)) else [axes]
        rank = len(ctx.tensor(call.outputs[0]).shape) + 1
        return len(call.inputs) == 1 and all(
            isinstance(a, int) and a % rank != rank - 1 for a in axes)


for _h in (GetItemHandler(), PadHandler(), ExpandDimsHandler()):
    if _h.layer_types:
        register_handler(_h, first=False)
