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

import dataclasses
from typing import Dict, List, Optional, Tuple

import keras

from kprune.compat.keras_private import functional_inputs, functional_outputs, nodes_by_depth


@dataclasses.dataclass
class TensorInfo:
    """One tensor of the graph: `shape` excludes the batch axis."""

    tid: int
    shape: Tuple[Optional[int], ...]
    dtype: str

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
        for d in self.shape:
            if d is None:
                raise ValueError(
                    f"tensor of shape {self.shape} has an unknown dimension; "
                    "build the model with a fixed input shape (e.g. "
                    "keras.Input((32, 32, 3)))")
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
    def from_model(cls, model) -> "Graph":
        graph = cls()
        fn = functional_of(model)
        inputs = []
        for kt in functional_inputs(fn):
            inputs.append(graph._new_tensor(kt))
        graph.inputs = inputs
        graph.outputs = graph._inline(fn, inputs, prefix="")
        return graph

    # -- construction -------------------------------------------------------
    def _new_tensor(self, kt) -> int:
        tid = len(self.tensors)
        shape = tuple(kt.shape)
        self.tensors[tid] = TensorInfo(tid, tuple(shape[1:]), str(kt.dtype))
        return tid

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
                    outs = self._inline(sub, args, prefix + op.name + "/")
                    for kt, tid in zip(node.outputs, outs):
                        scope[id(kt)] = tid
                    continue
                outs = [self._new_tensor(kt) for kt in node.outputs]
                for kt, tid in zip(node.outputs, outs):
                    scope[id(kt)] = tid
                path = prefix + op.name
                self.layer_paths.setdefault(id(op), path)
                self.layers_by_path.setdefault(path, op)
                self.calls.append(Call(len(self.calls), op, path, args, outs, node))
        return [scope[id(kt)] for kt in functional_outputs(fn)]

    # -- queries ------------------------------------------------------------
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


def _short_list(names, limit=12):
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"
