"""Handlers for layers that create channels: Conv, Dense, SeparableConv, and
the channel-wise DepthwiseConv."""

import numpy as np
from keras import layers

from kprune.core.handlers.base import ChannelHandler, register_handler


def _check_channels_last(call, ctx):
    fmt = getattr(call.layer, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        raise ValueError(
            f"layer '{call.path}' ({call.class_name}) uses data_format="
            f"'{fmt}'; kprune supports channels_last models only (the Keras "
            "default)")


class ConvHandler(ChannelHandler):
    """Conv1D/2D/3D: kernel (..., in, out); grouped convs are boundaries."""

    layer_types = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
    mixes_channels = True

    def propagate(self, call, ctx):
        _check_channels_last(call, ctx)
        layer = call.layer
        groups = getattr(layer, "groups", 1)
        layout = ctx.input_layout(call)
        if groups == 1:
            return [ctx.new_channels(call, layer.filters)]
        if groups == len(layout):  # depthwise written as a grouped conv
            return [np.repeat(layout, layer.filters // groups)]
        ctx.fix(layout, f"input of grouped conv '{call.path}' (groups={groups})")
        out = ctx.new_channels(call, layer.filters)
        ctx.fix(out, f"output of grouped conv '{call.path}' (groups={groups})")
        return [out]

    def weight_roles(self, layer, in_channels, out_channels):
        rank = len(layer.kernel.shape)
        pre = (None,) * (rank - 2)
        groups = getattr(layer, "groups", 1)
        if groups == 1:
            return {"kernel": pre + ("in", "out"), "bias": ("out",)}
        if groups == in_channels:  # depthwise: kernel (..., 1, C*m)
            return {"kernel": pre + (None, "out"), "bias": ("out",)}
        return {}

    def update_config(self, config, layer, in_keep, out_keep):
        config["filters"] = len(out_keep)
        if config.get("groups", 1) != 1:
            config["groups"] = len(in_keep)


class ConvTransposeHandler(ConvHandler):
    """Conv1D/2D/3DTranspose: kernel (..., out, in)."""

    layer_types = (layers.Conv1DTranspose, layers.Conv2DTranspose,
                   layers.Conv3DTranspose)

    def weight_roles(self, layer, in_channels, out_channels):
        rank = len(layer.kernel.shape)
        return {"kernel": (None,) * (rank - 2) + ("out", "in"), "bias": ("out",)}


class DenseHandler(ChannelHandler):
    """Dense on the last axis of any rank."""

    layer_types = (layers.Dense,)
    mixes_channels = True

    def propagate(self, call, ctx):
        return [ctx.new_channels(call, call.layer.units)]

    def weight_roles(self, layer, in_channels, out_channels):
        return {"kernel": ("in", "out"), "bias": ("out",)}

    def update_config(self, config, layer, in_keep, out_keep):
        config["units"] = len(out_keep)


class SeparableConvHandler(ChannelHandler):
    """SeparableConv1D/2D: depthwise (.., in, m), pointwise (.., in*m, out)."""

    layer_types = (layers.SeparableConv1D, layers.SeparableConv2D)
    mixes_channels = True

    def propagate(self, call, ctx):
        _check_channels_last(call, ctx)
        return [ctx.new_channels(call, call.layer.filters)]

    def weight_roles(self, layer, in_channels, out_channels):
        rank = len(layer.depthwise_kernel.shape)
        pre = (None,) * (rank - 2)
        return {"depthwise_kernel": pre + ("in", None),
                "pointwise_kernel": pre + ("in*m", "out"),
                "bias": ("out",)}

    def update_config(self, config, layer, in_keep, out_keep):
        config["filters"] = len(out_keep)


class DepthwiseConvHandler(ChannelHandler):
    """DepthwiseConv1D/2D: output channel c*m+k comes from input channel c."""

    layer_types = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)

    def propagate(self, call, ctx):
        _check_channels_last(call, ctx)
        m = call.layer.depth_multiplier
        return [np.repeat(ctx.input_layout(call), m)]

    def weight_roles(self, layer, in_channels, out_channels):
        rank = len(layer.kernel.shape)
        return {"kernel": (None,) * (rank - 2) + ("in", None), "bias": ("out",)}


for _h in (ConvHandler(), ConvTransposeHandler(), DenseHandler(),
           SeparableConvHandler(), DepthwiseConvHandler()):
    register_handler(_h, first=False)
