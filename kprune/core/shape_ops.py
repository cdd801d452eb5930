"""Shape values in a composite layer's trace.

A decoder block reads its sequence length with `ops.shape(x)` to build its
causal mask. On symbolic inputs of unknown length `ops.shape` gives `None`,
and `ops.arange(None)` cannot be traced, so such a block stayed whole.

While `composite.functional_view` traces a layer's `call`, `traced_shapes()`
makes the trace carry shape values:

* a dimension the trace knows stays a Python int (a constant of the trace);
* an unknown dimension of a symbolic tensor becomes a `SymbolicDim`, which
  remembers the tensor and the axis it came from; code that only passes it
  along works, arithmetic on it fails (the layer then stays whole, with the
  reason, as before);
* `ops.arange(d)` of such a `SymbolicDim` becomes a traced layer,
  `Positions`, that gives the positions when the model runs (Mistral's
  sliding-window mask);
* `ops.reshape(x, shape)` whose `shape` holds the batch `SymbolicDim` first
  and at most one other `SymbolicDim` becomes a `keras.layers.Reshape` of
  the rest, that one as -1 (Gemma's attention splits its heads into key /
  value groups with `(*ops.shape(q)[:-2], groups, per_group, head_dim)`);
* keras-hub Gemma's sliding-window mask (band over traced lengths)
  becomes a traced layer, `SlidingWindowMask` (patched in by
  `kprune.core.handlers.keras_hub.traced_calls`);
* keras-hub's `compute_causal_mask(batch, input_length, output_length,
  cache_index)` given `SymbolicDim`s of one tensor's batch and sequence axes
  becomes a traced layer, `CausalMask`, that computes the same mask from the
  tensor's shape when the model runs (any sequence length).

`CausalMask`, `Positions` and `SlidingWindowMask` are ordinary serializable
Keras layers (registered as `kprune>CausalMask`, `kprune>Positions`, ...): a pruned model that
holds one loads back once kprune is imported. Their handler reads no channels: the tensor it measures keeps its
channels prunable, and its output (positions, not channels) is frozen.

Example:
    >>> with traced_shapes():
    ...     outs = decoder_block.call(x_symbolic)   # the mask is a CausalMask call
"""

import sys

import keras
from keras import ops

from kprune.core.handlers.base import ChannelHandler, register_handler
from kprune.core.scoped_patch import ThreadScopedPatch


class SymbolicDim:
    """An unknown dimension of symbolic tensor `tensor` along `axis`."""

    def __init__(self, tensor, axis):
        self.tensor, self.axis = tensor, int(axis)

    def __repr__(self):
        return f"SymbolicDim(axis={self.axis})"

    def __index__(self):  # reshape((b, n, -1)) and friends cannot use it
        raise TypeError(f"the length of axis {self.axis} is unknown in a trace")

    __int__ = __index__


@keras.saving.register_keras_serializable(package="kprune")
class CausalMask(keras.layers.Layer):
    """The causal mask of a sequence: `(batch, length, length)` with
    mask[b, i, j] = (i + offset >= j), length read from axis `axis` of the
    input (batch from axis 0), as keras-hub's `compute_causal_mask`.

    Example:
        >>> CausalMask()(keras.ops.ones((2, 3, 8))).shape
        (2, 3, 3)
    """

    def __init__(self, axis=1, offset=0, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.offset = int(axis), int(offset)

    def call(self, x):
        shape = ops.shape(x)
        n = shape[self.axis]
        i = ops.expand_dims(ops.arange(n, dtype="float32") + float(self.offset), 1)
        j = ops.arange(n, dtype="float32")
        mask = ops.expand_dims(i >= j, 0)
        return ops.broadcast_to(mask, (shape[0], n, n))

    def compute_output_spec(self, x):
        n = x.shape[self.axis]
        return keras.KerasTensor((x.shape[0], n, n), dtype="bool")

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, offset=self.offset)
        return config


@keras.saving.register_keras_serializable(package="kprune")
class Positions(keras.layers.Layer):
    """`ops.arange(length of axis `axis` of the input)`, as `dtype`: the
    positions of a sequence whose length is known only when the model runs.

    Example:
        >>> Positions(axis=1)(keras.ops.ones((2, 3, 8)))
        <tf.Tensor: shape=(3,), ... numpy=array([0., 1., 2.], dtype=float32)>
    """

    def __init__(self, axis=1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, x):
        return ops.arange(ops.shape(x)[self.axis], dtype=self.compute_dtype)

    def compute_output_spec(self, x):
        return keras.KerasTensor((x.shape[self.axis],), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis)
        return config


@keras.saving.register_keras_serializable(package="kprune")
class SlidingWindowMask(keras.layers.Layer):
    """`mask` (batch, queries, keys) and'ed with a band: query i (at
    position i + offset) sees key j when |i + offset - j| < window, as
    keras-hub Gemma's sliding-window attention computes it from traced
    lengths.

    Example:
        >>> SlidingWindowMask(window=2)(keras.ops.ones((1, 3, 3), "bool"))[0]
        [[True, True, False], [True, True, True], [False, True, True]]
    """

    def __init__(self, window, offset=0, **kwargs):
        super().__init__(**kwargs)
        self.window, self.offset = int(window), int(offset)

    def call(self, mask):
        shape = ops.shape(mask)
        i = ops.expand_dims(ops.arange(shape[1], dtype="int32") + self.offset, 1)
        j = ops.expand_dims(ops.arange(shape[2], dtype="int32"), 0)
        band = ops.abs(i - j) <= self.window - 1
        return ops.logical_and(ops.cast(mask, "bool"), ops.expand_dims(band, 0))

    def compute_output_spec(self, mask):
        return keras.KerasTensor(mask.shape, dtype="bool")

    def get_config(self):
        config = super().get_config()
        config.update(window=self.window, offset=self.offset)
        return config


class CausalMaskHandler(ChannelHandler):
    """A `CausalMask` reads only its input's shape: that input keeps its
    channels; the mask's last axis counts positions, so it is frozen."""

    layer_types = (CausalMask, Positions, SlidingWindowMask)

    def propagate(self, call, ctx):
        for tid in call.inputs if isinstance(call.layer, SlidingWindowMask) else ():
            ctx.fix(ctx.layout(tid), f"it is an attention mask read by "
                    f"'{call.path}' (SlidingWindowMask)")
        out = ctx.new_channels(call, ctx.tensor(call.outputs[0]).channels)
        ctx.fix(out, f"'{call.path}' ({call.class_name}) counts positions, "
                "not channels")
        return [out]


register_handler(CausalMaskHandler(), first=False)


def _shape(original):
    def shape(x):
        result = original(x)
        if not _tracing() or not isinstance(x, keras.KerasTensor):
            return result
        return tuple(SymbolicDim(x, k) if d is None else d for k, d in enumerate(result))
    return shape


def _causal_mask(original):
    def compute_causal_mask(batch_size, input_length, output_length, cache_index=0):
        dims = (batch_size, input_length, output_length)
        if not _tracing() or not any(isinstance(d, SymbolicDim) for d in dims):
            return original(batch_size, input_length, output_length, cache_index)
        tensor = input_length.tensor if isinstance(input_length, SymbolicDim) else None
        same = all(isinstance(d, SymbolicDim) and d.tensor is tensor for d in dims)
        if (not same or batch_size.axis != 0 or input_length.axis != output_length.axis
                or not isinstance(cache_index, int) or isinstance(cache_index, bool)):
            raise TypeError("a causal mask over unknown lengths of different "
                            "tensors, or with a traced cache index")
        return CausalMask(axis=input_length.axis, offset=cache_index)(tensor)
    return compute_causal_mask


def _arange(original):
    def arange(start, stop=None, step=None, dtype=None):
        if not _tracing():
            return original(start, stop, step=step, dtype=dtype)
        if isinstance(start, SymbolicDim) and stop is None and step in (None, 1):
            return Positions(axis=start.axis, dtype=dtype or "int32")(start.tensor)
        if (isinstance(stop, SymbolicDim) and isinstance(start, int) and start == 0
                and step in (None, 1)):
            return Positions(axis=stop.axis, dtype=dtype or "int32")(stop.tensor)
        return original(start, stop, step=step, dtype=dtype)
    return arange


def _reshape(original):
    def reshape(x, newshape):
        if not _tracing() or not isinstance(x, keras.KerasTensor) or not isinstance(
                newshape, (tuple, list)) or not any(isinstance(d, SymbolicDim) for d in newshape):
            return original(x, newshape)
        first, rest = newshape[0], list(newshape[1:])
        unknown = [d for d in rest if isinstance(d, SymbolicDim)]
        if not (isinstance(first, SymbolicDim) and first.axis == 0) or len(unknown) > 1 or (
                -1 in rest and unknown):
            raise TypeError("a reshape to lengths read from a tensor other than "
                            "its batch and one unknown axis")
        target = tuple(-1 if isinstance(d, SymbolicDim) else int(d) for d in rest)
        return keras.layers.Reshape(target)(x)
    return reshape


def traced_shapes():
    """Within it, `keras.ops.shape` of a symbolic tensor gives `SymbolicDim`s
    for unknown dimensions, and keras-hub's `compute_causal_mask` (in every
    module that imported it) makes a `CausalMask` call.

    Thread-safe (`kprune.core.scoped_patch`): the functions are replaced
    while any thread is inside a `traced_shapes()` block, and the
    replacements act only for the threads inside one; every other thread
    gets the original behaviour."""
    return _PATCH.active()


def _install():
    """Replaces the functions; returns the function that puts them back."""
    patched = [(keras.ops, "shape", keras.ops.shape), (keras.ops, "arange", keras.ops.arange),
               (keras.ops, "reshape", keras.ops.reshape)]
    utils = sys.modules.get("keras_hub.src.layers.modeling.transformer_layer_utils")
    if utils is not None:
        original = utils.compute_causal_mask
        for name, module in list(sys.modules.items()):
            if (name.startswith("keras_hub.") and module is not None
                    and getattr(module, "compute_causal_mask", None) is original):
                patched.append((module, "compute_causal_mask", original))
    replacement = {"shape": _shape(keras.ops.shape), "arange": _arange(keras.ops.arange),
                   "reshape": _reshape(keras.ops.reshape)}
    if utils is not None:
        replacement["compute_causal_mask"] = _causal_mask(utils.compute_causal_mask)
    for module, name, _ in patched:
        setattr(module, name, replacement[name])

    def restore():
        for module, name, value in patched:
            setattr(module, name, value)
    return restore


_PATCH = ThreadScopedPatch(_install)
_tracing = _PATCH.acting
