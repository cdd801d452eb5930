"""Handlers for layers that act on each channel separately: normalization,
activations, pooling, padding, dropout, preprocessing."""

from keras import layers

from kprune.handlers.base import ChannelHandler, channels_last_axis, register_handler


class ChannelwiseHandler(ChannelHandler):
    """Output channel c depends on input channel c only; weights whose last
    axis has one entry per channel are sliced."""

    layer_types = ()

    def propagate(self, call, ctx):
        fmt = getattr(call.layer, "data_format", "channels_last")
        if fmt not in (None, "channels_last"):
            raise ValueError(
                f"layer '{call.path}' ({call.class_name}) uses data_format="
                f"'{fmt}'; kprune supports channels_last models only")
        return [ctx.input_layout(call)]

    def weight_roles(self, layer, in_channels, out_channels):
        roles = {}
        for w in layer.weights:
            shape = tuple(w.shape)
            if shape and shape[-1] == in_channels:
                roles[w.name] = (None,) * (len(shape) - 1) + ("in",)
        return roles


class ActivationHandler(ChannelwiseHandler):
    """Element-wise activations; softmax-like ones mix channels: boundary."""

    layer_types = (layers.ReLU, layers.LeakyReLU, layers.ELU, layers.PReLU,
                   layers.Activation)
    is_activation = True

    def propagate(self, call, ctx):
        name = getattr(call.layer, "activation", None)
        name = getattr(name, "__name__", name)
        if isinstance(call.layer, layers.Activation) and name in (
                "softmax", "log_softmax"):
            layout = ctx.input_layout(call)
            ctx.fix(layout, f"{name} over channels in '{call.path}'")
            return [layout]
        return super().propagate(call, ctx)


class StructuralHandler(ChannelwiseHandler):
    """Pooling, padding, cropping, up-sampling, dropout: no weights."""

    layer_types = (
        layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
        layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D,
        layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D,
        layers.GlobalMaxPooling3D, layers.GlobalAveragePooling1D,
        layers.GlobalAveragePooling2D, layers.GlobalAveragePooling3D,
        layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D,
        layers.Cropping1D, layers.Cropping2D, layers.Cropping3D,
        layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D,
        layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D,
        layers.SpatialDropout3D, layers.GaussianNoise, layers.GaussianDropout,
        layers.AlphaDropout, layers.ActivityRegularization, layers.Identity,
    )
    is_structural = True


class BatchNormHandler(ChannelwiseHandler):
    layer_types = (layers.BatchNormalization,)

    def propagate(self, call, ctx):
        rank = len(ctx.tensor(call.inputs[0]).shape)
        if not channels_last_axis(call.layer.axis, rank):
            raise ValueError(
                f"layer '{call.path}' (BatchNormalization) normalizes axis "
                f"{call.layer.axis}, not the channel axis; kprune supports "
                "channels_last models only")
        return [ctx.input_layout(call)]


class LayerNormHandler(ChannelwiseHandler):
    """LayerNormalization: when it normalizes over the channel axis, removing
    channels changes its statistics (the group is marked inexact)."""

    layer_types = (layers.LayerNormalization,)

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        rank = len(ctx.tensor(call.inputs[0]).shape)
        axes = call.layer.axis
        axes = [axes] if isinstance(axes, int) else list(axes)
        if -1 in axes or rank in axes:
            ctx.mark_inexact(layout, f"LayerNormalization '{call.path}' "
                             "normalizes over the channels")
        return [layout]


class GroupNormHandler(ChannelwiseHandler):
    """GroupNormalization: channels of one normalization group are removed
    together, so the remaining groups keep their exact statistics."""

    layer_types = (layers.GroupNormalization,)

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        rank = len(ctx.tensor(call.inputs[0]).shape)
        if not channels_last_axis(call.layer.axis, rank):
            raise ValueError(
                f"layer '{call.path}' (GroupNormalization) groups axis "
                f"{call.layer.axis}; kprune supports the channel axis only")
        groups = call.layer.groups
        channels = len(layout)
        if groups not in (-1, channels):
            size = channels // groups
            for g in range(groups):
                block = layout[g * size:(g + 1) * size]
                for c in block[1:]:
                    ctx.union(block[0], c)
        return [layout]

    def update_config(self, config, layer, in_keep, out_keep):
        groups = config["groups"]
        channels = layer.gamma.shape[0] if layer.gamma is not None else None
        if channels is None:
            channels = layer.beta.shape[0]
        if groups != -1 and groups != channels:
            config["groups"] = len(out_keep) // (channels // groups)
        elif groups == channels:
            config["groups"] = len(out_keep)


class RescalingHandler(ChannelwiseHandler):
    """Rescaling / Normalization with scalar or per-channel parameters."""

    layer_types = (layers.Rescaling, layers.Normalization)

    def update_config(self, config, layer, in_keep, out_keep):
        for key in ("scale", "offset", "mean", "variance"):
            value = config.get(key)
            if isinstance(value, (list, tuple)) and len(value) > 1:
                config[key] = [value[i] for i in in_keep]


class LayerScaleHandler(ChannelwiseHandler):
    """keras.applications ConvNeXt's LayerScale: a per-channel scale."""

    def update_config(self, config, layer, in_keep, out_keep):
        config["projection_dim"] = len(out_keep)


for _h in (ActivationHandler(), StructuralHandler(), BatchNormHandler(),
           LayerNormHandler(), GroupNormHandler(), RescalingHandler()):
    register_handler(_h, first=False)

try:  # keras.applications' own layers (ConvNeXt)
    from keras.src.applications import convnext as _convnext

    class _StochasticDepthHandler(StructuralHandler):
        layer_types = (_convnext.StochasticDepth,)

    LayerScaleHandler.layer_types = (_convnext.LayerScale,)
    register_handler(LayerScaleHandler(), first=False)
    register_handler(_StochasticDepthHandler(), first=False)
except (ImportError, AttributeError):  # pragma: no cover - older Keras
    pass

# PReLU is an activation whose alpha is per channel: ChannelwiseHandler's
# weight_roles slices it. Softmax and UnitNormalization mix channels:


class MixingBoundaryHandler(ChannelHandler):
    """Layers that normalize across channels (softmax, L2 norm): channels
    entering them are frozen."""

    layer_types = (layers.Softmax, layers.UnitNormalization)

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        ctx.fix(layout, f"{call.class_name} '{call.path}' mixes channels")
        return [layout]


register_handler(MixingBoundaryHandler(), first=False)
