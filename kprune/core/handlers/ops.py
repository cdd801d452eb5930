"""`keras.ops` operations that appear inside functional graphs (for example
`x + 3.0` or `x * y` in MobileNetV3's hard-swish)."""

import keras
import numpy as np

from kprune.core._keras_compat import keras_ops_core_module, keras_ops_modules
from kprune.core.handlers.base import (ChannelHandler, follow_axes_elementwise,
                                       register_handler)
from kprune.core.handlers.merge import couple_elementwise

_nn, _np = keras_ops_modules()


def _classes(module, names):
    return tuple(getattr(module, n) for n in names if hasattr(module, n))


def _per_channel_constant(call, channels: int):
    """The shape of a constant argument of `call` (not a graph tensor) that
    acts per channel, or None: its last axis has more than one entry, or it
    is a vector of `channels` values in another shape ((C, 1): Keras's
    TensorFlow `add` applies such a constant along the channel axis, as a
    bias, whatever numpy broadcasting would say)."""
    node_args = getattr(call.node, "arguments", None)
    if node_args is None:
        return None
    values = list(node_args.args) + list(node_args.kwargs.values())
    for value in keras.tree.flatten(values):
        if isinstance(value, keras.KerasTensor) or isinstance(
                value, (int, float, bool, str, type(None))):
            continue
        shape = tuple(getattr(value, "shape", np.shape(value)))
        longer = [d for d in shape if d != 1]
        if shape and (shape[-1] != 1 or longer == [channels]):
            return shape
    return None


def _bias_like_constant(call):
    """The shape of a constant argument of an `add` that squeezes to a
    vector ((L, 1) over a length-L axis), or None. Keras's TensorFlow `add`
    applies such a constant with `bias_add` on whichever axis its length
    matches, the channel axis first: if a pruned channel count came to equal
    L, the same constant would be added along the channels instead (random
    graph seed 9782107)."""
    node_args = getattr(call.node, "arguments", None)
    if node_args is None:
        return None
    for value in keras.tree.flatten(list(node_args.args) + list(node_args.kwargs.values())):
        if isinstance(value, keras.KerasTensor) or isinstance(
                value, (int, float, bool, str, type(None))):
            continue
        shape = tuple(getattr(value, "shape", np.shape(value)))
        if len([d for d in shape if d != 1]) == 1:
            return shape
    return None


class ElementwiseOpHandler(ChannelHandler):
    """Element-wise ops with tensors and/or Python scalars."""

    layer_types = _classes(_np, (
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum",
        "Minimum", "Power", "Abs", "Negative", "Exp", "Log", "Sqrt", "Square",
        "Tanh", "Sign", "Clip", "Absolute", "Reciprocal", "ZerosLike", "OnesLike"))
    follows_axes = True

    def propagate(self, call, ctx):
        result = self._channels(call, ctx)
        follow_axes_elementwise(call, ctx)
        return result

    def _channels(self, call, ctx):
        layouts = [ctx.layout(t) for t in call.inputs]
        out_len = ctx.tensor(call.outputs[0]).channels
        constant = _per_channel_constant(call, out_len)
        if constant is None and call.class_name == "Add":
            constant = _bias_like_constant(call)
        if constant is not None:
            # kprune does not rewrite constants stored in the graph: the
            # channels they meet keep their width.
            for layout in layouts:
                ctx.fix(layout, f"'{call.path}' ({call.class_name}) combines "
                        f"them with a constant of shape {constant}, one "
                        "value per channel, which kprune does not slice")
        if len(layouts) == 1:
            out_len = ctx.tensor(call.outputs[0]).channels
            if len(layouts[0]) == out_len:
                return [layouts[0]]
        return couple_elementwise(call, ctx, layouts)


class WhereOpHandler(ChannelHandler):
    """`ops.where(condition, x1, x2)`: element by element; a condition
    broadcast along the channels (a mask over positions, as in Gemma's
    attention) selects per position, one as wide as the values is coupled
    with them."""

    layer_types = _classes(_np, ("Where",))
    follows_axes = True

    def propagate(self, call, ctx):
        from kprune.core._keras_compat import argument_slots
        follow_axes_elementwise(call, ctx)
        out_len = ctx.tensor(call.outputs[0]).channels
        slots = argument_slots(call.node, ("condition", "x1", "x2"))
        cond = slots.get("condition")
        layouts = [ctx.layout(t) for i, t in enumerate(call.inputs)
                   if not (i == cond and len(ctx.layout(t)) == 1 and out_len > 1)]
        if not layouts or _per_channel_constant(call, out_len) is not None:
            for layout in layouts:
                ctx.fix(layout, f"'{call.path}' (Where) selects them against a "
                        "constant of one value per channel")
            out = ctx.new_channels(call, out_len)
            ctx.fix(out, f"output of '{call.path}' (Where)")
            return [out]
        return couple_elementwise(call, ctx, layouts)


def _core_classes(names):
    return _classes(keras_ops_core_module(), names)


class CastOpHandler(ElementwiseOpHandler):
    """`ops.cast`: element by element (decoder blocks cast their gates to
    float32 and back)."""

    layer_types = _core_classes(("Cast",))


class ActivationOpHandler(ElementwiseOpHandler):
    """Activation functions from keras.ops.nn (x -> f(x), per element)."""

    layer_types = _classes(_nn, (
        "Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "Silu", "Gelu",
        "LeakyRelu", "Elu", "Selu", "Softplus", "Swish", "HardSwish"))
    is_activation = True


register_handler(ActivationOpHandler(), first=False)
register_handler(ElementwiseOpHandler(), first=False)
register_handler(CastOpHandler(), first=False)
if WhereOpHandler.layer_types:
    register_handler(WhereOpHandler(), first=False)
