"""MultiHeadAttention: whole heads, key / value head dimensions and the
model width it reads and writes.

A `keras.layers.MultiHeadAttention` call has three unit sets of its own,
which no tensor of the graph carries: its heads ('<layer>:heads'), the
query/key dimension of a head ('<layer>:key_dim') and the value dimension
('<layer>:value_dim'). Each is a dependency group; removing head h slices
head h out of the query, key, value (and gate) kernels and biases and row h
out of the output kernel; removing key dimension d slices it out of every
head's query and key projections, and the queries of the pruned layer are
rescaled by sqrt(new key_dim / old key_dim), so the attention scores (scaled
by 1 / sqrt(key_dim)) stay exactly what they were. The channels of the
query, key and value inputs are the rows of their kernels; the output has
the query's width when `output_shape` is None (so the residual stream, the
query and the output are one group), its own channels otherwise.

Example:
    >>> groups = kprune.dependency_groups(vit)
    >>> [g.name for g in groups if g.name.endswith(":heads")]
    ['block0_mha:heads', 'block1_mha:heads']
    >>> small = kprune.remove_channels(vit, {"block0_mha:heads": [1]})
"""

import math

import numpy as np
from keras import layers

from kprune.core._keras_compat import argument_slots
from kprune.core.handlers.base import ChannelHandler, register_handler

_ARGS = ("query", "value", "key")

#: (sublayer, variable) -> axis roles, for a kernel/bias of MultiHeadAttention.
_ROLES = {
    ("query", "kernel"): ("in:query", "unit:heads", "unit:key_dim"),
    ("query", "bias"): ("unit:heads", "unit:key_dim"),
    ("key", "kernel"): ("in:key", "unit:heads", "unit:key_dim"),
    ("key", "bias"): ("unit:heads", "unit:key_dim"),
    ("value", "kernel"): ("in:value", "unit:heads", "unit:value_dim"),
    ("value", "bias"): ("unit:heads", "unit:value_dim"),
    ("gate", "kernel"): ("in:query", "unit:heads", "unit:value_dim"),
    ("gate", "bias"): ("unit:heads", "unit:value_dim"),
}


def _owner(weight):
    """('query', 'kernel') for the variable 'mha/query/kernel'."""
    parts = weight.path.split("/")
    return (parts[-2], parts[-1]) if len(parts) >= 2 else (None, parts[-1])


def _output_dims(layer):
    shape = layer.get_config().get("output_shape")
    if shape is None:
        return None
    return (int(shape),) if isinstance(shape, int) else tuple(int(d) for d in shape)


class MultiHeadAttentionHandler(ChannelHandler):
    """keras.layers.MultiHeadAttention (and subclasses that keep its
    projections): heads, key_dim and value_dim are prunable unit sets."""

    layer_types = (layers.MultiHeadAttention,)
    mixes_channels = True

    def input_slots(self, call):
        slots = argument_slots(call.node, _ARGS)
        slots.setdefault("key", slots["value"])
        return slots

    def propagate(self, call, ctx):
        layer = call.layer
        slots = self.input_slots(call)
        used = {slots[k] for k in _ARGS}
        for i, tid in enumerate(call.inputs):
            if i not in used:  # attention / query / key / value masks
                ctx.fix(ctx.layout(tid), f"it is a mask passed to attention layer "
                        f"'{call.path}' (its last axis is positions, not channels)")
        heads = ctx.internal_channels(call, "heads", layer.num_heads)
        ctx.internal_channels(call, "key_dim", layer.key_dim)
        ctx.internal_channels(call, "value_dim", layer.value_dim)
        query = ctx.layout(call.inputs[slots["query"]])
        dims = _output_dims(layer)
        out = query if dims is None else ctx.new_channels(call, dims[-1])
        outs = [out]
        if len(call.outputs) > 1:  # return_attention_scores=True
            reason = (f"attention layer '{call.path}' returns its attention "
                      "scores, whose shape counts the heads")
            ctx.fix(heads, reason)
            scores = ctx.new_channels(call, ctx.tensor(call.outputs[1]).channels, 1)
            ctx.fix(scores, reason + " (their last axis is positions)")
            outs.append(scores)
        return outs

    def weight_roles(self, layer, in_channels, out_channels):
        roles = {}
        for i, w in enumerate(layer.weights):
            owner = _owner(w)
            if owner in _ROLES:
                roles[i] = _ROLES[owner]
            elif owner == ("attention_output", "kernel"):
                rank = len(w.shape)
                roles[i] = ("unit:heads", "unit:value_dim") + (None,) * (rank - 3) + ("out",)
            elif owner == ("attention_output", "bias"):
                roles[i] = (None,) * (len(w.shape) - 1) + ("out",)
        return roles

    def rewrite_config(self, config, layer, keeps):
        config["num_heads"] = len(keeps.units["heads"])
        config["key_dim"] = len(keeps.units["key_dim"])
        config["value_dim"] = len(keeps.units["value_dim"])
        dims = _output_dims(layer)
        if dims is not None:
            new = dims[:-1] + (len(keeps.out_keep),)
            config["output_shape"] = new[0] if isinstance(
                config["output_shape"], int) else list(new)

    def adjust_weights(self, layer, values, keeps):
        old, new = keeps.unit_sizes["key_dim"], len(keeps.units["key_dim"])
        if new == old:
            return values
        # Scores are (q . k) / sqrt(key_dim): keep them exact at the new key_dim.
        scale = math.sqrt(new / old)
        out = list(values)
        for i, w in enumerate(layer.weights):
            if _owner(w)[0] == "query":
                out[i] = (np.asarray(out[i]) * scale).astype(out[i].dtype)
        return out


register_handler(MultiHeadAttentionHandler(), first=False)
