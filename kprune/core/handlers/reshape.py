"""Flatten, Reshape and `ops.stack`: where each channel (and each unit along
another axis, such as attention heads) lands after the reshape."""

import numpy as np
from keras import layers

from kprune.core._keras_compat import keras_ops_modules
from kprune.core.handlers.base import ChannelHandler, ChannelKeepingOp, register_handler
from kprune.core.handlers.einsum import query_heads


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


def _known(shape):
    return all(d is not None for d in shape)


class ReshapeHandler(ChannelHandler):
    """Reshape that keeps the channel axis last, or flattens everything.

    One that keeps the channel axis and splits the axis before it into two
    (`(…, n, h) -> (…, k, n // k, h)`, attention heads into key / value
    groups, as Gemma's attention does) or merges two back (`(…, k, g, h) ->
    (…, k * g, h)`) follows the units along it: after a split, unit i of
    the first new axis is units i*g … i*g + g - 1 (coupled: a whole group);
    a merge repeats each unit of its first axis g times. Both count that
    axis as a unit set `'heads'`, and an axis whose leading dims stay as
    `'axis<k>'`, so the target shape follows them. With
    `analyze(..., gqa_units='query_heads')` the split's second axis is the
    units instead (`'members'`: the j-th query head of every group) and
    the key / value heads stay."""

    layer_types = (layers.Reshape,)
    is_structural = True
    follows_axes = True

    def propagate(self, call, ctx):
        in_shape = ctx.tensor(call.inputs[0]).shape
        out_shape = ctx.tensor(call.outputs[0]).shape
        layout = ctx.input_layout(call)
        self._follow_axes(call, ctx, tuple(in_shape), tuple(out_shape))
        if in_shape and out_shape and out_shape[-1] == in_shape[-1] and (
                not (_known(in_shape) and _known(out_shape))
                or _spatial_size(in_shape) == _spatial_size(out_shape)):
            return [layout]
        if len(out_shape) == 1 and _known(in_shape):
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

    @staticmethod
    def _mode(in_shape, out_shape):
        """('split', g) / ('merge', g) for a reshape of the axis before the
        channels into two / of two into one (the channels and the axes
        before it unchanged), else None."""
        if len(in_shape) < 2 or len(out_shape) < 2 or in_shape[-1] != out_shape[-1]:
            return None
        if (len(out_shape) == len(in_shape) + 1 and out_shape[:-3] == in_shape[:-2]
                and None not in out_shape[-3:-1] and in_shape[-2] is not None
                and out_shape[-3] * out_shape[-2] == in_shape[-2]):
            return "split", out_shape[-2]
        if (len(in_shape) == len(out_shape) + 1 and in_shape[:-3] == out_shape[:-2]
                and None not in in_shape[-3:-1] and out_shape[-2] is not None
                and in_shape[-3] * in_shape[-2] == out_shape[-2]):
            return "merge", in_shape[-2]
        return None

    def _follow_axes(self, call, ctx, in_shape, out_shape):
        axes = ctx.axes_of(call.inputs[0])
        if not axes:
            return
        mode = self._mode(in_shape, out_shape)
        out_tid = call.outputs[0]
        why = (f"Reshape '{call.path}' ({in_shape} -> {out_shape}) rearranges "
               "the axis that holds them")
        kind, g = mode or (None, None)
        for pos, units in axes.items():
            p = len(in_shape) + pos
            if kind == "split" and pos == -2 or kind == "merge" and pos in (-3, -2):
                continue
            if in_shape[:p + 1] == out_shape[:p + 1] and p < len(out_shape) - 1:
                # row-major: an axis whose leading dims stay keeps its index
                # (its length in the target shape follows its units)
                out_pos = p - len(out_shape)
                ctx.couple(ctx.internal_channels(call, f"axis{out_pos}", len(units)), units)
                ctx.set_axis_layout(out_tid, out_pos, units)
            else:
                ctx.fix(units, why)
        if kind == "split" and -2 in axes and query_heads(ctx):
            # query heads inside the groups: unit j is the j-th of each group
            units = np.asarray(axes[-2]).reshape(-1, g)
            members = ctx.internal_channels(call, "members", g)
            for k in range(len(units)):
                ctx.couple(members, units[k])
            ctx.set_axis_layout(out_tid, -2, members)
        elif kind == "merge" and query_heads(ctx):
            if -3 in axes:
                ctx.fix(axes[-3], why)
            if -2 in axes:
                members = ctx.internal_channels(call, "members", len(axes[-2]))
                ctx.couple(members, axes[-2])
                ctx.set_axis_layout(out_tid, -2, np.tile(axes[-2], in_shape[-3]))
        elif kind == "split" and -2 in axes:
            units = np.asarray(axes[-2]).reshape(-1, g)
            for k in range(1, g):
                ctx.couple(units[:, 0], units[:, k])
            groups = ctx.internal_channels(call, "heads", len(units))
            ctx.couple(groups, units[:, 0])
            ctx.set_axis_layout(out_tid, -3, units[:, 0])
        elif kind == "merge":
            if -2 in axes:
                ctx.fix(axes[-2], why)
            if -3 in axes:
                groups = ctx.internal_channels(call, "heads", len(axes[-3]))
                ctx.couple(groups, axes[-3])
                ctx.set_axis_layout(out_tid, -2, np.repeat(axes[-3], g))

    def rewrite_config(self, config, layer, keeps):
        target = list(config["target_shape"])
        if target and target[-1] != -1:
            target[-1] = len(keeps.out_keep)
        for name, kept in keeps.units.items():
            if name.startswith("axis") and target[int(name[4:])] != -1:
                target[int(name[4:])] = len(kept)
        if "members" in keeps.units:
            in_shape = tuple(layer.input.shape[1:])
            kind, _ = self._mode(in_shape, tuple(layer.output.shape[1:]))
            kept = len(keeps.units["members"])
            if kind == "split":
                target[-2] = kept
            else:
                target[-2] = kept * in_shape[-3]
        if "heads" in keeps.units:
            kind, g = self._mode(tuple(layer.input.shape[1:]), tuple(layer.output.shape[1:]))
            kept = len(keeps.units["heads"])
            if kind == "split":
                target[-3] = kept
            else:
                target[-2] = kept * g
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


class StackOpHandler(ChannelHandler):
    """`ops.stack(tensors, axis)`: along a new last axis the channels move
    (a boundary: Gemma's RoPE interleaves the two halves of each head,
    whose dimensions RoPE freezes anyway); along another axis channel i of
    every tensor is one channel. Units along other axes follow."""

    layer_types = tuple(c for c in (getattr(keras_ops_modules()[1], "Stack", None),) if c)
    is_structural = True
    follows_axes = True

    def propagate(self, call, ctx):
        layouts = [ctx.layout(t) for t in call.inputs]
        rank = len(ctx.tensor(call.inputs[0]).shape)  # without the batch axis
        axis = int(call.layer.axis)
        axis = axis if axis >= 0 else axis + rank + 2  # counting the batch axis
        for tid in call.inputs:
            for pos, units in ctx.axes_of(tid).items():
                q = rank + pos
                q = q + 1 if q >= axis - 1 else q
                ctx.set_axis_layout(call.outputs[0], q - (rank + 1), units)
        if axis == 0:
            why = f"ops.stack '{call.path}' stacks along the batch axis"
        elif axis - 1 < rank:
            for layout in layouts[1:]:
                ctx.couple(layouts[0], layout)
            return [layouts[0]]
        else:
            why = f"ops.stack '{call.path}' moves the channel axis (stacks along a new last axis)"
        for layout in layouts:
            ctx.fix(layout, why)
        out = ctx.new_channels(call, ctx.tensor(call.outputs[0]).channels)
        ctx.fix(out, why)
        return [out]


for _h in (FlattenHandler(), ReshapeHandler(), PermuteHandler(), StackOpHandler()):
    if _h.layer_types:
        register_handler(_h, first=False)
