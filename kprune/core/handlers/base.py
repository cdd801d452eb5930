"""The channel-handler registry: one small class per layer type.

A handler tells kprune three things about a layer type:

* `propagate`: given the channel layouts of a call's inputs, the layouts of
  its outputs, creating new channels (`ctx.new_channels`), coupling channels
  that must be removed together (`ctx.couple`) or freezing channels that must
  not change (`ctx.fix`);
* `weight_roles`: for each weight (by name, or by position in
  `layer.weights` where names repeat), which axes are indexed by input
  channels ('in'; 'in:K' for the layer's K-th input tensor), output channels
  ('out'; 'out:K'), input channels expanded by a depth multiplier ('in*m'),
  the layer's own outputs read back as inputs ('in:state', a recurrent
  kernel's rows) or a set of units inside the layer ('unit:heads', created
  in `propagate` with `ctx.internal_channels`); a role ending in '@G' spans
  G blocks of that axis side by side (an LSTM's four gates: 'out@4').
  kprune slices those axes; in the masked reference it zeroes the 'in...'
  and 'unit:...' axes of layers that mix channels;
* `update_config` / `rewrite_config`: how the layer's config changes with
  the new widths (`rewrite_config` sees every input, output and unit set:
  a `LayerKeeps`);
* `adjust_weights`: an optional transform of the sliced weights (attention
  rescales its queries when the key dimension shrinks);
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
    #: True for handlers that carry units along other axes than the channel
    #: axis (`ctx.axes_of` / `ctx.set_axis_layout`: attention heads in a
    #: (batch, seq, heads, head_dim) tensor); any other handler's inputs
    #: have those units frozen.
    follows_axes: bool = False

    def propagate(self, call, ctx) -> List[np.ndarray]:
        raise NotImplementedError

    def input_slots(self, call) -> Dict[str, int]:
        """{argument name: index in `call.inputs`} for the inputs that
        'in:<name>' weight roles refer to (attention's query, key, value)."""
        return {}

    def weight_roles(self, layer, in_channels: int,
                     out_channels: int) -> Dict[str, Roles]:
        """weight name -> role of each axis ('in', 'out', 'in*m' or None)."""
        return {}

    def update_config(self, config: dict, layer, in_keep, out_keep) -> None:
        """Mutates `config` (the layer's get_config()) for the new widths."""

    def rewrite_config(self, config: dict, layer, keeps: "LayerKeeps") -> None:
        """Mutates `config` for the new widths, seeing every input, output
        and internal unit set (`keeps`); the default calls `update_config`
        with the first input's and output's kept channels."""
        self.update_config(config, layer, keeps.in_keep, keeps.out_keep)

    def adjust_weights(self, layer, values: List[np.ndarray],
                       keeps: "LayerKeeps") -> List[np.ndarray]:
        """The sliced weights (in `layer.weights` order) of the pruned layer,
        transformed where slicing alone would change what the layer computes;
        the default returns them unchanged."""
        return values

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


def parse_role(role: str) -> Tuple[str, int]:
    """'out@4' -> ('out', 4); 'in' -> ('in', 1).

    Example:
        >>> parse_role("unit:heads@2")
        ('unit:heads', 2)
    """
    base, _, blocks = str(role).partition("@")
    return base, int(blocks) if blocks else 1


def zeroed_in_reference(role: str) -> bool:
    """Whether the masked reference zeroes this axis of a channel-mixing
    layer: channels it reads ('in', 'in:K', 'in*m', 'in:state') and units
    inside it ('unit:NAME')."""
    base = parse_role(role)[0]
    return base.startswith("in") or base.startswith("unit:")


class LayerKeeps:
    """The channels of one layer that survive a removal.

    Attributes:
        inputs / outputs: kept channel indices of each input / output tensor
            of the layer's (first) call.
        units: {name: kept indices} of its internal unit sets.
        sizes: the full sizes, keyed like `index` roles.

    Example:
        >>> keeps.index("unit:heads")     # kept heads, or None when all stay
        array([0, 2])
    """

    def __init__(self, inputs, outputs, units, in_sizes, out_sizes, unit_sizes,
                 multiplier=1, slots=None):
        self.inputs, self.outputs, self.units = inputs, outputs, units
        self.slots = dict(slots or {})
        self.in_sizes, self.out_sizes, self.unit_sizes = in_sizes, out_sizes, unit_sizes
        self.multiplier = multiplier

    @property
    def in_keep(self):
        return self.inputs[0] if self.inputs else np.arange(0)

    @property
    def out_keep(self):
        return self.outputs[0] if self.outputs else np.arange(0)

    @property
    def n_in(self) -> int:
        """Width of the first input (0 without inputs)."""
        return self.in_sizes[0] if self.in_sizes else 0

    @property
    def n_out(self) -> int:
        """Width of the first output (0 without outputs)."""
        return self.out_sizes[0] if self.out_sizes else 0

    @property
    def changed(self) -> bool:
        pairs = list(zip(self.inputs, self.in_sizes)) + list(
            zip(self.outputs, self.out_sizes)) + [
            (self.units[k], self.unit_sizes[k]) for k in self.units]
        return any(len(k) != n for k, n in pairs)

    def _base(self, base):
        if base == "in*m":
            m = self.multiplier
            keep, n = self.in_keep, self.in_sizes[0]
            return (keep[:, None] * m + np.arange(m)[None, :]).reshape(-1), n * m
        if base in ("in", "out", "in:state"):
            lst, sizes = ((self.inputs, self.in_sizes) if base == "in"
                          else (self.outputs, self.out_sizes))
            return lst[0], sizes[0]
        kind, _, rest = base.partition(":")
        if kind == "unit":
            if rest not in self.units:
                raise KeyError(f"no unit set '{rest}' (has {sorted(self.units)})")
            return self.units[rest], self.unit_sizes[rest]
        if kind == "in" and rest in self.slots:
            return self.inputs[self.slots[rest]], self.in_sizes[self.slots[rest]]
        if kind in ("in", "out") and rest.isdigit():
            lst, sizes = ((self.inputs, self.in_sizes) if kind == "in"
                          else (self.outputs, self.out_sizes))
            return lst[int(rest)], sizes[int(rest)]
        raise KeyError(f"unknown weight role {base!r}")

    def size(self, role: str) -> int:
        base, blocks = parse_role(role)
        return self._base(base)[1] * blocks

    def index(self, role: str):
        """Kept indices along an axis of this role (None: all kept)."""
        base, blocks = parse_role(role)
        keep, n = self._base(base)
        if len(keep) == n:
            return None
        return np.concatenate([keep + b * n for b in range(blocks)]) if blocks > 1 else keep


class ChannelKeepingOp(ChannelHandler):
    """An op that passes channels through when `keeps(call, ctx)` says it
    leaves the channel axis whole (and the width is unchanged), and is
    otherwise a boundary: the channels it reads and its output are frozen,
    with `mixing` (what the op does to the channel axis) as the reason."""

    is_structural = True
    mixing = "mixes the channel axis"

    def keeps(self, call, ctx) -> bool:
        raise NotImplementedError

    def why(self, call) -> str:
        """The reason the op's channels are frozen when it does not keep them."""
        return f"'{call.path}' ({call.class_name}) {self.mixing}"

    def propagate(self, call, ctx):
        layout = ctx.input_layout(call)
        out_width = ctx.tensor(call.outputs[0]).channels
        if out_width == len(layout) and self.keeps(call, ctx):
            return [layout]
        ctx.fix(layout, self.why(call))
        out = ctx.new_channels(call, out_width)
        ctx.fix(out, f"output of {self.why(call)}")
        return [out]


def follow_axes_elementwise(call, ctx, skip=()) -> None:
    """Carries the units along non-channel axes (`ctx.axes_of`) of a call
    that acts element by element with broadcasting: axis a of the output
    takes the units of every input that has a full axis a (coupled), unless
    one such input has no units there (values kprune cannot slice), which
    freezes them. Inputs of higher rank than the output, and negative axes
    in `skip` (a softmax's axis), freeze their units."""
    out = call.outputs[0]
    out_shape = ctx.tensor(out).shape
    rank = len(out_shape)
    for tid in call.inputs:
        for axis, layout in ctx.axes_of(tid).items():
            shape = ctx.tensor(tid).shape
            if len(shape) > rank or axis in skip or shape[axis] != out_shape[axis]:
                ctx.fix(layout, f"'{call.path}' ({call.class_name}) changes or "
                        f"reduces axis {axis}, which holds units (attention heads)")
    for axis in range(-rank, -1):
        if axis in skip:
            continue
        full, plain = [], False
        for tid in call.inputs:
            shape = ctx.tensor(tid).shape
            if len(shape) < -axis or shape[axis] != out_shape[axis] or shape[axis] == 1:
                continue
            layout = ctx.axes_of(tid).get(axis)
            if layout is None:
                plain = True
            else:
                full.append(layout)
        if not full:
            continue
        if plain:
            for layout in full:
                ctx.fix(layout, f"'{call.path}' ({call.class_name}) combines the "
                        f"units along axis {axis} with a tensor that has none")
        for layout in full[1:]:
            ctx.couple(full[0], layout)
        for o in call.outputs:
            if len(ctx.tensor(o).shape) == rank:
                ctx.set_axis_layout(o, axis, full[0])


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
    """The handler for `layer`: exact class match first, then the nearest
    base class (so a handler for a subclass, e.g. Moonshine's attention,
    also serves that subclass's own subclasses before MultiHeadAttention's
    handler does)."""
    for cls in type(layer).__mro__:
        for h in _REGISTRY:
            if cls in h.layer_types:
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
