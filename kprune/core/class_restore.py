"""Keep a composite layer's or a Functional subclass's class after surgery,
where its constructor arguments can express the pruned widths.

Surgery rewrites the plain graph behind a model (`kprune.core.composite`),
so its result is a plain Functional model in which every traced composite
layer is a nested sub-model. This module then gives the classes back:

* the whole model, when it was a Functional subclass (a keras-hub
  `Backbone`, your own `class Net(keras.Model)` calling
  `super().__init__(inputs, outputs)`);
* otherwise each traced composite layer and each nested Functional
  subclass of the top-level graph (your `ConvBNReLU(filters)`, keras-hub's
  `TransformerEncoder`, a Backbone inside your own model).

The mechanism is general, with no per-class code. The weights' shapes before
and after surgery give a map {old width: new widths}. A candidate config is
the object's own `get_config()` with every integer equal to an old width
(at any depth: per-stage lists, nested lists) replaced by its new width.
The class is built from that config and accepted only when every weight has
the pruned shape and the inputs / outputs keep theirs; a few more candidates
are tried when a width is ambiguous (a width that stayed in one place and
changed in another, an argument that coincides with a width). The accepted
object gets the pruned weights and must compute the inlined graph's outputs
on a random probe input. Otherwise the inlined graph stays and the reason is
recorded: `inlined_reasons(pruned)` gives {name: reason}, and it is logged
at INFO level on the ``kprune`` logger.

Widths are expressible when the pruning is uniform where the class shares
an argument: an FFN `intermediate_dim` cut by the same number of units in
every layer, a stage's filters cut alike in every block of the stage.

Example:
    >>> pruned = kprune.remove_channels(bert, removal)  # every FFN 32 -> 24
    >>> type(pruned).__name__, pruned.intermediate_dim
    ('BertBackbone', 24)
    >>> inlined_reasons(kprune.remove_channels(llama, removal))
    {'llama_backbone': 'no constructor argument holds width 8 ...'}
"""

import copy
import logging
import weakref
from typing import Dict

import keras
import numpy as np

from kprune.compat.keras_private import (functional_inputs, functional_outputs,
                                       history_operation, inbound_node_count,
                                       model_classes, node_fill_in, nodes_by_depth)
from kprune.core.composite import (_plain_graph_model, _takes_training, _unique_tensors,
                                    traced_composite)
from kprune.core.graph import functional_of, is_model

_LOG = logging.getLogger("kprune")
_REASONS: Dict[int, tuple] = {}  # id(pruned model) -> (weakref, {name: reason})
#: candidate configs tried per object beyond the first
MAX_CANDIDATES = 4


def inlined_reasons(model) -> Dict[str, str]:
    """{name: reason} for each Functional subclass or composite layer that
    `remove_channels` returned inlined as plain layers in `model`, because
    its class could not express the pruned widths; {} when every class was
    kept (or `model` does not come from surgery).

    Example:
        >>> kprune.core.inlined_reasons(pruned)
        {'block': "width 16 became 12 and 10: argument 'filters' ..."}
    """
    entry = _REASONS.get(id(model))
    if entry is None or entry[0]() is not model:
        return {}
    return dict(entry[1])


def _record(model, reasons):
    for name, why in reasons.items():
        _LOG.info("kprune surgery: '%s' is returned inlined as plain layers: %s", name, why)
    for key in [k for k, (ref, _) in _REASONS.items() if ref() is None]:
        del _REASONS[key]  # models gone
    try:
        _REASONS[id(model)] = (weakref.ref(model), dict(reasons))
    except TypeError:  # pragma: no cover - models are weak-referenceable
        pass


def restore_classes(original, analysis, pruned):
    """`pruned` (the plain graph surgery rebuilt from `analysis`) with the
    classes of `original` given back where their arguments express the new
    widths (see the module docstring); the reasons for the rest are
    recorded for `inlined_reasons`."""
    if analysis.model is original:  # a plain model: nothing was inlined
        return pruned
    reasons = {}
    if not _plain_graph_model(original):
        restored, why = _Restorer(analysis, pruned).functional(original)
        if restored is not None:
            _record(restored, {})
            return restored
        reasons[original.name] = why
    try:
        result, more = _Restorer(analysis, pruned).composites()
    except Exception as e:  # noqa: BLE001 - never fail surgery for a class
        result, more = pruned, {pruned.name: "its composite layers could not be put "
                                f"back into the graph ({_failure(e)})"}
    reasons.update(more)
    _record(result, reasons)
    return result


class _Restorer:
    def __init__(self, analysis, pruned):
        self.analysis = analysis
        self.pruned = pruned
        self.owner = {}  # id(variable) -> (leaf layer, index in its weights)
        for layer in analysis.graph.leaf_layers():
            for i, w in enumerate(getattr(layer, "weights", [])):
                self.owner.setdefault(id(w), (layer, i))

    # -- what the pruned weights are ----------------------------------------
    def _targets(self, obj):
        """The pruned counterparts of `obj.weights`, in order."""
        result = []
        for w in obj.weights:
            hit = self.owner.get(id(w))
            if hit is None:
                raise _Refused(f"its weight '{w.path}' is not held by a traced layer")
            layer, i = hit
            new_layer = self.pruned
            for part in self.analysis.graph.layer_paths[id(layer)].split("/"):
                new_layer = new_layer.get_layer(part)
            result.append(new_layer.weights[i])
        return result

    # -- a Functional subclass ---------------------------------------------
    def functional(self, original):
        def make():
            targets = self._targets(original)
            old = [tuple(w.shape) for w in original.weights]
            new = [tuple(w.shape) for w in targets]
            ins = [tuple(t.shape) for t in keras.tree.flatten(self.pruned.inputs)]
            outs = [tuple(t.shape) for t in keras.tree.flatten(self.pruned.outputs)]
            scope = model_classes(original)

            def build(config):
                with keras.saving.custom_object_scope(scope):
                    inst = type(original).from_config(config)
                got_in = [tuple(t.shape) for t in keras.tree.flatten(inst.inputs)]
                got_out = [tuple(t.shape) for t in keras.tree.flatten(inst.outputs)]
                return inst, _shape_distance(got_in, ins) + _shape_distance(got_out, outs)

            stay = {int(d) for t in ins for d in t[1:] if d is not None}
            inst = _search(original, old, new, build, stay)
            inst.set_weights([np.asarray(w) for w in targets])
            x = [_sample(t) for t in keras.tree.flatten(self.pruned.inputs)]
            x = keras.tree.pack_sequence_as(self.pruned.input, x)
            _same_outputs(inst(x, training=False), self.pruned(x, training=False))
            return inst

        return _attempt(make)

    # -- composite layers of the top-level graph ----------------------------
    def composites(self):
        view = self.analysis.model
        fn = functional_of(self.pruned)
        view_ops = {op.name: op for op in _operations(functional_of(view))}
        if not any(is_model(op) and traced_composite(view_ops.get(op.name)) is not None
                   for op in _operations(fn)):
            return self.pruned, {}
        reasons, kept = {}, 0
        inputs = [keras.Input(batch_shape=tuple(kt.shape), dtype=kt.dtype,
                              name=history_operation(kt).name)
                  for kt in functional_inputs(fn)]
        scope = {id(kt): t for kt, t in zip(functional_inputs(fn), inputs)}
        for depth in sorted(nodes_by_depth(fn), reverse=True):
            for node in nodes_by_depth(fn)[depth]:
                op = node.operation
                if isinstance(op, keras.layers.InputLayer):
                    continue
                entry = traced_composite(view_ops.get(op.name)) if is_model(op) else None
                outs = None
                if entry is not None:
                    layer, orig_node = entry
                    flat = [scope[id(kt)] for kt in node.arguments.keras_tensors]
                    inst, why = self.composite(layer, orig_node, op)
                    if inst is None:
                        reasons[op.name] = why
                    else:
                        uniq = _unique_tensors(orig_node.arguments.keras_tensors)
                        args, kwargs = node_fill_in(
                            orig_node, {id(k): t for k, t in zip(uniq, flat)})
                        outs = keras.tree.flatten(inst(*args, **kwargs))
                        kept += 1
                if outs is None:
                    args, kwargs = node_fill_in(node, scope)
                    outs = keras.tree.flatten(op(*args, **kwargs))
                for kt, t in zip(node.outputs, outs):
                    scope[id(kt)] = t
        if not kept:
            return self.pruned, reasons
        outputs = [scope[id(kt)] for kt in functional_outputs(fn)]
        outputs = keras.tree.pack_sequence_as(self.pruned.output, outputs)
        struct = keras.tree.pack_sequence_as(self.pruned.input, inputs)
        return keras.Model(struct, outputs, name=self.pruned.name), reasons

    def composite(self, layer, orig_node, sub):
        """An instance of `layer`'s class with the pruned widths and weights,
        checked against the inlined sub-model `sub`, or (None, reason)."""
        def make():
            if inbound_node_count(sub) > 1:
                raise _Refused("it is called at several places")
            targets = self._targets(layer)
            old = [tuple(w.shape) for w in layer.weights]
            new = [tuple(w.shape) for w in targets]
            sub_ins = keras.tree.flatten(sub.inputs)
            want_out = [tuple(t.shape) for t in keras.tree.flatten(sub.outputs)]
            scope = model_classes(layer) if hasattr(layer, "_flatten_layers") else {}
            uniq = _unique_tensors(orig_node.arguments.keras_tensors)

            def call(inst, values):
                args, kwargs = node_fill_in(
                    orig_node, {id(k): v for k, v in zip(uniq, values)})
                if _takes_training(inst) and not isinstance(values[0], keras.KerasTensor):
                    kwargs = {**kwargs, "training": False}
                return inst(*args, **kwargs)

            def build(config):
                with keras.saving.custom_object_scope(scope):
                    inst = type(layer).from_config(config)
                symbolic = [keras.KerasTensor(t.shape, dtype=t.dtype) for t in sub_ins]
                got = [tuple(t.shape) for t in keras.tree.flatten(call(inst, symbolic))]
                return inst, _shape_distance(got, want_out)

            inst = _search(layer, old, new, build)
            inst.set_weights([np.asarray(w) for w in targets])
            x = [_sample(t) for t in sub_ins]
            _same_outputs(call(inst, x), sub(x if len(x) > 1 else x[0], training=False))
            return inst

        return _attempt(make)


class _Refused(Exception):
    """A user-facing reason why a class is not kept."""


def _attempt(make):
    """``(make(), None)``, or ``(None, the reason)`` when the class refused
    (`_Refused`) or failed to rebuild."""
    try:
        return make(), None
    except _Refused as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - a class that does not rebuild
        return None, _failure(e)


def _failure(e):
    text = str(e).splitlines()[0][:200] if str(e) else ""
    return f"its class could not be rebuilt at the pruned widths ({type(e).__name__}: {text})"


def _operations(fn):
    """The operations of a functional graph, in order."""
    return [n.operation for depth in sorted(nodes_by_depth(fn), reverse=True)
            for n in nodes_by_depth(fn)[depth]]


def _sample(kt):
    """A probe for input `kt`: unknown lengths 8 (past a short attention
    window), masks all ones, other integers (token ids) 0 or 1 at random
    (identical tokens would hide what attention masks do), floats normal."""
    rng = np.random.default_rng(0)
    shape = [2] + [d if d is not None else 8 for d in tuple(kt.shape)[1:]]
    if "int" in str(kt.dtype):
        if "mask" in history_operation(kt).name:
            return np.ones(shape, dtype=str(kt.dtype))
        return rng.integers(0, 2, size=shape).astype(str(kt.dtype))
    if "bool" in str(kt.dtype):
        return np.ones(shape, dtype=bool)
    return rng.normal(size=shape).astype(str(kt.dtype))


def _same_outputs(got, want):
    got, want = keras.tree.flatten(got), keras.tree.flatten(want)
    if len(got) != len(want):
        raise _Refused("its class rebuilt at the pruned widths returns a different "
                       "number of outputs than the pruned graph")
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        scale = max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
        if g.shape != w.shape or (g.size and float(np.max(np.abs(g - w))) > 1e-4 * scale):
            raise _Refused("its class rebuilt at the pruned widths (with the pruned "
                           "weights) does not compute what the pruned graph computes")


# -- the search over candidate configs ---------------------------------------
def _shape_distance(got, want):
    """How many dimensions of the shapes `got` differ from `want`'s."""
    if len(got) != len(want) or any(len(a) != len(b) for a, b in zip(got, want)):
        return 1000
    return sum(x != y for a, b in zip(got, want) for x, y in zip(a, b))


def _width_map(old, new):
    """{old width: set of new widths} over every axis of every weight, and
    the widths that stayed somewhere."""
    changed, stayed = {}, set()
    for a, b in zip(old, new):
        if len(a) != len(b):
            raise _Refused("a weight changed rank in surgery")
        for x, y in zip(a, b):
            if x != y:
                changed.setdefault(int(x), set()).add(int(y))
            else:
                stayed.add(int(x))
    return changed, stayed


def _positions(config, widths, path=()):
    """Paths of the integers in `config` equal to one of `widths`."""
    result = []
    if isinstance(config, dict):
        for key, value in config.items():
            if isinstance(key, str) and ("seed" in key or key in ("name", "dtype")):
                continue
            result += _positions(value, widths, path + (key,))
    elif isinstance(config, (list, tuple)):
        for i, value in enumerate(config):
            result += _positions(value, widths, path + (i,))
    elif isinstance(config, (int, np.integer)) and not isinstance(config, bool):
        if int(config) in widths:
            result.append(path)
    return result


def _get(config, path):
    for key in path:
        config = config[key]
    return config


def _apply(config, assignment):
    config = copy.deepcopy(config)
    for path, value in assignment.items():
        parent = _get(config, path[:-1])
        if isinstance(parent, tuple):
            parent = list(parent)
            parent[path[-1]] = value
            _set_tuple(config, path[:-1], tuple(parent))
        else:
            parent[path[-1]] = value
    return config


def _set_tuple(config, path, value):
    parent = _get(config, path[:-1])
    if isinstance(parent, tuple):
        parent = list(parent)
        parent[path[-1]] = value
        _set_tuple(config, path[:-1], tuple(parent))
    else:
        parent[path[-1]] = value


def _describe(path):
    text = str(path[0])
    for key in path[1:]:
        text += f"[{key!r}]" if not isinstance(key, int) else f"[{key}]"
    return text


def _search(obj, old, new, build, keep_widths=()):
    """The instance built from the first candidate config whose weights have
    the pruned shapes `new` (`build(config) -> (instance, extra mismatches)`);
    raises `_Refused` with the reason otherwise."""
    try:
        config = obj.get_config()
    except Exception as e:  # noqa: BLE001
        raise _Refused(f"its get_config() fails ({type(e).__name__}: {e})") from e
    # Built from its own config on the pruned inputs first: widths a layer
    # infers from its inputs at build time are then already right, and the
    # rest must come from its arguments.
    try:
        base, extra = build(config)
        base_shapes = [tuple(w.shape) for w in base.weights]
    except Exception:  # noqa: BLE001 - e.g. an input width the config fixes
        base, extra, base_shapes = None, 1, old
    if base is not None and len(base_shapes) == len(new):
        old = base_shapes
        if base_shapes == [tuple(s) for s in new] and not extra:
            return base
    changed, stayed = _width_map(old, new)
    stayed |= set(keep_widths)
    where = _positions(config, set(changed))
    if not where:
        summary = ", ".join(f"{w} -> {'/'.join(map(str, sorted(t)))}"
                            for w, t in sorted(changed.items()))
        raise _Refused(f"no constructor argument holds a pruned width ({summary}), "
                       "so its class cannot express the new widths")
    for width, targets in sorted(changed.items()):
        held = [p for p in where if int(_get(config, p)) == width]
        if held and len(targets) > len(held):
            raise _Refused(
                f"width {width} was pruned to {len(targets)} different widths "
                f"({', '.join(map(str, sorted(targets)))}) but only "
                f"{len(held)} argument(s) hold it "
                f"({', '.join(_describe(p) for p in held[:4])}): prune uniformly "
                "across the layers that share an argument to keep the class")
    options = {p: [int(_get(config, p))] + sorted(changed[int(_get(config, p))])
               for p in where}
    start = {p: o[1] for p, o in options.items() if len(o) == 2}
    # Only ambiguous arguments are searched: a width that also stayed
    # somewhere (an input size, an unpruned layer), one pruned to several,
    # or one that several arguments hold (Gemma's num_key_value_heads and
    # num_layers both 2, only the heads pruned).
    holders = {}
    for p in where:
        holders[int(_get(config, p))] = holders.get(int(_get(config, p)), 0) + 1
    options = {p: o for p, o in options.items()
               if len(o) > 2 or o[0] in stayed or holders[o[0]] > 1}

    errors = []

    def score(assignment):
        try:
            inst, extra = build(_apply(config, assignment))
        except Exception as e:  # noqa: BLE001 - a config the class refuses
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
            return None, float("inf")
        got = [tuple(w.shape) for w in inst.weights]
        if len(got) != len(new):
            return inst, float("inf")
        return inst, _shape_distance(got, new) + extra

    inst, best = score(start)
    tries = 0
    current = dict(start)
    while best and tries < MAX_CANDIDATES:
        improved = False
        for p, opts in options.items():
            for value in opts:
                if current.get(p, opts[0]) == value or tries >= MAX_CANDIDATES:
                    continue
                trial = dict(current)
                trial[p] = value
                tries += 1
                cand, s = score(trial)
                if s < best:
                    inst, best, current, improved = cand, s, trial, True
                    break
            if not best:
                break
        if not improved:
            break
    if best:
        loose = [w for w in sorted(changed)
                 if not any(int(_get(config, p)) == w for p in where)]
        summary = ", ".join(f"{w} -> {'/'.join(map(str, sorted(changed[w])))}"
                            for w in sorted(changed))
        detail = (f"; width(s) {', '.join(map(str, loose))} held by no argument"
                  if loose else "")
        if errors:
            detail += f"; the class refused the candidate config ({errors[0]})"
        raise _Refused(
            f"no config built from its arguments gives the pruned weight shapes "
            f"(widths {summary}; arguments tried: "
            f"{', '.join(sorted({_describe(p) for p in where})[:6])}{detail})")
    return inst
