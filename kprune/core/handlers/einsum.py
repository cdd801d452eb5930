"""Einsum-shaped layers and ops: `keras.layers.EinsumDense`, `ops.einsum`
and `ops.repeat` (keras-hub's attention projects with EinsumDense, e.g.
'bqm,muh->bquh', scores with `ops.einsum` and repeats grouped key / value
heads with `ops.repeat`).

kprune's channels are a tensor's last axis. For an equation:

* EinsumDense: when the input's last letter is contracted with the kernel
  (in the kernel, not in the output), its channels are the kernel rows
  ('in'); when the output's last letter comes from the kernel alone, the
  layer makes new channels ('out' in the kernel and the bias) and its
  config's `output_shape[-1]` follows them. Other letters (heads, positions)
  are not sliced. Anything else freezes the channels it touches.
* `ops.einsum`: an operand whose last letter is the output's last letter
  passes its channels through (two such operands are coupled, as in an
  element-wise product); a contracted channel axis is a sum over channels,
  which the masked reference cannot express, so it is frozen; an output
  whose last letter is another axis of an operand (attention scores over key
  positions) gets new, frozen channels.
* `ops.repeat` along another axis passes channels through; along the channel
  axis (or flattened) it is a boundary.

Example:
    >>> dense = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 32))
    >>> kprune.remove_channels(model, {dense.name: [0, 1]})
"""

import re

from keras import layers

from kprune.core._keras_compat import keras_ops_modules
from kprune.core.handlers.base import ChannelHandler, register_handler

_nn, _np = keras_ops_modules()


def _split(equation: str):
    """'...ab,bc->...ac' -> (['ab', 'bc'], 'ac', left_elided) with the
    ellipses dropped; None for right-elided or otherwise unusual forms."""
    eq = equation.replace(" ", "")
    if "->" not in eq:
        return None
    lhs, out = eq.split("->")
    ins = lhs.split(",")
    left = all(s.startswith("...") for s in ins + [out]) and "..." in eq
    if left:
        ins, out = [s[3:] for s in ins], out[3:]
    if "." in "".join(ins) + out or not all(re.fullmatch("[a-zA-Z]+", s) for s in ins + [out]):
        return None
    return ins, out, left


def _dense_spec(layer):
    """(input spec, kernel spec, output spec) of an EinsumDense whose input
    channels are contracted with the kernel and whose output channels come
    from the kernel alone; None otherwise."""
    parts = _split(layer.equation)
    if parts is None or len(parts[0]) != 2:
        return None
    (x, k), out, _ = parts
    if not (x[-1] in k and x[-1] not in out and out[-1] in k and out[-1] not in x):
        return None
    return x, k, out


class EinsumDenseHandler(ChannelHandler):
    layer_types = (layers.EinsumDense,)
    mixes_channels = True

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        width = ctx.tensor(call.outputs[0]).channels
        if _dense_spec(call.layer) is None or getattr(call.layer, "lora_enabled", False):
            why = (f"EinsumDense '{call.path}' (equation "
                   f"'{call.layer.equation}') does not contract its input's "
                   "last axis into a new last axis")
            ctx.fix(layout, why)
            out = ctx.new_channels(call, width)
            ctx.fix(out, why)
            return [out]
        return [ctx.new_channels(call, width)]

    def weight_roles(self, layer, in_channels, out_channels):
        spec = _dense_spec(layer)
        if spec is None:
            return {}
        x, k, out = spec
        roles = {}
        for i, w in enumerate(layer.weights):
            name = w.path.rsplit("/", 1)[-1]
            if name == "kernel" and len(w.shape) == len(k):
                roles[i] = tuple("in" if c == x[-1] else "out" if c == out[-1] else None
                                 for c in k)
            elif name == "bias" and layer.bias_axes and out[-1] in layer.bias_axes:
                first = min(out.find(c) for c in layer.bias_axes)
                tail = out[first:]
                if len(w.shape) == len(tail):
                    roles[i] = tuple("out" if c == out[-1] else None for c in tail)
        return roles

    def update_config(self, config, layer, in_keep, out_keep):
        shape = config["output_shape"]
        if isinstance(shape, int):
            config["output_shape"] = len(out_keep)
        else:
            shape = list(shape)
            shape[-1] = len(out_keep)
            config["output_shape"] = shape


def _einsum_parts(call):
    equation = getattr(call.layer, "subscripts", None)
    if not isinstance(equation, str):
        args = call.node.arguments.args
        equation = args[0] if args and isinstance(args[0], str) else None
    parts = _split(equation) if equation else None
    if parts is None or len(parts[0]) != len(call.inputs):
        return None
    return parts


class EinsumOpHandler(ChannelHandler):
    layer_types = tuple(c for c in (getattr(_np, "Einsum", None),) if c)

    def propagate(self, call, ctx):
        parts = _einsum_parts(call)
        layouts = [ctx.layout(t) for t in call.inputs]
        width = ctx.tensor(call.outputs[0]).channels
        what = f"ops.einsum '{call.path}'"
        if parts is None:
            for layout in layouts:
                ctx.fix(layout, f"{what} has an equation kprune cannot follow")
            out = ctx.new_channels(call, width)
            ctx.fix(out, f"output of {what}")
            return [out]
        ins, out, _ = parts
        through = []
        for spec, layout in zip(ins, layouts):
            last = spec[-1]
            if last not in out:
                ctx.fix(layout, f"{what} sums over its channel axis")
            elif last != out[-1] or out[-1] in spec[:-1]:
                ctx.fix(layout, f"{what} moves its channel axis")
            else:
                through.append(layout)
        moved = [spec for spec in ins if out[-1] in spec[:-1]]
        if through and not moved and all(len(t) == width for t in through):
            for other in through[1:]:
                ctx.couple(through[0], other)
            return [through[0]]
        for layout in through:
            ctx.fix(layout, f"{what} broadcasts its channel axis")
        result = ctx.new_channels(call, width)
        ctx.fix(result, f"output of {what}, whose last axis is not channels "
                "of one operand")
        return [result]


class RepeatOpHandler(ChannelHandler):
    layer_types = tuple(c for c in (getattr(_np, "Repeat", None),) if c)
    is_structural = True

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        rank = len(ctx.tensor(call.inputs[0]).shape) + 1
        axis = getattr(call.layer, "axis", None)
        width = ctx.tensor(call.outputs[0]).channels
        if axis is not None and int(axis) % rank != rank - 1 and len(layout) == width:
            return [layout]
        why = f"ops.repeat '{call.path}' repeats along the channel axis"
        ctx.fix(layout, why)
        out = ctx.new_channels(call, width)
        ctx.fix(out, why)
        return [out]


for _h in (EinsumDenseHandler(), EinsumOpHandler(), RepeatOpHandler()):
    if _h.layer_types:
        register_handler(_h, first=False)
