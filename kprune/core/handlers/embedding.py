"""Embedding: its output dimension is a prunable set of channels.

The embedding table (input_dim, output_dim) is sliced along its columns;
the token ids entering it are not channels (their last axis is positions)
and stay as they are. Whatever reads the embeddings (Dense, attention, an
RNN, a residual Add) is coupled to them by the usual analysis, and a layer
called at several places (one Embedding for two inputs) keeps one width.
Weights tied to another layer (a layer that reads `embedding.embeddings`
itself) are frozen with the reason in `group.frozen`: see
`Analysis` (shared variables).

Example:
    >>> kprune.remove_channels(model, {"tokens": [0, 7]})
"""

from keras import layers

from kprune.core.handlers.base import ChannelHandler, register_handler


class EmbeddingHandler(ChannelHandler):
    layer_types = (layers.Embedding,)

    def propagate(self, call, ctx):
        for tid in call.inputs:
            ctx.fix(ctx.layout(tid), f"it holds token ids read by Embedding "
                    f"'{call.path}' (positions, not channels)")
        return [ctx.new_channels(call, call.layer.output_dim)]

    def weight_roles(self, layer, in_channels, out_channels):
        return {i: (None, "out") for i, w in enumerate(layer.weights)
                if w.path.rsplit("/", 1)[-1] == "embeddings" and len(w.shape) == 2}

    def update_config(self, config, layer, in_keep, out_keep):
        config["output_dim"] = len(out_keep)


register_handler(EmbeddingHandler(), first=False)


def _reverse(call) -> bool:
    arguments = call.node.arguments
    if "reverse" in arguments.kwargs:
        return bool(arguments.kwargs["reverse"])
    return len(arguments.args) > 1 and bool(arguments.args[1])


class ReversibleEmbeddingHandler(EmbeddingHandler):
    """`keras.layers.ReversibleEmbedding` (keras-hub's token embedding): its
    embedding width is the unit set '<layer>:dim'. Called forward it makes
    those channels; called with `reverse=True` (logits over the vocabulary,
    from the same table when `tie_weights=True`, else from
    `reverse_embeddings`) it reads them. So the model width, from the
    token embedding through every block to the logits, is one group, and a
    tied table stays one table, sliced once on its embedding axis."""

    layer_types = tuple(c for c in (getattr(layers, "ReversibleEmbedding", None),) if c)
    mixes_channels = True  # the reverse call reads the width

    def propagate(self, call, ctx):
        dim = ctx.internal_channels(call, "dim", call.layer.output_dim)
        if not _reverse(call):
            for tid in call.inputs:
                ctx.fix(ctx.layout(tid), f"it holds token ids read by "
                        f"{call.class_name} '{call.path}' (positions, not channels)")
            return [dim]
        layout = ctx.input_layout(call)
        if len(layout) == len(dim):
            ctx.couple(layout, dim)
        else:  # pragma: no cover - Keras refuses such a call
            ctx.fix(layout, f"'{call.path}' reads a width other than its own")
        out = ctx.new_channels(call, ctx.tensor(call.outputs[0]).channels)
        ctx.fix(out, f"'{call.path}' ({call.class_name}, reverse=True) gives "
                "one logit per token of the vocabulary")
        return [out]

    def weight_roles(self, layer, in_channels, out_channels):
        roles = {}
        for i, w in enumerate(layer.weights):
            name = w.path.rsplit("/", 1)[-1]
            if name == "embeddings" and len(w.shape) == 2:
                roles[i] = (None, "unit:dim")
            elif name == "reverse_embeddings" and len(w.shape) == 2:
                roles[i] = ("unit:dim", None)
        return roles

    def rewrite_config(self, config, layer, keeps):
        config["output_dim"] = len(keeps.units["dim"])


if ReversibleEmbeddingHandler.layer_types:
    register_handler(ReversibleEmbeddingHandler(), first=True)
