"""Handlers for keras-hub's own layers (registered when keras_hub is
imported; kprune does not import keras-hub itself).

* `PositionEmbedding`: position vectors broadcast to its input's shape, one
  per channel: channel-wise, its `embeddings` sliced on the channel axis.
* RMS / layer normalization variants of the decoder LLM families
  (`RMSNormalization`, `LlamaLayerNorm`, `QwenLayerNorm`, Gemma's, Mistral's,
  Phi-3's, ...): a per-channel scale over the channel axis; removing
  channels changes the mean of squares, so the group is marked inexact, as
  for `keras.layers.LayerNormalization`.

Example:
    >>> import keras_hub, kprune
    >>> kprune.dependency_groups(keras_hub.models.LlamaBackbone(...))
"""

import importlib
import sys

from kprune.core.handlers.base import register_handler
from kprune.core.handlers.channelwise import ChannelwiseHandler

_NORMS = (
    ("keras_hub.src.layers.modeling.rms_normalization", "RMSNormalization"),
    ("keras_hub.src.models.llama.llama_layernorm", "LlamaLayerNorm"),
    ("keras_hub.src.models.qwen.qwen_layernorm", "QwenLayerNorm"),
    ("keras_hub.src.models.qwen3.qwen3_layernorm", "Qwen3LayerNorm"),
    ("keras_hub.src.models.qwen_moe.qwen_moe_layernorm", "QwenMoeLayerNorm"),
    ("keras_hub.src.models.gemma.rms_normalization", "RMSNormalization"),
    ("keras_hub.src.models.gemma3.gemma3_layers", "RMSNormalization"),
    ("keras_hub.src.models.mistral.mistral_layer_norm", "MistralLayerNormalization"),
    ("keras_hub.src.models.mixtral.mixtral_layer_norm", "MixtralLayerNormalization"),
    ("keras_hub.src.models.phi3.phi3_layernorm", "Phi3LayerNorm"),
    ("keras_hub.src.models.t5.t5_layer_norm", "T5LayerNorm"),
)
_POSITION = (("keras_hub.src.layers.modeling.position_embedding", "PositionEmbedding"),)


def _classes(names):
    result = []
    for module, name in names:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:  # a keras-hub release without that model
            continue
        if cls is not None:
            result.append(cls)
    return tuple(result)


class PositionEmbeddingHandler(ChannelwiseHandler):
    """keras-hub PositionEmbedding: `embeddings` (sequence_length, channels);
    its width follows its input's at build time, so the config is unchanged."""

    def weight_roles(self, layer, in_channels, out_channels):
        return {w.name: (None, "in") for w in layer.weights
                if len(w.shape) == 2 and w.shape[-1] == in_channels}


class RMSNormHandler(ChannelwiseHandler):
    """keras-hub RMS / layer norms over the channel axis (inexact)."""

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        ctx.mark_inexact(layout, f"{call.class_name} '{call.path}' normalizes "
                         "over the channels")
        return [layout]


class PatchEmbeddingHandler(ChannelwiseHandler):
    """keras-hub ViT's `ViTPatchingAndEmbedding`: a patch Conv2D, a class
    token and position embeddings, all `hidden_dim` wide: it creates the
    model width. Every weight's last axis is that width."""

    mixes_channels = True

    def propagate(self, call, ctx):
        return [ctx.new_channels(call, call.layer.hidden_dim)]

    def weight_roles(self, layer, in_channels, out_channels):
        roles = {}
        for w in layer.weights:
            shape = tuple(w.shape)
            if shape and shape[-1] == out_channels:
                roles[w.name] = (None,) * (len(shape) - 1) + ("out",)
        return roles

    def update_config(self, config, layer, in_keep, out_keep):
        config["hidden_dim"] = len(out_keep)


    def fix_config(self, config, layer):
        """keras-hub 0.32's get_config writes two derived keys
        (num_patches, num_positions) that its constructor refuses."""
        config.pop("num_patches", None)
        config.pop("num_positions", None)


_PATCH = (("keras_hub.src.models.vit.vit_layers", "ViTPatchingAndEmbedding"),)


_registered = False


def register_keras_hub_handlers() -> bool:
    """Registers the keras-hub handlers once keras_hub is imported; True
    when they are registered."""
    global _registered
    if _registered:
        return True
    if "keras_hub" not in sys.modules:
        return False
    _registered = True
    position = PositionEmbeddingHandler()
    position.layer_types = _classes(_POSITION)
    norms = RMSNormHandler()
    norms.layer_types = _classes(_NORMS)
    patch = PatchEmbeddingHandler()
    patch.layer_types = _classes(_PATCH)
    for handler in (position, norms, patch):
        if handler.layer_types:
            register_handler(handler, first=False)
    return True
