"""Flatten and Reshape: where each channel lands after the reshape."""

import numpy as np
from keras import layers

from kprune.core.handlers.base import ChannelHandler, ChannelKeepingOp, register_handler


def _spatial_size(shape):
    n = 1
    for d in shape[:-1]:
        n *= int(d)
    return n


class FlattenHandler(ChannelHandler):
    """(…, C) -> (prod(…) * C,): row-major, so position p holds channel p % C."""

    layer_types = (layers.Flatten,)
    is_structural = True

    def propagate(self, call, ctx):
        fmt = getattr(call.layer, "data_format", "channels_last")
        if fmt not in (None, "channels_last"):
            raise ValueError(
                f"layer '{call.path}' (Flatten) uses data_format='{fmt}'; "
                "kprune supports channels_last models only")
        shape = ctx.tensor(call.inputs[0]).shape
        layout = ctx.input_layout(call)
        if len(shape) <= 1:
            return [layout]
        return [np.tile(layout, _spatial_size(shape))]


class ReshapeHandler(ChannelHandler):
    """Reshape that keeps the channel axis last, or flattens everything."""

    layer_types = (layers.Reshape,)
    is_structural = True

    def propagate(self, call, ctx):
        in_shape = ctx.tensor(call.inputs[0]).shape
        out_shape = ctx.tensor(call.outputs[0]).shape
        layout = ctx.input_layout(call)
        if in_shape and out_shape and out_shape[-1] == in_shape[-1] and (
                _spatial_size(in_shape) == _spatial_size(out_shape)):
            return [layout]
        if len(out_shape) == 1:
            return [np.tile(layout, _spatial_size(in_shape))]
        c, last = len(layout), out_shape[-1]
        if last is not None and c and last % c == 0 and in_shape[-1] == c:
            # Row-major: output row i holds channel i % C at every position
            # (Conv (H, W, C) -> Reshape((W, H * C)) -> GRU, a CRNN).
            return [np.tile(layout, last // c)]
        ctx.fix(layout, f"Reshape '{call.path}' moves the channel axis "
                f"({in_shape} -> {out_shape})")
        out = ctx.new_channels(call, out_shape[-1])
        ctx.fix(out, f"Reshape '{call.path}' output")
        return [out]

    def update_config(self, config, layer, in_keep, out_keep):
        target = list(config["target_shape"])
        if target and target[-1] != -1:
            target[-1] = len(out_keep)
        config["target_shape"] = tuple(target)


class PermuteHandler(ChannelKeepingOp):
    """Permute that keeps the channel axis last: channel-wise (the CRNN's
    (H, W, C) -> (W, H, C)). One that moves the channel axis is a boundary."""

    layer_types = (layers.Permute,)

    def keeps(self, call, ctx):
        dims = tuple(call.layer.dims)
        return bool(dims) and dims[-1] == len(dims)

    def why(self, call):
        return (f"Permute '{call.path}' moves the channel axis "
                f"(dims={tuple(call.layer.dims)})")


for _h in (FlattenHandler(), ReshapeHandler(), PermuteHandler()):
    register_handler(_h, first=False)
