"""How much of a model's complexity each dependency group accounts for.

Complexity-driven pruning (Zawish et al. 2022) picks where to prune by each
layer's share of the network's complexity. In kprune a *dependency group* is
the unit that can lose channels, and removing one of its channels shrinks
every tensor and weight indexed by that channel in all its member layers. So
a group's complexity is the complexity that *depends on its channels*:

* ``'params'`` (PA): for every weight, its size times the fraction of each of
  its channel axes ('in', 'out', 'in*m' in the handler's weight roles) that
  belong to the group.
* ``'flops'`` (FA): for every call, its MACs (as `kprune.profile` counts
  them) times the fraction of the input channels plus the fraction of the
  output channels that belong to the group, for layers whose main weight is
  indexed by both (Conv, Dense); times the fraction of the one channel axis
  for the others (depthwise conv, normalization, Multiply).
* ``'memory'`` (MA): for every call, the float32 bytes of each input and
  output tensor (the layer's activation footprint at batch 1, the
  `LayerProfile.activation_bytes` definition) times the fraction of that
  tensor's channels that belong to the group.

This is the first-order estimate of the complexity removed per removed
fraction of the group (removing a fraction e of a group's channels removes
about e times its complexity); a group's *weight* is its share of the sum
over groups. Parts of the model that no group can shrink (the input, the
classifier's outputs) belong to no group.

Example:
    >>> from kprune.core.complexity_weights import complexity_weights
    >>> weights = complexity_weights(model, "flops")
    >>> sum(weights.values())
    1.0
"""

from typing import Dict, Optional, Sequence

import numpy as np

from kprune.core.dependency import Analysis, analyze
from kprune.core.profile import call_macs

#: Mode names and their aliases (the paper's PA / FA / MA).
MODE_ALIASES = {
    "params": "params", "pa": "params", "parameters": "params",
    "flops": "flops", "fa": "flops", "macs": "flops",
    "memory": "memory", "ma": "memory", "activation_memory": "memory",
}
MODES = ("params", "flops", "memory")


def normalize_mode(mode, argument: str = "mode") -> str:
    """'PA' / 'params' / 'macs' ... -> one of MODES; ValueError otherwise."""
    key = str(mode).lower() if mode is not None else None
    if key not in MODE_ALIASES:
        raise ValueError(
            f"{argument}={mode!r} is not a complexity mode; use 'params' (PA), "
            "'flops' (FA, MACs) or 'memory' (MA, activation bytes)")
    return MODE_ALIASES[key]


def _fractions(analysis: Analysis):
    """tensor id -> {group index: fraction of the tensor's channels in it}."""
    graph = analysis.graph
    producer = {}
    for call in graph.calls:
        for k, tid in enumerate(call.outputs):
            producer[tid] = (call, k)
    result = {}
    for tid in graph.tensors:
        fr = {}
        if tid in producer:
            call, k = producer[tid]
            if k == 0:
                for g in analysis.groups:
                    if call.path not in g.layers:
                        continue
                    try:
                        cmap = g.channel_map(call.path)
                    except ValueError:
                        continue
                    if len(cmap):
                        f = float(np.mean(cmap >= 0))
                        if f > 0:
                            fr[g.index] = f
        result[tid] = fr
    return result


def _internal_fractions(analysis: Analysis, layer):
    """{unit set: {group index: fraction}} of a layer's internal units."""
    out = {}
    for name in analysis.internal_names(layer):
        path = analysis.graph.layer_paths[id(layer)]
        fr = {}
        for g in analysis.groups:
            try:
                cmap = g.channel_map(f"{path}:{name}")
            except ValueError:
                continue
            f = float(np.mean(cmap >= 0)) if len(cmap) else 0.0
            if f > 0:
                fr[g.index] = f
        out[name] = fr
    return out


def _role_fractions(role, call, frac, internal, slots):
    """The group fractions of the axis a weight role names."""
    from kprune.core.handlers.base import parse_role

    base = parse_role(role)[0]
    kind, _, rest = base.partition(":")
    if base in ("in", "in*m"):
        return frac[call.inputs[0]] if call.inputs else {}
    if base in ("out", "in:state"):
        return frac[call.outputs[0]] if call.outputs else {}
    if kind == "unit":
        return internal.get(rest, {})
    if kind in ("in", "out") and rest in slots:
        return frac[call.inputs[slots[rest]]]
    if kind in ("in", "out") and rest.isdigit():
        tids = call.inputs if kind == "in" else call.outputs
        return frac[tids[int(rest)]] if int(rest) < len(tids) else {}
    return {}


def _add(acc, fractions, amount):
    for gi, f in fractions.items():
        acc[gi] += amount * f


def group_complexity(model, mode: str, analysis: Optional[Analysis] = None,
                     ignored_layers: Sequence[str] = ()) -> np.ndarray:
    """The complexity that depends on each group's channels (see module doc),
    in parameters, MACs or float32 activation bytes, indexed like
    ``analysis.groups`` (= `kprune.dependency_groups(model)`).

    Example:
        >>> group_complexity(lenet5(), "params")   # conv1, conv2, fc1, fc2
        array([ 2556., 50416., 58200., 11004.])
    """
    mode = normalize_mode(mode)
    analysis = analysis or analyze(model, ignored_layers)
    graph = analysis.graph
    acc = np.zeros(len(analysis.groups), dtype=np.float64)
    if not analysis.groups:
        return acc
    frac = _fractions(analysis)
    seen = set()
    for call in graph.calls:
        f_in = frac[call.inputs[0]] if call.inputs else {}
        f_out = frac[call.outputs[0]] if call.outputs else {}
        handler = analysis.handlers[id(call.layer)]
        if mode == "memory":
            for tid in call.inputs + call.outputs:
                _add(acc, frac[tid], 4.0 * graph.tensors[tid].num_elements())
            continue
        weights = list(getattr(call.layer, "weights", []) or [])
        n_in = graph.tensors[call.inputs[0]].channels if call.inputs else 0
        n_out = graph.tensors[call.outputs[0]].channels if call.outputs else 0
        roles = handler.weight_roles(call.layer, n_in, n_out) if weights else {}
        internal = _internal_fractions(analysis, call.layer) if weights else {}
        slots = handler.input_slots(call) if internal and hasattr(
            handler, "input_slots") else {}
        if mode == "params":
            if id(call.layer) in seen:
                continue
            seen.add(id(call.layer))
            for i, w in enumerate(weights):
                size = float(np.prod(w.shape)) if len(w.shape) else 1.0
                for role in roles.get(i, roles.get(w.name, ())) or ():
                    if role is not None:
                        _add(acc, _role_fractions(role, call, frac, internal, slots), size)
            continue
        macs = call_macs(call, graph)
        if not macs:
            continue
        if internal:  # attention: MACs follow every unit set and input it uses
            seen_roles = set()
            for i, w in enumerate(weights):
                for role in roles.get(i, roles.get(w.name, ())) or ():
                    if role is not None:
                        seen_roles.add(role.partition("@")[0])
            share = macs / max(len(seen_roles), 1)
            for role in sorted(seen_roles):
                _add(acc, _role_fractions(role, call, frac, internal, slots), share)
            continue
        main_i = max(range(len(weights)), key=lambda i: int(np.prod(weights[i].shape)),
                     default=None)
        main_roles = set() if main_i is None else {
            (r or "").partition("@")[0]
            for r in roles.get(main_i, roles.get(weights[main_i].name, ())) or ()}
        uses_in = bool(main_roles & {"in", "in*m"})
        uses_out = bool(main_roles & {"out", "in:state"})
        if uses_in:
            _add(acc, f_in, macs)
        if uses_out or not uses_in:
            _add(acc, f_out, macs)
    return acc


def complexity_weights(model, mode: str, analysis: Optional[Analysis] = None,
                       ignored_layers: Sequence[str] = ()) -> Dict[int, float]:
    """Each group's share of the model's prunable complexity.

    Args:
        model: a Functional or Sequential Keras model.
        mode: 'params' (PA), 'flops' (FA: MACs) or 'memory' (MA: activation
            bytes at batch 1).
        analysis: a `kprune.analyze(model)` to reuse.
        ignored_layers: layers whose channels must not be pruned (when no
            analysis is given).

    Returns:
        {group index in `kprune.dependency_groups(model)` order: weight}, the
        weights summing to 1 (uniform when no group carries any of this
        complexity; empty when the model has no prunable group).

    Example:
        >>> w = complexity_weights(kprune.zoo.lenet5(), "memory")
        >>> max(w, key=w.get)    # conv1's group: the largest activations
        0
    """
    analysis = analysis or analyze(model, ignored_layers)
    amounts = group_complexity(model, mode, analysis)
    if not len(amounts):
        return {}
    total = float(amounts.sum())
    if total <= 0:
        return {i: 1.0 / len(amounts) for i in range(len(amounts))}
    return {i: float(a / total) for i, a in enumerate(amounts)}
