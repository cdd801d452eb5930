"""`keras.ops` reductions (mean, sum, max, min, ...) in functional graphs and
traced composite layers: over spatial axes (a squeeze-excitation's global
mean) they pass channels through; over the channel axis they mix them."""

from kprune.core._keras_compat import keras_ops_modules
from kprune.core.handlers.base import ChannelHandler, normalized_axes, register_handler

_nn, _np = keras_ops_modules()


def _classes(module, names):
    return tuple(getattr(module, n) for n in names if hasattr(module, n))


class ReduceOpHandler(ChannelHandler):
    """A reduction that keeps the channel axis is channel-wise; one over the
    channel axis (or all axes) is a boundary for the channels it reads."""

    layer_types = _classes(_np, ("Mean", "Sum", "Max", "Min", "Prod", "Var",
                                 "Std", "Amax", "Amin"))
    is_structural = True

    def propagate(self, call, ctx):
        op = call.layer
        layout = ctx.input_layout(call)
        rank = len(ctx.tensor(call.inputs[0]).shape) + 1
        axis = getattr(op, "axis", None)
        keepdims = bool(getattr(op, "keepdims", False))
        out_width = ctx.tensor(call.outputs[0]).channels
        if axis is not None and rank > 1:
            axes = normalized_axes(axis, rank)
            if 0 not in axes and rank - 1 not in axes and (
                    keepdims or out_width == len(layout)):
                return [layout]
        ctx.fix(layout, f"'{call.path}' ({call.class_name}) reduces over the "
                "channel axis")
        out = ctx.new_channels(call, out_width)
        ctx.fix(out, f"output of '{call.path}' ({call.class_name}), a "
                "reduction over the channel axis")
        return [out]


register_handler(ReduceOpHandler(), first=False)
