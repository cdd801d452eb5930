"""A flat, inlined view of a Keras 3 functional graph.

kprune reasons about a model as a list of *calls*: one entry each time a leaf
operation (a layer that is not itself a model, or a `keras.ops` operation used
inside a functional graph) is applied to tensors. Nested functional and
Sequential sub-models are inlined, so a model from `keras.applications` and
the same model wrapped inside another one look alike. A layer called at
several places produces several calls that share one `layer` object.

Example:
    >>> graph = Graph.from_model(model)
    >>> [call.path for call in graph.calls][:3]
    ['conv1', 'bn1', 'relu1']
"""

import contextlib
import contextvars
import dataclasses
from typing import Dict, List, Optional, Tuple

import keras

from kprune.compat.keras_private import (functional_inputs, functional_outputs, node_fill_in,
                                       nodes_by_depth, traced_output_spec)

#: Input shapes (batch axis excluded) that fill in a model's unknown input
#: dimensions when its MACs and memory are measured (`measured_input_shapes`).
_MEASURE_SHAPES = contextvars.ContextVar("kprune_measure_shapes", default=None)


@contextlib.contextmanager
def measured_input_shapes(shapes):
    """Within the block, graphs of models whose inputs have unknown dimensions
    (a sequence length of None) are measured at `shapes`: a tuple for a
    one-input model, a list of tuples in input order, or a dict by input
    name; None entries are left as they are. The graph's own shapes
    (`TensorInfo.shape`, what surgery reads) do not change: only
    `TensorInfo.dims`, what `kprune.profile` counts.

    Example:
        >>> with measured_input_shapes({"token_ids": (128,), "padding_mask": (128,)}):
        ...     kprune.profile(bert_backbone).macs
    """
    token = _MEASURE_SHAPES.set(shapes)
    try:
        yield
    finally:
        _MEASURE_SHAPES.reset(token)


@dataclasses.dataclass
class TensorInfo:
    """One tensor of the graph: `shape` excludes the batch axis."""

    tid: int
    shape: Tuple[Optional[int], ...]
    dtype: str
    #: the shape at the measured input shapes (`measured_input_shapes`) when
    #: `shape` has unknown dimensions and they could be inferred
    fixed: Optional[Tuple[int, ...]] = None

    @property
    def dims(self) -> Tuple[Optional[int], ...]:
        """The shape to measure: `fixed` when known, else `shape`."""
        return self.fixed if self.fixed is not None else self.shape

    @property
    def channels(self) -> int:
        """Length of the channel (last) axis; 1 for rank-0 per-sample tensors
        and for a last axis of unknown length (token ids of shape (None,),
        a sequence axis, not channels: never prunable)."""
        if not self.shape or self.shape[-1] is None:
            return 1
        return int(self.shape[-1])

    def num_elements(self) -> int:
        n = 1
        for d in self.dims:
            if d is None:
                raise ValueError(
                    f"tensor of shape {self.shape} has an unknown dimension, so its "
                    "size cannot be measured: pass the input shape to measure at "
                    "(kprune.profile(model, input_shape=(128,)), or a dict by input "
                    "name), or build the model with a fixed input shape (e.g. "
                    "keras.Input((32, 32, 3))); kprune.prune measures at the shape "
                    "of its training data's first batch")
            n *= int(d)
        return n


@dataclasses.dataclass
class Call:
    """One application of a leaf operation."""

    index: int
    layer: object  # keras.layers.Layer or keras Operation
    path: str  # 'outer_model/sub_model/layer' minus the top-level model name
    inputs: List[int]  # tensor ids, flattened in argument order
    outputs: List[int]
    node: object  # the keras Node (arguments, kwargs)

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def class_name(self) -> str:
        return type(self.layer).__name__


def is_model(layer) -> bool:
    return isinstance(layer, keras.Model)


def functional_of(model):
    """The functional graph behind a Functional or Sequential model."""
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise ValueError(
                f"Sequential model '{model.name}' has no graph yet: give it an "
                "input shape (keras.Input(...) as its first layer) or call "
                "model.build(input_shape) before pruning it")
        return fn
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "_inputs_struct"):
        return model
    raise ValueError(
        f"model '{model.name}' ({type(model).__name__}) is a subclassed model "
        "with no functional graph; kprune needs a Functional or Sequential "
        "model (build it with keras.Input(...) and keras.Model(inputs, "
        "outputs), or keras.Sequential)")


class Graph:
    """Leaf calls of a model in a valid execution order, nested models inlined."""

    def __init__(self):
        self.calls: List[Call] = []
        self.tensors: Dict[int, TensorInfo] = {}
        self.inputs: List[int] = []
        self.outputs: List[int] = []
        self.layer_paths: Dict[int, str] = {}  # id(layer) -> path
        self.model_inputs: Dict[int, List[int]] = {}  # id(sub-model) -> tids
        # id(sub-model) -> the argument tids of each of its calls: one
        # InputLayer serves them all, so they must keep equal widths.
        self.model_calls: Dict[int, List[List[int]]] = {}
        self.layers_by_path: Dict[str, object] = {}

    @classmethod
    def from_model(cls, model, input_shapes=None) -> "Graph":
        """The graph of `model`. `input_shapes` (default: those of an
        enclosing `measured_input_shapes`) fill in unknown input dimensions
        for measuring: every tensor then gets its `fixed` shape."""
        graph = cls()
        fn = functional_of(model)
        inputs = []
        kts = list(functional_inputs(fn))
        for kt in kts:
            inputs.append(graph._new_tensor(kt))
        graph.inputs = inputs
        shapes = input_shapes if input_shapes is not None else _MEASURE_SHAPES.get()
        if shapes is not None and any(None in graph.tensors[t].shape for t in inputs):
            graph._fixed = {}
            for kt, t, shape in zip(kts, inputs, input_shapes_in_order(shapes, kts)):
                graph._fix_input(kt, t, shape)
        graph.outputs = graph._inline(fn, inputs, prefix="")
        graph._fixed = None  # only needed while building
        return graph

    # -- construction -------------------------------------------------------
    _fixed = None  # id(KerasTensor) -> the same tensor at fixed shapes, while building

    def _new_tensor(self, kt) -> int:
        tid = len(self.tensors)
        shape = tuple(kt.shape)
        self.tensors[tid] = TensorInfo(tid, tuple(shape[1:]), str(kt.dtype))
        return tid

    def _fix_input(self, kt, tid, shape):
        info = self.tensors[tid]
        if shape is None:
            shape = info.shape
        shape = tuple(shape)
        if len(shape) != len(info.shape) or any(
                k is not None and k != int(d) for k, d in zip(info.shape, shape)):
            raise ValueError(
                f"input_shape {shape} does not fit model input '{_tensor_name(kt)}' of "
                f"shape {info.shape} (batch axis excluded): give one entry per axis, "
                "equal to the model's where it is known")
        if None in shape:
            return
        info.fixed = tuple(int(d) for d in shape)
        self._fixed[id(kt)] = keras.KerasTensor((1,) + info.fixed, dtype=kt.dtype)

    def _fix_outputs(self, node, op, outs):
        """Infers the fixed shapes of `node`'s outputs (tids `outs`) from its
        inputs' fixed shapes; gives up (leaves them unknown) on failure."""
        fixed = self._fixed
        if fixed is None or not all(id(kt) in fixed for kt in node.arguments.keras_tensors):
            return
        try:
            args, kwargs = node_fill_in(node, fixed)
            specs = keras.tree.flatten(op.compute_output_spec(*args, **kwargs))
            if any(None in tuple(spec.shape)[1:] for spec in specs):
                specs = keras.tree.flatten(traced_output_spec(op, args, kwargs))
        except Exception:  # noqa: BLE001 - the sizes stay unknown; measuring says so
            return
        if len(specs) != len(outs):
            return
        for kt, tid, spec in zip(node.outputs, outs, specs):
            shape = tuple(spec.shape)[1:]
            if None in shape:
                continue
            self.tensors[tid].fixed = tuple(int(d) for d in shape)
            fixed[id(kt)] = spec

    def _inline(self, fn, input_tids: List[int], prefix: str) -> List[int]:
        """Adds the calls of functional `fn`; returns its output tensor ids."""
        scope = {}
        for kt, tid in zip(functional_inputs(fn), input_tids):
            scope[id(kt)] = tid
        by_depth = nodes_by_depth(fn)
        for depth in sorted(by_depth.keys(), reverse=True):
            for node in by_depth[depth]:
                op = node.operation
                if isinstance(op, keras.layers.InputLayer):
                    continue
                args = [scope[id(kt)] for kt in node.arguments.keras_tensors]
                if is_model(op):
                    self.model_inputs.setdefault(id(op), args)
                    self.model_calls.setdefault(id(op), []).append(args)
                    sub = functional_of(op)
                    if self._fixed is not None:
                        for skt, akt in zip(functional_inputs(sub), node.arguments.keras_tensors):
                            if id(akt) in self._fixed:
                                self._fixed[id(skt)] = self._fixed[id(akt)]
                    outs = self._inline(sub, args, prefix + op.name + "/")
                    if self._fixed is not None:
                        for kt, skt in zip(node.outputs, functional_outputs(sub)):
                            if id(skt) in self._fixed:
                                self._fixed[id(kt)] = self._fixed[id(skt)]
                    for kt, tid in zip(node.outputs, outs):
                        scope[id(kt)] = tid
                    continue
                outs = [self._new_tensor(kt) for kt in node.outputs]
                self._fix_outputs(node, op, outs)
                for kt, tid in zip(node.outputs, outs):
                    scope[id(kt)] = tid
                path = prefix + op.name
                self.layer_paths.setdefault(id(op), path)
                self.layers_by_path.setdefault(path, op)
                self.calls.append(Call(len(self.calls), op, path, args, outs, node))
        return [scope[id(kt)] for kt in functional_outputs(fn)]

    # -- queries ------------------------------------------------------------
    def needs_fixing(self) -> bool:
        """True when a tensor has an unknown dimension and no fixed shape."""
        return any(None in t.shape and t.fixed is None for t in self.tensors.values())

    def calls_of(self, layer) -> List[Call]:
        return [c for c in self.calls if c.layer is layer]

    def leaf_layers(self) -> List[object]:
        """Distinct leaf layers in first-call order."""
        seen, result = set(), []
        for c in self.calls:
            if id(c.layer) not in seen:
                seen.add(id(c.layer))
                result.append(c.layer)
        return result

    def find_layer(self, name: str):
        """A leaf layer by path ('sub/conv') or by a bare name that is unique."""
        if name in self.layers_by_path:
            return self.layers_by_path[name]
        hits = [p for p in self.layers_by_path if p.rsplit("/", 1)[-1] == name]
        if len(hits) == 1:
            return self.layers_by_path[hits[0]]
        if len(hits) > 1:
            raise ValueError(
                f"layer name '{name}' is ambiguous in nested models: use one "
                f"of the paths {sorted(hits)}")
        raise ValueError(
            f"no layer named '{name}' in the model; layers are: "
            f"{_short_list(list(self.layers_by_path))}")


def _tensor_name(kt) -> str:
    history = getattr(kt, "_keras_history", None)
    return history[0].name if history else getattr(kt, "name", "?")


def input_shapes_in_order(shapes, kts):
    """`shapes` as one entry per input tensor in `kts` (None: not given).
    One tuple applies to every input of its rank; a list gives one per input
    in order; a dict gives them by input name."""
    names = [_tensor_name(kt) for kt in kts]
    if isinstance(shapes, dict):
        unknown = sorted(set(shapes) - set(names))
        if unknown:
            raise ValueError(f"input_shape names {unknown}, which are not model inputs; "
                             f"the inputs are {names}")
        result = [shapes.get(n) for n in names]
    elif not shapes or not isinstance(shapes[0], (tuple, list, type(None))):
        shape = tuple(shapes)
        result = [shape if len(kts) == 1 or len(kt.shape) - 1 == len(shape) else None
                  for kt in kts]
    else:
        result = list(shapes)
        if len(result) != len(kts):
            raise ValueError(f"input_shape gives {len(result)} shapes for a model with "
                             f"{len(kts)} inputs: give one per input, or a dict by input name")
    missing = [n for n, kt, shape in zip(names, kts, result)
               if shape is None and None in tuple(kt.shape)[1:]]
    if missing:
        raise ValueError(f"input_shape gives no shape for input(s) {missing}, whose size is "
                         "unknown: add them (a dict by input name, or one tuple for every "
                         "input of that rank)")
    return result


def _short_list(names, limit=12):
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"
