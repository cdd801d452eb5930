"""Handlers for layers that act on each channel separately: normalization,
activations, pooling, padding, dropout, preprocessing."""

from keras import layers

from kprune.core._keras_compat import convnext_layers

from kprune.core.handlers.base import (ChannelHandler, channels_last_axis,
                                  follow_axes_elementwise, input_shape_of,
                                  normalized_axes, register_handler)


class ChannelwiseHandler(ChannelHandler):
    """Output channel c depends on input channel c only.

    Weights are sliced along the channel axis only: `weight_axes` names the
    input axes a layer's weights span (normalization layers: their `axis`);
    by default weights broadcast against the input's trailing axes, so their
    last axis, when it has one entry per channel, is the channel axis.
    """

    layer_types = ()

    def propagate(self, call, ctx):
        fmt = getattr(call.layer, "data_format", "channels_last")
        if fmt not in (None, "channels_last"):
            raise ValueError(
                f"layer '{call.path}' ({call.class_name}) uses data_format="
                f"'{fmt}'; kprune supports channels_last models only")
        return [ctx.input_layout(call)]

    def weight_axes(self, layer):
        """The input axes (as given to the layer, batch axis 0, negative
        allowed) that each weight spans, in order; None when weights
        broadcast against the input's trailing axes."""
        return None

    def weight_roles(self, layer, in_channels, out_channels):
        axes = self.weight_axes(layer)
        if axes is not None:
            rank = len(input_shape_of(layer))
            axes = normalized_axes(axes, rank)
        roles = {}
        for w in layer.weights:
            shape = tuple(w.shape)
            if not shape:
                continue
            if axes is None:
                if shape[-1] == in_channels:
                    roles[w.name] = (None,) * (len(shape) - 1) + ("in",)
            elif len(shape) == len(axes) and rank - 1 in axes:
                k = axes.index(rank - 1)
                if shape[k] == in_channels:
                    roles[w.name] = tuple("in" if i == k else None
                                          for i in range(len(shape)))
        return roles


def _freeze_unless_channel_axis(call, ctx, what):
    """Channel-wise layers whose statistics run over another axis (so over
    the channels too) cannot lose channels: their channels are frozen."""
    layout = ctx.input_layout(call)
    rank = len(ctx.tensor(call.inputs[0]).shape)
    if not channels_last_axis(call.layer.axis, rank):
        ctx.fix(layout, f"{call.class_name} '{call.path}' {what} axis "
                f"{call.layer.axis}, not the channel axis, so its statistics "
                "mix channels")
    return layout


class ActivationHandler(ChannelwiseHandler):
    """Element-wise activations. A softmax-like `Activation` mixes channels:
    `mixing_activation` makes kprune freeze its channels."""

    layer_types = (layers.ReLU, layers.LeakyReLU, layers.ELU, layers.PReLU,
                   layers.Activation)
    is_activation = True
    follows_axes = True

    def propagate(self, call, ctx):
        result = super().propagate(call, ctx)
        follow_axes_elementwise(call, ctx)
        return result


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
    follows_axes = True

    def propagate(self, call, ctx):
        result = super().propagate(call, ctx)
        follow_axes_elementwise(call, ctx)
        return result


class BatchNormHandler(ChannelwiseHandler):
    layer_types = (layers.BatchNormalization,)

    def propagate(self, call, ctx):
        return [_freeze_unless_channel_axis(call, ctx, "normalizes")]

    def weight_axes(self, layer):
        return [layer.axis]


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

    def weight_axes(self, layer):
        return layer.axis


class GroupNormHandler(ChannelwiseHandler):
    """GroupNormalization: channels of one normalization group are removed
    together, so the remaining groups keep their exact statistics."""

    layer_types = (layers.GroupNormalization,)

    def propagate(self, call, ctx):
        layout = _freeze_unless_channel_axis(call, ctx, "groups")
        rank = len(ctx.tensor(call.inputs[0]).shape)
        if not channels_last_axis(call.layer.axis, rank):
            return [layout]
        groups = call.layer.groups
        channels = len(layout)
        if groups not in (-1, channels):
            size = channels // groups
            for g in range(groups):
                block = layout[g * size:(g + 1) * size]
                for c in block[1:]:
                    ctx.union(block[0], c)
        return [layout]

    def weight_axes(self, layer):
        return [layer.axis]

    def update_config(self, config, layer, in_keep, out_keep):
        groups = config["groups"]
        shape = input_shape_of(layer)
        channels = shape[normalized_axes(layer.axis, len(shape))[0]]
        if groups != -1 and groups != channels:
            config["groups"] = len(out_keep) // (channels // groups)
        elif groups == channels:
            config["groups"] = len(out_keep)


class RescalingHandler(ChannelwiseHandler):
    """Rescaling / Normalization with scalar or per-channel parameters."""

    layer_types = (layers.Rescaling, layers.Normalization)

    def propagate(self, call, ctx):
        if isinstance(call.layer, layers.Normalization):
            axes = call.layer.axis
            rank = len(ctx.tensor(call.inputs[0]).shape) + 1
            if axes is not None and rank - 1 not in normalized_axes(axes, rank):
                layout = ctx.input_layout(call)
                ctx.fix(layout, f"Normalization '{call.path}' keeps axis "
                        f"{axes}, not the channel axis")
                return [layout]
        return super().propagate(call, ctx)

    def weight_axes(self, layer):
        if isinstance(layer, layers.Normalization) and layer.axis is not None:
            return layer.axis
        return None

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

_convnext = convnext_layers()  # keras.applications' own layers (ConvNeXt)
if _convnext is not None:
    class _StochasticDepthHandler(StructuralHandler):
        layer_types = (_convnext[1],)

    LayerScaleHandler.layer_types = (_convnext[0],)
    register_handler(LayerScaleHandler(), first=False)
    register_handler(_StochasticDepthHandler(), first=False)

# PReLU is an activation whose alpha is per channel: ChannelwiseHandler's
# weight_roles slices it. Softmax and UnitNormalization mix channels:


class MixingBoundaryHandler(ChannelHandler):
    """Layers that normalize across channels (softmax, L2 norm): channels
    entering them are frozen."""

    layer_types = (layers.Softmax, layers.UnitNormalization)
    follows_axes = True

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        ctx.fix(layout, f"{call.class_name} '{call.path}' mixes channels")
        rank = len(ctx.tensor(call.inputs[0]).shape) + 1
        axes = normalized_axes(call.layer.axis, rank)
        follow_axes_elementwise(call, ctx, skip=tuple(a - rank for a in axes))
        return [layout]


register_handler(MixingBoundaryHandler(), first=False)
