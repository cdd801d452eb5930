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
