"""`keras.ops` reductions (mean, sum, max, min, ...) in functional graphs and
traced composite layers: over spatial axes (a squeeze-excitation's global
mean) they pass channels through; over the channel axis they mix them."""

from kprune.core._keras_compat import keras_ops_modules
from kprune.core.handlers.base import ChannelKeepingOp, normalized_axes, register_handler

_nn, _np = keras_ops_modules()


def _classes(module, names):
    return tuple(getattr(module, n) for n in names if hasattr(module, n))


class ReduceOpHandler(ChannelKeepingOp):
    """A reduction that keeps the channel axis is channel-wise; one over the
    channel axis (or all axes) is a boundary for the channels it reads."""

    layer_types = _classes(_np, ("Mean", "Sum", "Max", "Min", "Prod", "Var",
                                 "Std", "Amax", "Amin"))
    mixing = "reduces over the channel axis"

    def keeps(self, call, ctx):
        op = call.layer
        rank = len(ctx.tensor(call.inputs[0]).shape) + 1
        axis = getattr(op, "axis", None)
        if axis is None or rank <= 1:
            return False
        axes = normalized_axes(axis, rank)
        return 0 not in axes and rank - 1 not in axes


register_handler(ReduceOpHandler(), first=False)
