"""Handlers for keras-hub's own layers (registered when keras_hub is
imported; kprune does not import keras-hub itself).

* `PositionEmbedding`: position vectors broadcast to its input's shape, one
  per channel: channel-wise, its `embeddings` sliced on the channel axis.
* RMS / layer normalization variants of the decoder LLM families
  (`RMSNormalization`, `LlamaLayerNorm`, `QwenLayerNorm`, Gemma's, Mistral's,
  Phi-3's, ...): a per-channel scale over the channel axis; removing
  channels changes the mean of squares, so the group is marked inexact, as
  for `keras.layers.LayerNormalization`.
* ViT's patch embedding: it makes the model width.
* Rotary position embeddings (`RotaryEmbedding`, `LlamaRotaryEmbedding`):
  heads pass through, head dimensions are frozen.
* Moonshine's attention (`MoonshineMultiHeadAttention`, a
  MultiHeadAttention that rotates its queries and keys by a
  `rotary_embedding` argument): heads, value dims and the model width as
  for MultiHeadAttention; its key dims are frozen where it rotates them.
  Moonshine's rotary embedding makes (positions, rotary dims) frequencies,
  which are not channels.
* `traced_calls()`: while a composite is traced, `CachedMultiHeadAttention`
  called with `cache=None` is recorded without it, and Moonshine's
  attention with its `rotary_embedding` (keras-hub 0.32 cannot call them
  symbolically otherwise), and Moonshine's rotary embedding gets its true
  output shape; Gemma's sliding-window mask (over traced lengths) is a
  `SlidingWindowMask` layer.
* `loadable_class` / `loadable_configs`: layers whose keras-hub 0.32
  `get_config` does not load back (ViT's and DeiT's patch embeddings,
  Llama's RoPE, Gemma's and Gemma 3's RMSNormalization and attention,
  Moonshine's attention) are written by surgery as registered subclasses
  `kprune>Loadable<Name>` with a config that loads (and, for Moonshine's
  attention, a symbolic call that takes its rotary embedding).

Example:
    >>> import keras_hub, kprune
    >>> kprune.dependency_groups(keras_hub.models.LlamaBackbone(...))
"""

import contextlib
import importlib
import sys

import keras

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
    """keras-hub RMS / layer norms over the channel axis (inexact). Units
    along other axes pass through (Gemma 3 normalizes each query / key
    head on its own)."""

    follows_axes = True

    def propagate(self, call, ctx):
        from kprune.core.handlers.base import follow_axes_elementwise
        follow_axes_elementwise(call, ctx)
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



class RotaryEmbeddingHandler(ChannelwiseHandler):
    """keras-hub rotary position embeddings (RoPE): each head dimension is
    rotated with its partner by a position- and index-dependent angle, so
    the head dimensions are frozen; heads and positions pass through."""

    follows_axes = True

    def propagate(self, call, ctx):
        from kprune.core.handlers.base import follow_axes_elementwise
        follow_axes_elementwise(call, ctx)
        layout = ctx.input_layout(call)
        ctx.fix(layout, f"{call.class_name} '{call.path}' rotates pairs of "
                "head dimensions by angles that depend on their index")
        for tid in call.inputs[1:]:  # explicit positions
            ctx.fix(ctx.layout(tid), f"they are positions read by {call.class_name} "
                    f"'{call.path}'")
        return [layout]

    def weight_roles(self, layer, in_channels, out_channels):
        return {}



class RotaryFrequenciesHandler(ChannelwiseHandler):
    """keras-hub Moonshine's rotary embedding: positions in, (positions,
    rotary dims) frequencies out, read by its attention layers: neither
    side holds channels."""

    mixes_channels = True

    def propagate(self, call, ctx):
        why = (f"{call.class_name} '{call.path}' turns positions into rotary "
               "frequencies (not channels)")
        for tid in call.inputs:
            ctx.fix(ctx.layout(tid), why)
        out = ctx.new_channels(call, ctx.tensor(call.outputs[0]).channels)
        ctx.fix(out, why)
        return [out]

    def weight_roles(self, layer, in_channels, out_channels):
        return {}


def _rotary_attention_handler():
    from kprune.compat.keras_private import argument_slots
    from kprune.core.handlers.attention import MultiHeadAttentionHandler

    class RotaryAttentionHandler(MultiHeadAttentionHandler):
        """Moonshine's MultiHeadAttention: heads, value dims and widths as
        for MultiHeadAttention. Given a `rotary_embedding`, it rotates the
        leading rotary dims of every query and key head in pairs by
        position-dependent angles, so its key dims are frozen; the
        frequencies themselves are not channels."""

        def propagate(self, call, ctx):
            slots = argument_slots(call.node, ("query", "value", "key", "rotary_embedding"))
            rotary = slots.get("rotary_embedding")
            if rotary is not None:
                ctx.fix(ctx.layout(call.inputs[rotary]),
                        f"they are rotary frequencies read by attention layer "
                        f"'{call.path}'")
            outs = super().propagate(call, ctx)
            if rotary is not None:
                ctx.fix(ctx.internal_channels(call, "key_dim", call.layer.key_dim),
                        f"attention layer '{call.path}' rotates pairs of its query "
                        "and key dimensions by angles that depend on their index "
                        "(rotary embedding)")
            return outs

    return RotaryAttentionHandler()


def _fix_patch_embedding(layer, config):
    """keras-hub 0.32's ViTPatchingAndEmbedding.get_config writes two derived
    keys (num_patches, num_positions) that its constructor refuses."""
    config.pop("num_patches", None)
    config.pop("num_positions", None)
    return config


def _fix_llama_rotary(layer, config):
    """keras-hub 0.32's LlamaRotaryEmbedding.get_config writes its base
    class's `scaling_factor` (which it passes itself) and names its
    `pretraining_sequence_length` 'original_max_embeddings'."""
    config.pop("scaling_factor", None)
    if "original_max_embeddings" in config:
        config["pretraining_sequence_length"] = config.pop("original_max_embeddings")
    return config


def _fix_gemma_norm(layer, config):
    """Gemma's RMSNormalization has no get_config (Keras cannot write one
    for it: it is built with a DTypePolicy)."""
    return dict(_base_config(layer), epsilon=layer.epsilon)


def _base_config(layer):
    return {"name": layer.name, "trainable": layer.trainable,
            "dtype": keras.dtype_policies.serialize(layer.dtype_policy)}


def _fix_gemma_attention(layer, config):
    """CachedGemmaAttention has no get_config either."""
    config = _base_config(layer)
    config.update(
        head_dim=layer.head_dim, num_query_heads=layer.num_query_heads,
        num_key_value_heads=layer.num_key_value_heads,
        kernel_initializer=keras.initializers.serialize(layer._kernel_initializer),
        logit_soft_cap=layer.logit_soft_cap,
        use_sliding_window_attention=layer.use_sliding_window_attention,
        sliding_window_size=layer.sliding_window_size,
        query_head_dim_normalize=layer.query_head_dim_normalize,
        dropout=layer.dropout)
    return config


def _fix_moonshine_attention(layer, config):
    """MoonshineMultiHeadAttention inherits MultiHeadAttention's config,
    whose `use_bias` / `dropout` its constructor drops (it takes
    `attention_bias` / `attention_dropout`) and which lacks its causal mask
    and rotary switches."""
    config.update(attention_bias=layer.attention_bias,
                  attention_dropout=layer.attention_dropout,
                  use_causal_mask=layer.use_causal_mask,
                  apply_rotary_embedding=layer.apply_rotary_embedding)
    return config


def _spec_with_rotary(self, query, value, key=None, rotary_embedding=None,
                      attention_mask=None, training=None, **kwargs):
    """MultiHeadAttention's output spec for a call that also passes
    Moonshine's `rotary_embedding` (which does not change the output's
    shape)."""
    kwargs.pop("cache", None)
    kwargs.pop("cache_update_index", None)
    return keras.layers.MultiHeadAttention.compute_output_spec(
        self, query, value, key, attention_mask=attention_mask, training=training,
        **kwargs)


def _fix_gemma3_attention(layer, config):
    """CachedGemma3Attention has no get_config either."""
    config = _base_config(layer)
    config.update(
        head_dim=layer.head_dim, num_query_heads=layer.num_query_heads,
        num_key_value_heads=layer.num_key_value_heads,
        kernel_initializer=keras.initializers.serialize(layer._kernel_initializer),
        logit_soft_cap=layer.logit_soft_cap,
        use_sliding_window_attention=layer.use_sliding_window_attention,
        sliding_window_size=layer.sliding_window_size,
        query_head_dim_normalize=layer.query_head_dim_normalize,
        use_query_key_norm=layer.use_query_key_norm,
        layer_norm_epsilon=layer.layer_norm_epsilon,
        rope_wavelength=layer.rope_wavelength,
        rope_scaling_factor=layer.rope_scaling_factor,
        use_bidirectional_attention=layer.use_bidirectional_attention,
        dropout=layer.dropout)
    return config


def _fix_deit_embeddings(layer, config):
    """DeiTEmbeddings writes `num_patches` / `num_positions`, which its
    constructor does not take (it derives them)."""
    config.pop("num_patches", None)
    config.pop("num_positions", None)
    return config


_FIXES = {
    ("keras_hub.src.models.deit.deit_layers", "DeiTEmbeddings"): _fix_deit_embeddings,
    ("keras_hub.src.models.vit.vit_layers", "ViTPatchingAndEmbedding"): _fix_patch_embedding,
    ("keras_hub.src.models.llama.llama_rotary_embedding", "LlamaRotaryEmbedding"):
        _fix_llama_rotary,
    ("keras_hub.src.models.gemma.rms_normalization", "RMSNormalization"): _fix_gemma_norm,
    ("keras_hub.src.models.gemma.gemma_attention", "CachedGemmaAttention"):
        _fix_gemma_attention,
    ("keras_hub.src.models.gemma3.gemma3_layers", "RMSNormalization"): _fix_gemma_norm,
    ("keras_hub.src.models.gemma3.gemma3_attention", "CachedGemma3Attention"):
        _fix_gemma3_attention,
}
_MOONSHINE_ATTENTION = ("keras_hub.src.models.moonshine.moonshine_multi_head_attention",
                        "MoonshineMultiHeadAttention")
_FIXES[_MOONSHINE_ATTENTION] = _fix_moonshine_attention
_MOONSHINE_ROTARY = ("keras_hub.src.models.moonshine.moonshine_layers",
                     "MoonshineRotaryEmbedding")
_FIXES[_MOONSHINE_ROTARY] = lambda layer, config: config


def _frequencies_shape(self, input_shape):
    """MoonshineRotaryEmbedding's output shape: keras-hub 0.32 inherits
    RotaryEmbedding's (the input's), but it maps positions (L,) to
    frequencies (L, rotary_dim)."""
    return tuple(input_shape) + (self.rotary_dim,)


#: class key -> methods its loadable subclass defines besides get_config
_METHODS = {_MOONSHINE_ATTENTION: {"compute_output_spec": _spec_with_rotary},
            _MOONSHINE_ROTARY: {"compute_output_shape": _frequencies_shape}}
_LOADABLE = {}  # class key -> (registered subclass, fixed get_config)


def _class_key(cls):
    return (cls.__module__, cls.__name__)


def _loadable_entry(cls):
    key = _class_key(cls)
    fix = _FIXES.get(key)
    if fix is None:
        return None
    if key not in _LOADABLE:
        original = cls.get_config

        def get_config(self, _original=original, _fix=fix):
            try:
                config = _original(self)
            except NotImplementedError:
                config = None
            return _fix(self, config)
        sub = type(f"Loadable{cls.__name__}", (cls,), {
            "get_config": get_config, "__module__": __name__,
            "__doc__": f"{cls.__name__} whose config loads back (kprune).",
            **_METHODS.get(key, {})})
        sub = keras.saving.register_keras_serializable(package="kprune")(sub)
        _LOADABLE[key] = (sub, get_config)
    return _LOADABLE[key]


def loadable_class(layer):
    """For a keras-hub layer whose `get_config` does not load back (see
    `_FIXES`), a subclass registered with Keras as `kprune>Loadable<Name>`
    whose `get_config` does; None for other layers. Surgery gives pruned
    models that class, so they save and load as `.keras` (load them after
    `import kprune` and `import keras_hub`).

    Example:
        >>> loadable_class(vit.get_layer("vit_patching_and_embedding")).__name__
        'LoadableViTPatchingAndEmbedding'
    """
    cls = type(layer)
    if any(cls is sub for sub, _ in _LOADABLE.values()):
        return cls
    entry = _loadable_entry(cls)
    return entry[0] if entry else None


@contextlib.contextmanager
def loadable_configs(model):
    """While surgery serializes `model`: the keras-hub layer classes of
    `_FIXES` that it holds write configs that load back. The user's layers
    keep their classes; only the pruned copy gets the `loadable_class`."""
    from kprune.compat.keras_private import all_layers
    saved = {}
    for layer in all_layers(model):
        cls = type(layer)
        entry = _loadable_entry(cls)
        if entry is not None and cls not in saved:
            saved[cls] = cls.__dict__.get("get_config")
    try:
        for cls in saved:
            cls.get_config = _LOADABLE[_class_key(cls)][1]
        yield
    finally:
        for cls, original in saved.items():
            if original is None:
                del cls.get_config
            else:
                cls.get_config = original


_ROTARY = (("keras_hub.src.layers.modeling.rotary_embedding", "RotaryEmbedding"),
           ("keras_hub.src.models.llama.llama_rotary_embedding", "LlamaRotaryEmbedding"))

_PATCH = (("keras_hub.src.models.vit.vit_layers", "ViTPatchingAndEmbedding"),)
_FREQUENCIES = (("keras_hub.src.models.moonshine.moonshine_layers",
                 "MoonshineRotaryEmbedding"),)  # = _MOONSHINE_ROTARY


_SLIDING = (("keras_hub.src.models.gemma.gemma_attention", "CachedGemmaAttention"),
            ("keras_hub.src.models.gemma3.gemma3_attention", "CachedGemma3Attention"))


def _traced_sliding_window(original):
    def _mask_sliding_window(self, attention_mask, cache_update_index=0):
        if (not isinstance(attention_mask, keras.KerasTensor)
                or getattr(self, "use_bidirectional_attention", False)
                or not isinstance(cache_update_index, int)):
            return original(self, attention_mask, cache_update_index=cache_update_index)
        from kprune.core.shape_ops import SlidingWindowMask
        return SlidingWindowMask(self.sliding_window_size, cache_update_index)(attention_mask)
    return _mask_sliding_window


def _drop_none_cache(call):
    def __call__(self, *args, **kwargs):
        for key in ("cache", "cache_update_index"):
            if key in kwargs and kwargs[key] is None:
                del kwargs[key]
        return call(self, *args, **kwargs)
    return __call__


@contextlib.contextmanager
def traced_calls():
    """While a composite is traced: keras-hub's `CachedMultiHeadAttention`
    called with `cache=None` (every decoder block does) is recorded without
    those arguments. keras-hub 0.32 passes them on to `MultiHeadAttention`'s
    `compute_output_spec`, which refuses them, so a graph that records them
    can be neither traced nor loaded back."""
    loaded = "keras_hub" in sys.modules
    cls = _classes((("keras_hub.src.layers.modeling.cached_multi_head_attention",
                     "CachedMultiHeadAttention"),)) if loaded else ()
    rotary = _classes((_MOONSHINE_ATTENTION,)) if loaded else ()
    frequencies = _classes((_MOONSHINE_ROTARY,)) if loaded else ()
    patches = [(c, "__call__", _drop_none_cache(c.__call__)) for c in cls]
    patches += [(c, "compute_output_spec", _spec_with_rotary) for c in rotary]
    patches += [(c, "compute_output_shape", _frequencies_shape) for c in frequencies]
    patches += [(c, "_mask_sliding_window", _traced_sliding_window(c._mask_sliding_window))
                for c in (_classes(_SLIDING) if loaded else ())]
    saved = [(c, name, c.__dict__.get(name)) for c, name, _ in patches]
    try:
        for c, name, new in patches:
            setattr(c, name, new)
        yield
    finally:
        for c, name, original in saved:
            if original is None:
                delattr(c, name)
            else:
                setattr(c, name, original)


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
    rotary = RotaryEmbeddingHandler()
    rotary.layer_types = _classes(_ROTARY)
    frequencies = RotaryFrequenciesHandler()
    frequencies.layer_types = _classes(_FREQUENCIES)
    attention = _rotary_attention_handler()
    attention.layer_types = _classes((_MOONSHINE_ATTENTION,))
    for handler in (position, norms, patch, rotary, frequencies, attention):
        if handler.layer_types:
            register_handler(handler, first=False)
    return True
