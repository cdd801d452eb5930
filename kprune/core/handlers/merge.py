"""Handlers for layers with several inputs: element-wise merges couple their
inputs' channels; Concatenate on the channel axis places them side by side.
Its inverse, `ops.split` into equal sections along the channel axis (the
SwiGLU feed-forward of keras-hub's Moonshine decoder splits one projection
into values and gates), couples channel i of every section, so the
sections stay equal; along another axis each section keeps the channels.

Example:
    >>> x1, gate = keras.ops.split(keras.layers.Dense(64)(x), 2, axis=-1)
    >>> # 'dense' is one group of 32 units: unit i is channels i and 32 + i
"""

import numpy as np
from keras import layers

from kprune.core._keras_compat import keras_ops_modules

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


class SplitOpHandler(ChannelHandler):
    layer_types = tuple(c for c in (getattr(keras_ops_modules()[1], "Split", None),) if c)
    is_structural = True
    follows_axes = True

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        rank = len(ctx.tensor(call.inputs[0]).shape)
        sections = call.layer.indices_or_sections
        n = len(call.outputs)
        split_axis = int(call.layer.axis)
        split_axis = split_axis - rank - 1 if split_axis > 0 else split_axis
        for pos, units in ctx.axes_of(call.inputs[0]).items():
            if pos == split_axis:
                ctx.fix(units, f"ops.split '{call.path}' splits the axis that holds them")
                continue
            for out in call.outputs:
                ctx.set_axis_layout(out, pos, units)
        if not channels_last_axis(call.layer.axis, rank):
            return [layout] * n
        if isinstance(sections, int) and len(layout) % sections == 0:
            size = len(layout) // sections
            parts = [layout[k * size:(k + 1) * size] for k in range(sections)]
            for part in parts[1:]:
                ctx.couple(parts[0], part)
            return parts
        why = (f"ops.split '{call.path}' splits the channel axis at fixed "
               f"indices {sections}")
        ctx.fix(layout, why)
        outs = []
        for k in range(n):
            out = ctx.new_channels(call, ctx.tensor(call.outputs[k]).channels, k)
            ctx.fix(out, why)
            outs.append(out)
        return outs


for _h in (ElementwiseMergeHandler(), ConcatenateHandler(), SplitOpHandler()):
    if _h.layer_types:
        register_handler(_h, first=False)
