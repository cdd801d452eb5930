"""The channel-handler registry: one small class per layer type.

A handler tells kprune three things about a layer type:

* `propagate`: given the channel layouts of a call's inputs, the layouts of
  its outputs, creating new channels (`ctx.new_channels`), coupling channels
  that must be removed together (`ctx.couple`) or freezing channels that must
  not change (`ctx.fix`);
* `weight_roles`: for each weight, which axes are indexed by input channels
  ('in'), output channels ('out') or input channels expanded by a depth
  multiplier ('in*m'); kprune slices those axes;
* `update_config`: how the layer's config changes with the new widths;
* `mixing_activation` (a trait, read from `layer.activation` by default):
  whether the layer ends with an activation that mixes channels (softmax),
  whose output channels kprune then freezes.

Supporting a new layer type, or your own custom layer, is one subclass:

    >>> class MyScale(kprune.ChannelHandler):
    ...     layer_types = (MyScaleLayer,)
    ...     def propagate(self, call, ctx):
    ...         return [ctx.input_layout(call)]        # channel-wise
    ...     def weight_roles(self, layer, in_channels, out_channels):
    ...         return {"scale": ("in",)}
    >>> kprune.register_handler(MyScale())
"""

from typing import Dict, List, Optional, Tuple

import numpy as np

Roles = Tuple[Optional[str], ...]


class ChannelHandler:
    """Base class: the behaviour of one family of layer types."""

    #: classes this handler serves (exact class or subclasses).
    layer_types: tuple = ()
    #: True for layers that combine input channels with weights (Conv, Dense):
    #: a removed input channel's contribution is zero in a masked reference.
    mixes_channels: bool = False
    #: True for layers after which the output is "post-activation" for
    #: activation-based scoring.
    is_activation: bool = False
    #: True for layers that only move or select values per channel (pooling,
    #: padding, flatten, dropout, concat): scoring looks through them.
    is_structural: bool = False

    def propagate(self, call, ctx) -> List[np.ndarray]:
        raise NotImplementedError

    def weight_roles(self, layer, in_channels: int,
                     out_channels: int) -> Dict[str, Roles]:
        """weight name -> role of each axis ('in', 'out', 'in*m' or None)."""
        return {}

    def update_config(self, config: dict, layer, in_keep, out_keep) -> None:
        """Mutates `config` (the layer's get_config()) for the new widths."""

    def mixing_activation(self, layer) -> Optional[str]:
        """The name of the activation `layer` applies to its output when that
        activation mixes channels (softmax over the channel axis), else None.

        kprune freezes the output channels of such a layer: removing one
        would change every other channel's value. The default reads
        `layer.activation` (Conv, Dense, Activation, ...); see
        `mixing_activation_name`.
        """
        return mixing_activation_name(getattr(layer, "activation", None))

    def describe(self) -> str:
        return type(self).__name__


_REGISTRY: List[ChannelHandler] = []


def register_handler(handler: ChannelHandler, first: bool = True) -> ChannelHandler:
    """Registers a handler instance; later registrations win by default.

    Example:
        >>> kprune.register_handler(MyScale())
    """
    if not isinstance(handler, ChannelHandler):
        raise TypeError(
            f"register_handler expects a kprune.ChannelHandler instance, got "
            f"{type(handler).__name__}")
    if not handler.layer_types:
        raise ValueError(
            f"{type(handler).__name__}.layer_types is empty: name the layer "
            "classes this handler serves")
    if first:
        _REGISTRY.insert(0, handler)
    else:
        _REGISTRY.append(handler)
    return handler


def unregister_handler(handler: ChannelHandler) -> None:
    _REGISTRY.remove(handler)


def find_handler(layer) -> Optional[ChannelHandler]:
    """The handler for `layer`: exact class match first, then subclasses."""
    cls = type(layer)
    for h in _REGISTRY:
        if cls in h.layer_types:
            return h
    for h in _REGISTRY:
        if isinstance(layer, h.layer_types):
            return h
    return None


#: keras.activations that act on each element separately.
ELEMENTWISE_ACTIVATIONS = frozenset((
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu",
    "gelu_approximate",
    "sigmoid", "hard_sigmoid", "log_sigmoid", "sparse_sigmoid", "silu",
    "swish", "hard_silu", "hard_swish", "mish", "tanh", "hard_tanh",
    "tanh_shrink", "hard_shrink", "soft_shrink", "softplus", "softsign",
    "sparse_plus", "squareplus", "exponential", "threshold"))


def mixing_activation_name(activation) -> Optional[str]:
    """None when `activation` (a function, a name or None) acts element by
    element; otherwise its name. Softmax-like activations (softmax,
    log_softmax, sparsemax, glu) and activations kprune does not know mix
    channels, as far as kprune can tell.

    Example:
        >>> mixing_activation_name(keras.activations.get("softmax"))
        'softmax'
        >>> mixing_activation_name("relu") is None
        True
    """
    if activation is None:
        return None
    name = activation if isinstance(activation, str) else getattr(
        activation, "__name__", type(activation).__name__)
    if name in ELEMENTWISE_ACTIVATIONS:
        return None
    return name


def input_shape_of(layer) -> Tuple[Optional[int], ...]:
    """The shape (batch axis first) a built layer was built for."""
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    for shape in shapes.values():
        if isinstance(shape, (list, tuple)) and (
                not shape or not isinstance(shape[0], (list, tuple))):
            return tuple(shape)
    return tuple(layer.input.shape)


def normalized_axes(axis, rank: int) -> List[int]:
    """`axis` (int or sequence; rank counts the batch axis) as non-negative
    axis indices, in the given order."""
    axes = [axis] if isinstance(axis, int) else list(axis)
    return [int(a) % rank for a in axes]


def channels_last_axis(axis, rank: int) -> bool:
    """True when `axis` (int or 1-item sequence) is the last axis of rank+1 dims."""
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis == -1 or axis == rank  # rank excludes the batch axis
