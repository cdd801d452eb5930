"""`keras.ops` operations that appear inside functional graphs (for example
`x + 3.0` or `x * y` in MobileNetV3's hard-swish)."""

from keras.src.ops import nn as _nn
from keras.src.ops import numpy as _np

from kprune.handlers.base import ChannelHandler, register_handler
from kprune.handlers.merge import couple_elementwise


def _classes(module, names):
    return tuple(getattr(module, n) for n in names if hasattr(module, n))


class ElementwiseOpHandler(ChannelHandler):
    """Element-wise ops with tensors and/or Python scalars."""

    layer_types = _classes(_np, (
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum",
        "Minimum", "Power", "Abs", "Negative", "Exp", "Log", "Sqrt", "Square",
        "Tanh", "Sign", "Clip", "Absolute", "Reciprocal"))

    def propagate(self, call, ctx):
        layouts = [ctx.layout(t) for t in call.inputs]
        if len(layouts) == 1:
            out_len = ctx.tensor(call.outputs[0]).channels
            if len(layouts[0]) == out_len:
                return [layouts[0]]
        return couple_elementwise(call, ctx, layouts)


class ActivationOpHandler(ElementwiseOpHandler):
    """Activation functions from keras.ops.nn (x -> f(x), per element)."""

    layer_types = _classes(_nn, (
        "Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "Silu", "Gelu",
        "LeakyRelu", "Elu", "Selu", "Softplus", "Swish", "HardSwish"))
    is_activation = True


register_handler(ActivationOpHandler(), first=False)
register_handler(ElementwiseOpHandler(), first=False)
