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
  axis (or flattened) it is a boundary. Repeating key / value heads
  (grouped-query attention) couples each with its query heads, or, with
  `analyze(..., gqa_units='query_heads')`, makes the copies (query heads
  inside every group) the units and keeps the key / value heads; `repeats`
  then follows.

Example:
    >>> dense = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 32))
    >>> kprune.remove_channels(model, {dense.name: [0, 1]})
"""

import re

import numpy as np

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


def _unit_letters(layer):
    """{letter: unit-set name} of an EinsumDense: 'heads' (or 'axis_<l>')
    for each output letter other than the last made by the kernel alone,
    'in_<l>' for each input letter other than the last contracted with the
    kernel."""
    spec = _dense_spec(layer)
    if spec is None:
        return {}
    x, k, out = spec
    made = [c for c in out[:-1] if c in k and c not in x]
    names = {c: ("heads" if len(made) == 1 else f"axis_{c}") for c in made}
    names.update({c: f"in_{c}" for c in x[:-1] if c in k and c not in out})
    return names


class EinsumDenseHandler(ChannelHandler):
    layer_types = (layers.EinsumDense,)
    mixes_channels = True
    follows_axes = True

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        width = ctx.tensor(call.outputs[0]).channels
        spec = _dense_spec(call.layer)
        if spec is None or getattr(call.layer, "lora_enabled", False):
            why = (f"EinsumDense '{call.path}' (equation "
                   f"'{call.layer.equation}') does not contract its input's "
                   "last axis into a new last axis")
            ctx.fix(layout, why)
            for axis_layout in ctx.axes_of(call.inputs[0]).values():
                ctx.fix(axis_layout, why)
            out = ctx.new_channels(call, width)
            ctx.fix(out, why)
            return [out]
        x, k, out_spec = spec
        tid, out_tid = call.inputs[0], call.outputs[0]
        kernel_shape = tuple(call.layer.kernel.shape)
        names = _unit_letters(call.layer)
        in_axes = ctx.axes_of(tid)
        for c, name in names.items():
            n = kernel_shape[k.index(c)]
            units = ctx.internal_channels(call, name, n)
            if name.startswith("in_"):
                pos = x.index(c) - len(x)
                if pos in in_axes and len(in_axes[pos]) == n:
                    ctx.couple(units, in_axes[pos])
                else:
                    ctx.fix(units, f"EinsumDense '{call.path}' contracts axis "
                            f"'{c}' of an input whose units along it kprune does not follow")
            else:
                ctx.set_axis_layout(out_tid, out_spec.index(c) - len(out_spec), units)
        for pos, axis_layout in in_axes.items():
            c = x[pos] if -pos <= len(x) else None
            if c is not None and c in out_spec and c not in k:
                ctx.set_axis_layout(out_tid, out_spec.index(c) - len(out_spec), axis_layout)
            elif c is None or names.get(c) is None:
                ctx.fix(axis_layout, f"EinsumDense '{call.path}' mixes axis {pos} "
                        "with its kernel")
        return [ctx.new_channels(call, width)]

    def weight_roles(self, layer, in_channels, out_channels):
        spec = _dense_spec(layer)
        if spec is None:
            return {}
        x, k, out = spec
        names = _unit_letters(layer)

        def role(c):
            if c == x[-1]:
                return "in"
            if c == out[-1]:
                return "out"
            return f"unit:{names[c]}" if c in names else None
        roles = {}
        for i, w in enumerate(layer.weights):
            name = w.path.rsplit("/", 1)[-1]
            if name == "kernel" and len(w.shape) == len(k):
                roles[i] = tuple(role(c) for c in k)
            elif name == "bias" and layer.bias_axes:
                first = min(out.find(c) for c in layer.bias_axes)
                tail = out[first:]
                if len(w.shape) == len(tail):
                    roles[i] = tuple(role(c) if c in layer.bias_axes else None
                                     for c in tail)
        return roles

    def rewrite_config(self, config, layer, keeps):
        shape = config["output_shape"]
        if isinstance(shape, int):
            config["output_shape"] = len(keeps.out_keep)
            return
        shape = list(shape)
        shape[-1] = len(keeps.out_keep)
        spec = _dense_spec(layer)
        _, _, out = spec
        offset = len(out) - len(shape)  # the batch letter (none when elided)
        for c, name in _unit_letters(layer).items():
            if not name.startswith("in_") and name in keeps.units:
                shape[out.index(c) - offset] = len(keeps.units[name])
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
    follows_axes = True

    def propagate(self, call, ctx):
        parts = _einsum_parts(call)
        layouts = [ctx.layout(t) for t in call.inputs]
        width = ctx.tensor(call.outputs[0]).channels
        what = f"ops.einsum '{call.path}'"
        if parts is None:
            for tid, layout in zip(call.inputs, layouts):
                ctx.fix(layout, f"{what} has an equation kprune cannot follow")
                for axis_layout in ctx.axes_of(tid).values():
                    ctx.fix(axis_layout, f"{what} has an equation kprune cannot follow")
            out = ctx.new_channels(call, width)
            ctx.fix(out, f"output of {what}")
            return [out]
        ins, out, _ = parts
        self._follow_letters(call, ctx, ins, out, what)
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

    @staticmethod
    def _follow_letters(call, ctx, ins, out, what):
        """Units along non-channel axes follow their letter: operands that
        share it are coupled and the output carries them where the letter
        lands (frozen where it is summed over or becomes the channel axis,
        or where an operand has the letter but no units along it)."""
        by_letter = {}
        for spec, tid in zip(ins, call.inputs):
            axes = ctx.axes_of(tid)
            for pos, c in enumerate(spec[:-1]):
                layout = axes.get(pos - len(spec))
                by_letter.setdefault(c, []).append(layout)
        for c, found in by_letter.items():
            units = [f for f in found if f is not None]
            if not units:
                continue
            if c not in out[:-1] or len(units) != len(found):
                for layout in units:
                    ctx.fix(layout, f"{what} sums over or reshapes axis '{c}', "
                            "which holds units (attention heads)")
                continue
            for layout in units[1:]:
                ctx.couple(units[0], layout)
            ctx.set_axis_layout(call.outputs[0], out.index(c) - len(out), units[0])


class RepeatOpHandler(ChannelHandler):
    layer_types = tuple(c for c in (getattr(_np, "Repeat", None),) if c)
    is_structural = True
    follows_axes = True

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        rank = len(ctx.tensor(call.inputs[0]).shape) + 1
        axis = getattr(call.layer, "axis", None)
        repeats = getattr(call.layer, "repeats", None)
        for pos, units in ctx.axes_of(call.inputs[0]).items():
            if axis is None or not isinstance(repeats, int):
                ctx.fix(units, f"ops.repeat '{call.path}' flattens or repeats unevenly")
            elif int(axis) % rank == pos + rank and query_heads(ctx):
                # grouped-query attention, query heads inside the groups:
                # unit j is the j-th copy (query head) of every key / value
                # head, which stay
                ctx.fix(units, f"ops.repeat '{call.path}' shares them with "
                        "their query heads, pruned inside the groups "
                        "(gqa_units='query_heads')")
                members = ctx.internal_channels(call, "repeats", repeats)
                ctx.set_axis_layout(call.outputs[0], pos, np.tile(members, len(units)))
            elif int(axis) % rank == pos + rank:
                # grouped-query attention: each key / value head serves
                # `repeats` query heads, which go with it
                ctx.set_axis_layout(call.outputs[0], pos, np.repeat(units, repeats))
            else:
                ctx.set_axis_layout(call.outputs[0], pos, units)
        width = ctx.tensor(call.outputs[0]).channels
        if axis is not None and int(axis) % rank != rank - 1 and len(layout) == width:
            return [layout]
        why = f"ops.repeat '{call.path}' repeats along the channel axis"
        ctx.fix(layout, why)
        out = ctx.new_channels(call, width)
        ctx.fix(out, why)
        return [out]


    def rewrite_config(self, config, layer, keeps):
        if "repeats" in keeps.units:
            config["repeats"] = len(keeps.units["repeats"])


def query_heads(ctx) -> bool:
    """True when the analysis prunes grouped-query attention's query heads
    inside their groups (`analyze(..., gqa_units='query_heads')`)."""
    return getattr(ctx, "gqa_units", "key_value_heads") == "query_heads"


for _h in (EinsumDenseHandler(), EinsumOpHandler(), RepeatOpHandler()):
    if _h.layer_types:
        register_handler(_h, first=False)
