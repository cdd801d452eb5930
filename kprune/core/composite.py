"""Composite layers and Functional subclasses, seen as plain graphs.

Two kinds of models hide their graph from a config-level rewrite:

* a *composite layer*: a `keras.layers.Layer` subclass whose `call` composes
  other Keras layers and `keras.ops` (keras-hub's `InvertedResidualBlock`,
  `TransformerEncoder`, your own `ResidualBlock`);
* a *Functional subclass*: a `keras.Model` subclass built on a functional
  graph whose config holds constructor arguments, not the graph (keras-hub's
  `Backbone` and `Task` classes, your own `class MyNet(keras.Model)` that
  calls `super().__init__(inputs, outputs)`).

`functional_view(model)` returns a plain `keras.Model` over the same layer
objects (weights shared, nothing copied) in which every composite layer is
replaced by a nested Functional sub-model of the same name, traced from its
`call` on symbolic inputs, and every Functional subclass by a plain
Functional model. Dependency analysis and surgery then see the inner layers:
channel dependencies flow through the composite and surgery rewrites its
inner layers. Surgery rebuilds that plain graph (classes of the leaf
layers kept, composite classes inlined as nested models), which saves and
loads as `.keras` with no custom object registered for the inlined classes;
`kprune.core.class_restore` then gives back each class whose constructor
arguments express the pruned widths.

A trace may read shapes: `kprune.core.shape_ops` turns an unknown
sequence length into traced layers (causal masks, positions). A nested
model that shares a layer with the graph around it (a keras-hub CausalLM's
logits from its backbone's token embedding) is inlined, since Keras would
load the two uses as two layers.

A composite layer that cannot be traced stays one leaf layer (a boundary,
unless a handler is registered for it), and the reason is reported in
`group.frozen`: its `call` branches in Python on tensor values, it uses its
own weights directly (no sub-layer holds them), it cannot run on symbolic
inputs, or its traced graph does not reproduce its output.

Example:
    >>> view = functional_view(keras_hub.models.MobileNetBackbone(...))
    >>> type(view).__name__
    'Functional'
    >>> untraced_reason(my_layer)       # None when it was traced
"""

import weakref
from typing import Dict, Optional

import keras
import numpy as np

from kprune.compat.keras_private import (all_layers, call_fn, functional_inputs, history_operation,
                                       node_fill_in, nodes_by_depth)
from kprune.core.graph import functional_of, is_model
from kprune.core.handlers.base import find_handler
from kprune.core.handlers.keras_hub import traced_calls
from kprune.core.scoped_patch import ThreadScopedPatch
from kprune.core.shape_ops import traced_shapes

_UNTRACED: Dict[int, tuple] = {}  # id(layer) -> (weakref, reason)
_TRACED: Dict[int, tuple] = {}  # id(sub-model) -> (weakref, layer, node)


def traced_composite(sub):
    """(composite layer or Functional subclass, its call's node) when `sub`
    is the nested model a `functional_view` made from it, else None."""
    entry = _TRACED.get(id(sub)) if sub is not None else None
    if entry is None or entry[0]() is not sub:
        return None
    return entry[1], entry[2]


def untraced_reason(layer) -> Optional[str]:
    """Why composite `layer` was left a leaf by the last `functional_view`
    that met it, or None.

    Example:
        >>> untraced_reason(model.get_layer("branchy_block"))
        "its call cannot be traced on symbolic inputs (TypeError: ...)"
    """
    entry = _UNTRACED.get(id(layer))
    if entry is None or entry[0]() is not layer:
        return None
    return entry[1]


def _set_reason(layer, reason):
    try:
        ref = weakref.ref(layer)
    except TypeError:  # pragma: no cover - layers are weak-referenceable
        return
    _UNTRACED[id(layer)] = (ref, reason)


def _is_keras_class(obj) -> bool:
    return type(obj).__module__.startswith("keras.")


def is_composite(layer) -> bool:
    """True for a layer kprune traces into: a non-Keras `Layer` subclass
    (not a model) that no channel handler serves."""
    return (isinstance(layer, keras.layers.Layer) and not is_model(layer)
            and not _is_keras_class(layer) and find_handler(layer) is None)


def _plain_graph_model(model) -> bool:
    return type(model) in (keras.Model, keras.Sequential) or (
        _is_keras_class(model) and type(model).__name__ in ("Functional", "Sequential"))


def needs_view(model) -> bool:
    """True when `model` (or a nested model) is a Functional subclass or
    holds a composite layer, so that `functional_view` changes it."""
    if not _plain_graph_model(model):
        return True
    for layer in all_layers(model):
        if is_model(layer):
            if not _plain_graph_model(layer):
                return True
        elif is_composite(layer):
            return True
    return False


def functional_view(model):
    """A plain Functional model over `model`'s layers with composite layers
    traced into nested sub-models and Functional subclasses made plain
    Functional models (see the module docstring). `model` itself is
    returned when there is nothing to change.

    Example:
        >>> view = functional_view(backbone)
        >>> [l.name for l in view.layers][:3]
        ['pixel_values', 'input_conv', 'input_batch_norm']
    """
    from kprune.core.handlers.keras_hub import register_keras_hub_handlers
    register_keras_hub_handlers()
    if not needs_view(model):
        return model
    # traced_calls: the view calls the recorded keras-hub layers again
    # (Moonshine's attention with its rotary embedding)
    with _inlined_non_tensor_calls(), traced_calls():
        return _Viewer().model(model)


class _Viewer:
    def __init__(self):
        self._done = {}  # id(op) -> replacement (shared layers stay shared)
        self._used = set()
        # id(sub-model) -> positions of the call's outputs it returns, when
        # the composite also returned constants
        self._tensor_outputs = {}

    def model(self, model):
        fn = functional_of(model)
        inputs = {}
        new_inputs = [self._input(kt, inputs) for kt in functional_inputs(fn)]
        struct = keras.tree.pack_sequence_as(fn._inputs_struct, new_inputs)
        outputs = self._replay(fn, new_inputs)
        return keras.Model(struct, outputs, name=model.name)

    @staticmethod
    def _input(kt, seen, name=None, sparse=None):
        name = name or history_operation(kt).name
        sparse = getattr(kt, "sparse", False) if sparse is None else sparse
        return keras.Input(batch_shape=tuple(kt.shape), dtype=kt.dtype,
                           sparse=sparse, name=name)

    def _replay(self, fn, new_inputs):
        scope = {id(kt): t for kt, t in zip(functional_inputs(fn), new_inputs)}
        by_depth = nodes_by_depth(fn)
        # tensors something reads: a traced composite may return constants
        # (keras-hub DeiT's `ops.empty` placeholders) only where nothing does
        self._used = {id(kt) for nodes in by_depth.values() for n in nodes
                      for kt in n.arguments.keras_tensors}
        self._used |= {id(kt) for kt in keras.tree.flatten(fn._outputs_struct)}
        direct = {id(n.operation) for nodes in by_depth.values() for n in nodes
                  if not is_model(n.operation)}
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                op = node.operation
                if isinstance(op, keras.layers.InputLayer):
                    continue
                if is_model(op) and any(id(l) in direct for l in all_layers(op)):
                    # A nested model sharing a layer with this graph (a
                    # causal LM's logits from its backbone's token
                    # embedding): Keras would load the two uses as two
                    # layers, so the nested model is inlined here.
                    args, _ = node_fill_in(node, scope)
                    inner = functional_of(op)
                    flat = keras.tree.flatten(args[0] if len(args) == 1 else list(args))
                    outs = keras.tree.flatten(self._replay(inner, flat))
                    for kt, t in zip(node.outputs, outs):
                        scope[id(kt)] = t
                    continue
                new_op = self._op(op, node, scope)
                if new_op is not op and not is_model(op):
                    # A traced composite: its sub-model takes the call's
                    # tensors, flat and in order (other arguments are part
                    # of the trace).
                    flat = _unique_tensors(node.arguments.keras_tensors)
                    flat = [scope[id(kt)] for kt in flat]
                    outs = keras.tree.flatten(new_op(flat if len(flat) > 1 else flat[0]))
                    kept = self._tensor_outputs.get(id(new_op))
                    if kept is not None:  # constant outputs nothing reads
                        for kt, t in zip([node.outputs[i] for i in kept], outs):
                            scope[id(kt)] = t
                        continue
                elif _falsely_sparse_scale(op, node) is not None:
                    # Keras 3.15 marks `x * constant` sparse (a constant has
                    # no `sparse` attribute, read as True), and a nested model
                    # then refuses it when the model is rebuilt or loaded:
                    # the same product as a Rescaling layer stays dense.
                    scale = _falsely_sparse_scale(op, node)
                    x = scope[id(node.arguments.keras_tensors[0])]
                    outs = [keras.layers.Rescaling(scale, name=op.name, dtype=x.dtype)(x)]
                else:
                    args, kwargs = node_fill_in(node, scope)
                    outs = keras.tree.flatten(new_op(*args, **kwargs))
                for kt, t in zip(node.outputs, outs):
                    scope[id(kt)] = t
        return keras.tree.map_structure(lambda kt: scope[id(kt)], fn._outputs_struct)

    def _op(self, op, node, scope=None):
        key = id(op)
        if key in self._done:
            return self._done[key]
        new = op
        if is_model(op):
            if needs_view(op):
                new = self.model(op)
                if not _plain_graph_model(op):  # a nested Functional subclass
                    _TRACED[id(new)] = (weakref.ref(new), op, node)
        elif is_composite(op):
            new = self._trace(op, node, scope or {})
        self._done[key] = new
        return new

    def _trace(self, layer, node, outer):
        """The composite's call as a nested Functional model, or the layer
        itself (with the reason recorded) when it cannot be traced. Its
        inputs take the shapes of the replayed tensors in `outer` (a layer
        whose declared output shape was wrong, such as keras-hub Moonshine's
        rotary frequencies, is corrected by `traced_calls`)."""
        own = _own_variables(layer)
        if own:
            _set_reason(layer, f"composite layer '{layer.name}' "
                        f"({type(layer).__name__}) uses its own weights "
                        f"({', '.join(own[:3])}) directly in call: register a "
                        "handler for it (kprune.register_handler)")
            return layer
        scope, inputs = {}, []
        for i, kt in enumerate(node.arguments.keras_tensors):
            if id(kt) in scope:
                continue
            # Keras marks some dense results sparse (Gemma's scaled token
            # embeddings): a traced call gets dense inputs, and the check
            # against the layer's own output catches a layer that differs.
            t = self._input(outer.get(id(kt), kt), scope,
                            name=f"{layer.name}_input_{i}", sparse=False)
            scope[id(kt)] = t
            inputs.append(t)
        args, kwargs = node_fill_in(node, scope)
        used = self._used
        kept = None
        try:
            with keras.name_scope(layer.name), traced_shapes(), traced_calls(), \
                    _inlined_non_tensor_calls():
                outs = call_fn(layer)(*args, **kwargs)
            flat = [t for t in keras.tree.flatten(outs) if t is not None]
            outs = outs if len(flat) == len(keras.tree.flatten(outs)) else (
                flat[0] if len(flat) == 1 else flat)
            if not flat or not any(isinstance(t, keras.KerasTensor) for t in flat):
                raise TypeError("its call returned values that are not tensors")
            if not all(isinstance(t, keras.KerasTensor) for t in flat):
                # constants among the outputs (placeholders such as
                # `ops.empty`): allowed where nothing reads them
                if len(flat) != len(node.outputs):
                    raise TypeError("its call returned values that are not tensors")
                kept = [i for i, t in enumerate(flat) if isinstance(t, keras.KerasTensor)]
                if any(id(node.outputs[i]) in used for i in range(len(flat)) if i not in kept):
                    raise TypeError("its call returns constants (not tensors) that "
                                    "the model reads")
                outs = [flat[i] for i in kept]
                outs = outs[0] if len(outs) == 1 else outs
            sub = keras.Model(inputs if len(inputs) > 1 else inputs[0], outs,
                              name=layer.name)
            sub = self.model(sub) if needs_view(sub) else sub
            problem = _uncalled_weights(layer, sub) or _mismatch(layer, sub, node, kept)
        except Exception as e:  # noqa: BLE001 - any failure means "not traceable"
            problem = (f"its call cannot be traced on symbolic inputs "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
        if problem:
            _set_reason(layer, f"composite layer '{layer.name}' "
                        f"({type(layer).__name__}) is kept whole: {problem}")
            return layer
        _TRACED[id(sub)] = (weakref.ref(sub), layer, node)
        if kept is not None:
            self._tensor_outputs[id(sub)] = kept
        return sub




def _none_free_call(original):
    def call(self, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        except ValueError as e:
            if (not _NON_TENSOR.acting() or "non-tensor" not in str(e)
                    or _is_keras_class(self)):
                raise
        own = self.compute_output_spec
        shape = {}

        def tensors_only(*a, **k):
            out = own(*a, **k)
            flat = keras.tree.flatten(out)
            shape["struct"], shape["flat"] = out, flat
            kept = [t for t in flat if t is not None]
            return kept[0] if len(kept) == 1 else kept

        self.compute_output_spec = tensors_only
        try:
            got = keras.tree.flatten(original(self, *args, **kwargs))
        finally:
            del self.compute_output_spec
        got = iter(got)
        flat = [None if t is None else next(got) for t in shape["flat"]]
        return keras.tree.pack_sequence_as(shape["struct"], flat)
    return call


def _inlined_non_tensor_calls():
    """While a model is viewed: a non-Keras layer whose call returns `None`
    next to its tensors (keras-hub DeiT's encoder block returns `(x, None)`),
    which Keras cannot record as an operation when it is called on symbolic
    tensors, is recorded with its tensor outputs only; its caller still gets
    the `None`s in their places.

    Thread-safe like `shape_ops.traced_shapes`: `Layer.__call__` is wrapped
    while any thread is inside such a block, and the wrapper changes nothing
    for the other threads (their errors are raised as before)."""
    return _NON_TENSOR.active()


def _install_none_free_call():
    original = keras.layers.Layer.__call__
    keras.layers.Layer.__call__ = _none_free_call(original)

    def restore():
        keras.layers.Layer.__call__ = original
    return restore


_NON_TENSOR = ThreadScopedPatch(_install_none_free_call)


def _falsely_sparse_scale(op, node):
    """The scalar of a `dense tensor * scalar constant` op whose output Keras
    marked sparse, else None."""
    if type(op).__name__ != "Multiply" or not _is_keras_class(op):
        return None
    if not getattr(node.outputs[0], "sparse", False):
        return None
    kts = node.arguments.keras_tensors
    args = list(node.arguments.args)
    if len(kts) != 1 or len(args) != 2 or getattr(kts[0], "sparse", False):
        return None
    other = args[1] if args[0] is kts[0] else args[0]
    try:
        value = np.asarray(other)
    except Exception:  # noqa: BLE001 - not a constant
        return None
    if value.shape != () or not np.issubdtype(value.dtype, np.floating):
        return None
    return float(value)


def _unique_tensors(tensors):
    seen, result = set(), []
    for kt in tensors:
        if id(kt) not in seen:
            seen.add(id(kt))
            result.append(kt)
    return result


def _uncalled_weights(layer, sub):
    """A reason when `layer`'s call reads a sub-layer's weights without calling
    it (tied weights, e.g. logits from an embedding matrix), else None."""
    called = {id(v) for inner in all_layers(sub) for v in inner.variables}
    unused = [sl.name for sl in all_layers(layer)
              if sl.variables and not all(id(v) in called for v in sl.variables)]
    if unused:
        return (f"its call reads the weights of layer(s) {unused} without calling them "
                "(tied weights, which must stay tied)")
    return None


def _own_variables(layer):
    inner = {id(v) for sub in all_layers(layer) for v in sub.variables}
    return [v.path for v in layer.variables if id(v) not in inner]


def _sample(kt, rng):
    shape = [2] + [d if d is not None else 3 for d in tuple(kt.shape)[1:]]
    if "int" in str(kt.dtype):
        return np.ones(shape, dtype=str(kt.dtype))
    if "bool" in str(kt.dtype):
        return np.ones(shape, dtype=bool)
    return rng.normal(size=shape).astype(str(kt.dtype))


def _mismatch(layer, sub, node, kept=None) -> Optional[str]:
    """Runs the layer and its traced graph on the same random inputs; a
    reason when they differ (None when equal or when the layer does not run
    on such inputs, e.g. it needs a valid sequence length)."""
    rng = np.random.default_rng(0)
    values = {id(kt): _sample(kt, rng) for kt in node.arguments.keras_tensors}
    try:
        args, kwargs = node_fill_in(node, values)
        want = keras.tree.flatten(layer(*args, **kwargs, training=False)
                                  if _takes_training(layer) else layer(*args, **kwargs))
        want = [w for w in want if w is not None]
        want = want if kept is None else [want[i] for i in kept]
    except Exception:  # noqa: BLE001 - inputs the layer does not accept
        return None
    uniq = [values[id(kt)] for kt in _unique_tensors(node.arguments.keras_tensors)]
    got = keras.tree.flatten(sub(uniq if len(uniq) > 1 else uniq[0], training=False))
    if len(got) != len(want):
        return "its traced graph returns a different number of outputs"
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape or not np.allclose(g, w, rtol=1e-4, atol=1e-5):
            return ("its traced graph does not reproduce its output (it may "
                    "branch in Python on tensor values or keep state)")
    return None


def _takes_training(layer) -> bool:
    import inspect
    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False
