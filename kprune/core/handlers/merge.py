"""Handlers for layers with several inputs: element-wise merges couple their
inputs' channels; Concatenate on the channel axis places them side by side."""

import numpy as np
from keras import layers

from kprune.core.handlers.base import (ChannelHandler, channels_last_axis,
                                       follow_axes_elementwise, register_handler)


def couple_elementwise(call, ctx, layouts):
    """Couples element-wise operands channel by channel; an operand whose
    channel axis is broadcast (length 1 against N) freezes both sides."""
    out_len = ctx.tensor(call.outputs[0]).channels
    full = [l for l in layouts if len(l) == out_len]
    for layout in layouts:
        if len(layout) != out_len:
            ctx.fix(layout, f"broadcast channel axis into '{call.path}'")
            for f in full:
                ctx.fix(f, f"broadcast channel axis in '{call.path}'")
    for layout in full[1:]:
        ctx.couple(full[0], layout)
    if not full:
        out = ctx.new_channels(call, out_len)
        ctx.fix(out, f"broadcast output of '{call.path}'")
        return [out]
    return [full[0]]


class ElementwiseMergeHandler(ChannelHandler):
    layer_types = (layers.Add, layers.Subtract, layers.Multiply,
                   layers.Average, layers.Maximum, layers.Minimum)
    follows_axes = True

    def propagate(self, call, ctx):
        result = couple_elementwise(
            call, ctx, [ctx.layout(t) for t in call.inputs])
        follow_axes_elementwise(call, ctx)
        return result


class ConcatenateHandler(ChannelHandler):
    layer_types = (layers.Concatenate,)
    is_structural = True

    def propagate(self, call, ctx):
        layouts = [ctx.layout(t) for t in call.inputs]
        rank = len(ctx.tensor(call.outputs[0]).shape)
        if channels_last_axis(call.layer.axis, rank):
            return [np.concatenate(layouts)]
        # Joined along another axis: channel c of every input is one channel.
        for layout in layouts[1:]:
            ctx.couple(layouts[0], layout)
        return [layouts[0]]


for _h in (ElementwiseMergeHandler(), ConcatenateHandler()):
    register_handler(_h, first=False)
