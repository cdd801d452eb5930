"""Model complexity: parameters, MACs, weight bytes and activation memory.

Conventions (what the numbers mean):

* **MACs** are multiply-accumulates for one sample (batch 1); FLOPs = 2 x MACs.
  Conv/Dense/Depthwise/Separable/Transposed conv count one MAC per weight use.
  Normalization layers count one MAC per output element (their scale and
  shift; BatchNormalization folds into the preceding conv on deployment, so
  this is an upper bound). An element-wise `Multiply` counts one per output
  element. Additions, activations and pooling count zero. Recurrent layers
  count their gate matrix products at every time step (SimpleRNN 1, GRU 3,
  LSTM 4 gates; Bidirectional twice); MultiHeadAttention its four
  projections plus the score and weighted-sum products; Attention its two
  products; EinsumDense one MAC per kernel use; a two-operand `ops.einsum`
  one per combination of its indices. A layer with a weight matrix
  whose cost kprune does not model (ConvLSTM, a custom layer) is listed in
  `Profile.uncounted` and a warning says so, instead of a silent 0.
* **Activation memory** is the largest total size of tensors that must be
  alive at once when the calls run one after another in graph order, at batch
  1: a tensor lives from the call that makes it (model inputs: from the
  start) until its last reader has run; model outputs live to the end. This
  is the lower bound of a TFLite-Micro arena's activation part (its planner
  may place buffers less tightly). As on TFLite, layers that do
  nothing at inference (Dropout, Identity) and element-wise single-input
  layers whose input has no other reader (activations, BatchNormalization,
  which TFLite fuses into the previous op) reuse their input's buffer. Bytes
  are reported for float32 (4 per element) and int8 (1 per element).

Example:
    >>> p = kprune.profile(model)
    >>> print(p)            # per-layer table and totals
    >>> p.macs, p.params, p.peak_activation_bytes
"""

import dataclasses
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np

from kprune.compat.keras_private import argument_slots
from kprune.core.graph import Graph
from kprune.core.handlers.base import find_handler

_NOOP = (keras.layers.Dropout, keras.layers.SpatialDropout1D,
         keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D,
         keras.layers.GaussianNoise, keras.layers.GaussianDropout,
         keras.layers.AlphaDropout, keras.layers.Identity,
         keras.layers.ActivityRegularization, keras.layers.Flatten,
         keras.layers.Reshape)
_NORM = (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
         keras.layers.GroupNormalization)


@dataclasses.dataclass
class LayerProfile:
    """Complexity of one leaf layer (all its calls)."""

    name: str
    class_name: str
    params: int
    macs: int
    weight_bytes: int
    activation_bytes: int  # input + output tensors, float32, batch 1
    output_shape: Tuple


@dataclasses.dataclass
class Profile:
    """Whole-model complexity (see module docstring for conventions)."""

    layers: List[LayerProfile]
    params: int
    macs: int
    weight_bytes: int
    peak_activation_bytes: int  # float32
    peak_activation_bytes_int8: int
    peak_after: str  # the call after which the peak is reached
    #: layers with weight matrices whose MACs are not modelled (counted as 0)
    uncounted: List[str] = dataclasses.field(default_factory=list)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def layer(self, name: str) -> LayerProfile:
        for lp in self.layers:
            if lp.name == name or lp.name.rsplit("/", 1)[-1] == name:
                return lp
        raise KeyError(f"no layer '{name}' in this profile")

    def to_dict(self) -> Dict:
        d = dataclasses.asdict(self)
        d["flops"] = self.flops
        return d

    def __str__(self) -> str:
        rows = [("layer", "class", "params", "MACs", "act KiB", "output")]
        for lp in self.layers:
            rows.append((lp.name, lp.class_name, f"{lp.params:,}", f"{lp.macs:,}",
                         f"{lp.activation_bytes / 1024:.1f}", str(lp.output_shape)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        lines.append(f"parameters: {self.params:,} ({self.weight_bytes / 1024:.1f} KiB)")
        lines.append(f"MACs (batch 1): {self.macs:,}  (FLOPs = 2 x MACs)")
        lines.append(
            f"peak activation memory (batch 1): "
            f"{self.peak_activation_bytes / 1024:.1f} KiB float32, "
            f"{self.peak_activation_bytes_int8 / 1024:.1f} KiB int8 "
            f"(after '{self.peak_after}')")
        return "\n".join(lines)


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def call_macs(call, graph: Graph) -> int:
    """MACs of one call at batch 1 (see module docstring)."""
    layer = call.layer
    tensors = graph.tensors
    if not call.inputs or not call.outputs:
        return 0
    in_shape = tensors[call.inputs[0]].dims
    out_shape = tensors[call.outputs[0]].dims
    out = _prod(out_shape)
    L = keras.layers
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return _prod(in_shape) * _prod(layer.kernel_size) * layer.filters
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        m = layer.depth_multiplier
        spatial = _prod(out_shape[:-1])
        return (spatial * in_shape[-1] * m * _prod(layer.kernel_size)
                + spatial * in_shape[-1] * m * out_shape[-1])
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return out * _prod(layer.kernel_size)
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        return out * _prod(layer.kernel_size) * (in_shape[-1] // layer.groups)
    if isinstance(layer, L.Dense):
        return out * in_shape[-1]
    if isinstance(layer, _NORM):
        return out
    if isinstance(layer, L.Multiply) or (
            type(layer).__name__ == "Multiply" and len(call.inputs) > 1):
        return out
    shapes = [tensors[t].dims for t in call.inputs]
    if isinstance(layer, L.MultiHeadAttention):
        # query / value / key by argument: a mask may come second, and
        # self-attention may pass one tensor as both query and value
        slots = argument_slots(call.node, ("query", "value", "key"))
        if "query" in slots:
            q = shapes[slots["query"]]
            v = shapes[slots["value"]] if "value" in slots else q
            shapes = [q, v, shapes[slots["key"]] if "key" in slots else v]
    return _sequence_macs(layer, shapes, out_shape) or 0


_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


def _rnn_macs(layer, in_shape) -> Optional[int]:
    if isinstance(layer, keras.layers.Bidirectional):
        return sum(_rnn_macs(sub, in_shape) or 0
                   for sub in (layer.forward_layer, layer.backward_layer))
    gates = _GATES.get(type(layer).__name__)
    if gates is None or not isinstance(layer, keras.layers.RNN) or len(in_shape) != 2:
        return None
    steps, features = in_shape
    units = layer.cell.units
    return int(steps) * gates * (int(features) * units + units * units)


def _sequence_macs(layer, shapes, out_shape) -> Optional[int]:
    """MACs of recurrent, attention and einsum layers (None: not one of them)."""
    L = keras.layers
    if isinstance(layer, (L.RNN, L.Bidirectional)):
        return _rnn_macs(layer, shapes[0])
    if isinstance(layer, L.MultiHeadAttention):
        q, v = shapes[0], shapes[1]
        k = shapes[2] if len(shapes) > 2 else v
        heads, kd = layer.num_heads, layer.key_dim
        vd = layer.value_dim or kd
        tq, tk = _prod(q[:-1]), _prod(k[:-1])
        proj = (tq * q[-1] * heads * kd + tk * k[-1] * heads * kd
                + _prod(v[:-1]) * v[-1] * heads * vd)
        return int(proj + heads * tq * tk * (kd + vd) + tq * heads * vd * out_shape[-1])
    if isinstance(layer, L.Attention):
        q, v = shapes[0], shapes[1]
        return int(2 * _prod(q[:-1]) * _prod(v[:-1]) * q[-1])
    if isinstance(layer, L.EinsumDense):
        inputs, output = layer.equation.split("->")
        kernel_letters = inputs.split(",")[1]
        contracted = [d for c, d in zip(kernel_letters, layer.kernel.shape) if c not in output]
        return _prod(out_shape) * _prod(contracted)
    if type(layer).__name__ == "Einsum" and isinstance(getattr(layer, "subscripts", None), str):
        return _einsum_macs(layer.subscripts, shapes)
    return None


def _einsum_macs(subscripts, shapes) -> Optional[int]:
    """`ops.einsum` of two operands (attention scores, weighted sums): one MAC
    per combination of all its indices (the batch index counts once)."""
    operands = subscripts.replace(" ", "").split("->")[0].split(",")
    if len(operands) != 2 or len(shapes) != 2 or "." in subscripts:
        return None
    sizes = {}
    for letters, shape in zip(operands, shapes):
        # the first letter is the batch axis, excluded from `shape`
        if len(letters) != len(shape) + 1:
            return None
        for c, d in zip(letters[1:], shape):
            sizes[c] = int(d)
    return _prod(sizes.values())


def _uncounted(layer, macs) -> bool:
    """A layer that owns a weight matrix but got 0 MACs: its cost is not modelled."""
    if macs or isinstance(layer, (keras.layers.Embedding, keras.Model)):
        return False
    if type(layer).__name__.endswith("PositionEmbedding"):  # a table lookup (keras-hub)
        return False
    return any(len(w.shape) >= 2 for w in getattr(layer, "weights", ()))


def _aliases(call, graph: Graph, readers: Dict[int, int]) -> bool:
    """True when the call's output can reuse its single input's buffer."""
    if len(call.inputs) != 1 or len(call.outputs) != 1:
        return False
    if isinstance(call.layer, _NOOP):
        return True
    handler = find_handler(call.layer)
    elementwise = handler is not None and type(handler).__name__ in (
        "ActivationHandler", "BatchNormHandler", "RescalingHandler",
        "LayerScaleHandler", "ActivationOpHandler", "ElementwiseOpHandler")
    same = graph.tensors[call.inputs[0]].dims == graph.tensors[call.outputs[0]].dims
    return elementwise and same and readers[call.inputs[0]] == 1


def _peak_memory(graph: Graph) -> Tuple[int, str]:
    """Peak number of live activation elements and the call after which."""
    readers = {t: 0 for t in graph.tensors}
    last_use = {}
    for call in graph.calls:
        for t in call.inputs:
            readers[t] += 1
            last_use[t] = call.index
    pinned = set(graph.outputs)
    buffer_of = {}  # tensor -> buffer id
    size = {}
    refs = {}
    live = 0
    for t in graph.inputs:
        buffer_of[t] = t
        size[t] = graph.tensors[t].num_elements()
        refs[t] = 1
        live += size[t]
    peak, peak_after = live, "model input"
    for call in graph.calls:
        alias = _aliases(call, graph, readers)
        for t in call.outputs:
            if alias:
                b = buffer_of[call.inputs[0]]
                refs[b] += 1
            else:
                b = t
                size[b] = graph.tensors[t].num_elements()
                refs[b] = 1
                live += size[b]
            buffer_of[t] = b
        if live > peak:
            peak, peak_after = live, call.path
        dead = [t for t in set(call.inputs) if last_use[t] == call.index]
        dead += [t for t in call.outputs if t not in last_use]  # never read
        for t in dead:
            if t in pinned:
                continue
            b = buffer_of.pop(t)
            refs[b] -= 1
            if refs[b] == 0:
                live -= size[b]
    return peak, peak_after


def profile(model, graph: Optional[Graph] = None, input_shape=None) -> Profile:
    """Parameters, MACs, weight bytes and activation memory of `model`.

    Args:
        model: a Functional or Sequential Keras model (Keras 3, or tf_keras
            through `kprune.compat`).
        graph: an already built `kprune.core.graph.Graph` to reuse.
        input_shape: the input shape to measure at (batch axis excluded) when
            the model's inputs have unknown dimensions (a text model's
            sequence length): a tuple, a list of tuples in input order, or a
            dict by input name (keras-hub: ``{"token_ids": (128,),
            "padding_mask": (128,)}``). Not needed for fixed-shape models;
            inside `kprune.prune` the training data's first batch gives it.

    Returns:
        A `Profile`: per-layer `LayerProfile`s and totals; `print()` shows a
        table.

    Example:
        >>> p = kprune.profile(keras.applications.MobileNetV2(weights=None))
        >>> f"{p.macs / 1e6:.0f} M MACs, {p.params:,} parameters"
        '301 M MACs, 3,538,984 parameters'
    """
    if graph is None or (input_shape is not None and graph.needs_fixing()):
        # composite layers and Functional subclasses: their graph
        from kprune.core.composite import functional_view
        from kprune.compat.tf_keras_bridge import keras3_of
        model = keras3_of(model)
        graph = Graph.from_model(functional_view(model), input_shapes=input_shape)
    rows: Dict[str, LayerProfile] = {}
    uncounted: List[str] = []
    seen_params = set()
    for call in graph.calls:
        layer = call.layer
        params = wbytes = 0
        if id(layer) not in seen_params and isinstance(layer, keras.layers.Layer):
            seen_params.add(id(layer))
            for w in layer.weights:
                n = _prod(w.shape)
                params += n
                wbytes += n * np.dtype(w.dtype).itemsize
        act = 4 * sum(graph.tensors[t].num_elements()
                      for t in call.inputs + call.outputs)
        row = rows.get(call.path)
        out_shape = graph.tensors[call.outputs[0]].dims if call.outputs else ()
        macs = call_macs(call, graph)
        if _uncounted(layer, macs) and call.path not in uncounted:
            uncounted.append(call.path)
        if row is None:
            rows[call.path] = LayerProfile(call.path, call.class_name, params,
                                           macs, wbytes, act, out_shape)
        else:
            row.macs += macs
            row.activation_bytes += act
    peak, after = _peak_memory(graph)
    layers = list(rows.values())
    if uncounted:
        import warnings

        warnings.warn(
            f"kprune.profile: the MACs of {', '.join(uncounted)} are not modelled and count "
            "as 0, so the MAC total is a lower bound (see Profile.uncounted); register a "
            "handler or count them yourself", RuntimeWarning, stacklevel=2)
    return Profile(layers=layers,
                   params=sum(r.params for r in layers),
                   macs=sum(r.macs for r in layers),
                   weight_bytes=sum(r.weight_bytes for r in layers),
                   peak_activation_bytes=4 * peak,
                   peak_activation_bytes_int8=peak,
                   peak_after=after, uncounted=uncounted)



def layer_widths(model) -> Dict[str, int]:
    """{layer: output channels} of every Conv/Dense-like layer (``filters`` or
    ``units``, recurrent layers included), nested models' layers included;
    a ``MultiHeadAttention`` gives ``'<name>:heads'``, ``'<name>:key_dim'``
    and ``'<name>:value_dim'`` (its dependency groups' names).

    Example:
        >>> layer_widths(kprune.zoo.lenet5())["conv1"]
        6
        >>> layer_widths(kprune.zoo.vit_tiny())["b0_mha:heads"]
        4
    """
    widths = {}
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.MultiHeadAttention):
            for attr, key in (("num_heads", "heads"), ("key_dim", "key_dim"),
                              ("value_dim", "value_dim")):
                widths[f"{layer.name}:{key}"] = int(getattr(layer, attr))
            continue
        for attr in ("filters", "units"):
            v = getattr(layer, attr, None)
            if isinstance(v, int):
                widths[layer.name] = v
                break
    return widths


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def model_size(model, input_shape=None) -> Dict:
    """``{'params', 'macs', 'widths'}`` of `model`: parameters, MACs at batch 1
    (at `input_shape` for inputs of unknown size, see `profile`) and
    `layer_widths` (what every pruning round records).

    Example:
        >>> model_size(kprune.zoo.lenet5())["params"]
        61706
    """
    prof = profile(model, input_shape=input_shape)
    return {"params": int(prof.params), "macs": int(prof.macs), "widths": layer_widths(model)}
