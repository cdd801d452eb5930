"""Channel dependency analysis.

Every channel of every tensor is labelled with a *component* id. A layer that
creates channels (Conv, Dense) gives its outputs fresh components; channel-
wise layers pass their input's labels through; an element-wise merge (Add,
Multiply) unites the labels of its operands, channel by channel; a Concatenate
lays its inputs' labels side by side; Flatten repeats them per position.
Components that end up united must be removed together. A *dependency group*
is the set of layers whose channels share components; each distinct component
is one removable channel of the group.

Example:
    >>> analysis = analyze(model)
    >>> for g in analysis.groups:
    ...     print(g)
"""

import dataclasses
from typing import Dict, List, Sequence

import numpy as np

from kprune.core import handlers as _handlers  # noqa: F401  (registers handlers)
from kprune.core.composite import functional_view, untraced_reason
from kprune.core.graph import Graph
from kprune.core.handlers.base import find_handler


class _Components:
    """Channel components: ids are handed out in blocks; couplings are
    recorded as edges and resolved at the end, all at once, with vectorized
    label propagation (much faster than a Python union-find on large nets)."""

    def __init__(self):
        self.size = 0
        self._a: List[np.ndarray] = []
        self._b: List[np.ndarray] = []

    def make(self, n: int) -> np.ndarray:
        start = self.size
        self.size += n
        return np.arange(start, start + n, dtype=np.int64)

    def link(self, a, b) -> None:
        self._a.append(np.asarray(a, dtype=np.int64).reshape(-1))
        self._b.append(np.asarray(b, dtype=np.int64).reshape(-1))

    def labels(self) -> np.ndarray:
        """label[c] = the smallest component id connected to c."""
        n = self.size
        if not self._a:
            return np.arange(n, dtype=np.int64)
        return connected_labels(n, np.concatenate(self._a), np.concatenate(self._b))


def connected_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of n nodes and edges (a[i], b[i]): each node is
    labelled with the smallest node id of its component."""
    label = np.arange(n, dtype=np.int64)
    while True:
        la, lb = label[a], label[b]
        m = np.minimum(la, lb)
        new = label.copy()
        for idx in (a, b, la, lb):
            np.minimum.at(new, idx, m)
        while True:  # pointer jumping
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, label):
            return label
        label = new


@dataclasses.dataclass
class ScorePoint:
    """A tensor on which a group's channels are post-activation.

    `path` names the leaf layer call that produced it (`output_index` of call
    `call_index`); `units[i]` is the group unit of tensor channel i, or -1.
    """

    call_index: int
    output_index: int
    path: str
    units: np.ndarray
    tensor: object = None  # the KerasTensor, for a recording view


class Group:
    """Channels that must be removed together.

    Attributes:
        layers: names (paths in nested models) of member layers, producers
            first.
        producers: the layers that create the group's channels.
        channels: number of removable channel units of the group.
        exact: False when removing channels changes a statistic computed over
            channels (LayerNormalization over channels).
        frozen: None for a prunable group; for a group listed by
            `dependency_groups(model, include_frozen=True)` whose channels
            cannot be removed, why (the first reason found).
    """

    frozen = None

    def __init__(self, index, producers, members, roots, maps, inexact, score_points):
        self.index = index
        self.producers: List[str] = producers
        self.layers: List[str] = producers + [m for m in members if m not in producers]
        self._roots = roots  # component roots, unit order
        self._maps: Dict[str, np.ndarray] = maps  # layer -> unit per out channel
        self.exact: bool = not inexact
        self.inexact_reasons = sorted(inexact)
        self.score_points: List[ScorePoint] = score_points

    @property
    def channels(self) -> int:
        return len(self._roots)

    @property
    def name(self) -> str:
        return self.producers[0] if self.producers else self.layers[0]

    def channel_map(self, layer: str) -> np.ndarray:
        """For each output channel of `layer`, its unit in this group (or -1)."""
        if layer not in self._maps:
            raise ValueError(
                f"layer '{layer}' has no output channels in group "
                f"'{self.name}'; its members are {self.layers}")
        return self._maps[layer]

    def to_layer_indices(self, units: Sequence[int]) -> Dict[str, List[int]]:
        """Units of this group -> {producer: output-channel indices}, the
        argument `remove_channels` takes."""
        units = np.asarray(list(units), dtype=np.int64)
        if units.size and (units.min() < 0 or units.max() >= self.channels):
            raise ValueError(
                f"unit indices must be in [0, {self.channels}) for group "
                f"'{self.name}', got {units.tolist()}")
        for producer in self.producers:
            cmap = self._maps[producer]
            idx = np.nonzero(np.isin(cmap, units))[0]
            if np.isin(units, cmap).all():
                return {producer: idx.tolist()}
        result = {}
        for producer in self.producers:
            idx = np.nonzero(np.isin(self._maps[producer], units))[0]
            if idx.size:
                result[producer] = idx.tolist()
        return result

    def __repr__(self):
        shown = self.layers if len(self.layers) <= 6 else (
            self.layers[:5] + [f"... {len(self.layers) - 5} more"])
        exact = "" if self.exact else ", inexact (normalized over channels)"
        frozen = f", frozen: {self.frozen}" if self.frozen else ""
        return (f"Group({self.name!r}, channels={self.channels}, "
                f"layers={shown}{exact}{frozen})")


class Analysis:
    """The result of `analyze`: channel layouts of every tensor, the frozen
    components and why, and the prunable dependency groups."""

    def __init__(self, model, ignored_layers: Sequence[str] = (),
                 gqa_units: str = "key_value_heads"):
        if gqa_units not in GQA_UNITS:
            raise ValueError(f"gqa_units={gqa_units!r}: use one of {GQA_UNITS}")
        #: grouped-query attention's prunable units, read by the handlers
        #: that repeat or regroup heads (see `analyze`)
        self.gqa_units = gqa_units
        # Composite layers and Functional subclasses are analysed (and
        # rebuilt) as the plain graph behind them.
        self.source = model
        self.model = functional_view(model)
        self.graph = Graph.from_model(self.model)
        self.uf = _Components()
        self.layouts: Dict[int, np.ndarray] = {}
        self._layer_channels: Dict[tuple, np.ndarray] = {}
        self._fixed: Dict[int, str] = {}
        self._inexact: Dict[int, str] = {}
        self._internal: Dict[int, List[str]] = {}
        # tid -> {negative axis: components}: units along an axis other than
        # the channel axis (attention heads in a (batch, seq, heads, dim)
        # tensor), set by handlers that make or follow them.
        self.axis_layouts: Dict[int, Dict[int, np.ndarray]] = {}
        self.handlers = {}
        self._run(ignored_layers)

    # -- the context handlers see --------------------------------------------
    def tensor(self, tid):
        return self.graph.tensors[tid]

    def layout(self, tid) -> np.ndarray:
        return self.layouts[tid]

    def input_layout(self, call, index: int = 0) -> np.ndarray:
        return self.layouts[call.inputs[index]]

    def new_channels(self, call, n: int, output_index: int = 0) -> np.ndarray:
        """Fresh components for a layer's output (shared layers reuse them)."""
        key = (id(call.layer), output_index)
        if key not in self._layer_channels:
            self._layer_channels[key] = self.uf.make(int(n))
        return self._layer_channels[key]

    def internal_channels(self, call, name: str, n: int) -> np.ndarray:
        """Fresh components for a set of units inside a layer that no tensor
        of the graph carries (attention heads, head dimensions, the units of
        each direction of a bidirectional RNN). They form their own groups,
        named '<layer path>:<name>' (the `remove_channels` key for them);
        weight roles 'unit:<name>' index them."""
        key = (id(call.layer), str(name))
        if key not in self._layer_channels:
            self._layer_channels[key] = self.uf.make(int(n))
            self._internal.setdefault(id(call.layer), []).append(str(name))
        return self._layer_channels[key]

    def internal_names(self, layer) -> List[str]:
        """The internal unit sets of `layer` (see `internal_channels`)."""
        return list(self._internal.get(id(layer), ()))

    def internal_layout(self, layer, name: str) -> np.ndarray:
        return self._layer_channels[(id(layer), name)]

    def axes_of(self, tid) -> Dict[int, np.ndarray]:
        """{negative axis: components} of tensor `tid`'s units along axes
        other than its channel axis (empty for most tensors)."""
        return self.axis_layouts.get(tid, {})

    def set_axis_layout(self, tid, axis: int, layout) -> None:
        """Tensor `tid` carries units `layout` along axis `axis` (negative,
        counted from the end, not -1). Only handlers with `follows_axes`
        see them; any other consumer freezes them."""
        axis = int(axis)
        if axis >= -1:
            raise ValueError(f"axis layouts are for axes before the channel axis, got {axis}")
        self.axis_layouts.setdefault(tid, {})[axis] = np.asarray(layout, dtype=np.int64)

    def union(self, a: int, b: int) -> None:
        """Components `a` and `b` must be removed together."""
        self.uf.link([a], [b])

    def couple(self, a: np.ndarray, b: np.ndarray) -> None:
        """Channel i of `a` and of `b` must be removed together."""
        if len(a) != len(b):
            raise ValueError(f"cannot couple layouts of {len(a)} and {len(b)} channels")
        self.uf.link(a, b)

    def fix(self, layout: np.ndarray, reason: str) -> None:
        """These channels must not be removed."""
        for c in np.asarray(layout).tolist():
            self._fixed.setdefault(c, reason)

    def mark_inexact(self, layout: np.ndarray, reason: str) -> None:
        for c in np.asarray(layout).tolist():
            self._inexact.setdefault(c, reason)

    # -- analysis --------------------------------------------------------------
    def _run(self, ignored_layers):
        graph = self.graph
        for tid in graph.inputs:
            comps = self.uf.make(graph.tensors[tid].channels)
            self.layouts[tid] = comps
            self.fix(comps, "model input")
        ignored = set()
        for name in ignored_layers:
            layer = graph.find_layer(name)
            ignored.add(id(layer))
        first_inputs: Dict[int, List[np.ndarray]] = {}
        tied = _tied_layers(graph)
        for call in graph.calls:
            handler = find_handler(call.layer)
            if handler is None:
                handler = _BOUNDARY
            self.handlers[id(call.layer)] = handler
            outs = handler.propagate(call, self)
            if id(call.layer) in tied:
                self._freeze_tied(call, outs, tied[id(call.layer)])
            mixing = getattr(handler, "mixing_activation", None)
            mixing = mixing(call.layer) if mixing is not None else None
            if mixing is not None:
                outs = self._freeze_mixing_outputs(call, outs, mixing)
            if len(outs) != len(call.outputs):
                raise RuntimeError(
                    f"{handler.describe()} returned {len(outs)} layouts for "
                    f"'{call.path}', which has {len(call.outputs)} outputs")
            for tid, layout in zip(call.outputs, outs):
                expected = graph.tensors[tid].channels
                if len(layout) != expected:
                    raise RuntimeError(
                        f"{handler.describe()} gave {len(layout)} channels for "
                        f"'{call.path}', whose output has {expected}")
                self.layouts[tid] = np.asarray(layout, dtype=np.int64)
            if not getattr(handler, "follows_axes", False):
                for tid in call.inputs:
                    for axis, layout in self.axes_of(tid).items():
                        self.fix(layout, f"'{call.path}' ({call.class_name}) does not "
                                 f"follow the units along axis {axis} of its input "
                                 "(attention heads)")
            # A layer called at several places sees one set of weights: the
            # channels entering it must agree at every call.
            ins = [self.layouts[t] for t in call.inputs]
            prev = first_inputs.setdefault(id(call.layer), ins)
            if prev is not ins:
                for a, b in zip(prev, ins):
                    if len(a) == len(b):
                        self.couple(a, b)
            if id(call.layer) in ignored:
                for tid in call.outputs:
                    self.fix(self.layouts[tid], f"'{call.path}' is in ignored_layers")
                for name in self.internal_names(call.layer):
                    self.fix(self.internal_layout(call.layer, name),
                             f"'{call.path}' is in ignored_layers")
        # A nested model called at several places has one InputLayer per
        # input: what each call feeds it must keep the same channels, even
        # when no leaf layer ties them (an input passed straight through).
        for calls in graph.model_calls.values():
            for args in calls[1:]:
                for a, b in zip(calls[0], args):
                    self.couple(self.layouts[a], self.layouts[b])
        for tid in graph.outputs:
            self.fix(self.layouts[tid], "model output")
            for layout in self.axes_of(tid).values():
                self.fix(layout, "model output")
        self._finalize()

    def _freeze_tied(self, call, outs, why):
        """A layer whose weights another layer also uses (tied input /
        output embeddings): neither may be sliced alone."""
        reason = (f"'{call.path}' ({call.class_name}) shares its weight "
                  f"{why} (tied weights); kprune does not slice a weight two "
                  "layers use")
        for layout in list(outs) + [self.layouts[t] for t in call.inputs]:
            self.fix(layout, reason)
        for name in self.internal_names(call.layer):
            self.fix(self.internal_layout(call.layer, name), reason)

    def _freeze_mixing_outputs(self, call, outs, activation):
        """A layer whose activation mixes channels: its output channels are
        frozen (fresh frozen channels where the activation changes the
        width, as glu does)."""
        reason = (f"'{call.path}' ({call.class_name}) applies activation "
                  f"'{activation}', which mixes channels")
        result = []
        for k, (tid, layout) in enumerate(zip(call.outputs, outs)):
            self.fix(layout, reason)
            width = self.graph.tensors[tid].channels
            if len(layout) != width:
                layout = self.uf.make(width)
                self.fix(layout, reason)
            result.append(layout)
        return result

    def _finalize(self):
        roots = self.uf.labels()
        self.roots = roots
        fixed: Dict[int, str] = {}
        for c, reason in self._fixed.items():
            fixed.setdefault(int(roots[c]), reason)
        self.fixed = fixed
        self.fixed_mask = np.zeros(len(roots), dtype=bool)
        self.fixed_mask[list(fixed)] = True
        self.inexact = {}
        for c, reason in self._inexact.items():
            self.inexact.setdefault(int(roots[c]), reason)
        self.groups = self._build_groups()

    def root_layout(self, tid) -> np.ndarray:
        return self.roots[self.layouts[tid]]

    def _build_groups(self) -> List[Group]:
        graph, roots, n = self.graph, self.roots, len(self.roots)
        # Layer level: all components one producer creates form one group.
        produced = np.zeros(n, dtype=bool)
        a, b = [], []
        for comps in self._layer_channels.values():
            if len(comps):
                r = roots[comps]
                produced[r] = True
                a.append(np.full(len(r), r[0]))
                b.append(r)
        if a:
            group_label = connected_labels(n, np.concatenate(a), np.concatenate(b))
        else:
            group_label = np.arange(n, dtype=np.int64)
        group_of_comp = np.where(produced[roots], group_label[roots], -1)

        # Units in order of first appearance among producers, in call order.
        producers: Dict[int, List[str]] = {}
        unit_roots: Dict[int, List[int]] = {}
        seen = np.zeros(n, dtype=bool)
        internal_paths = {}
        for call in graph.calls:
            keys = list(range(len(call.outputs))) + self.internal_names(call.layer)
            for k in keys:
                comps = self._layer_channels.get((id(call.layer), k))
                if comps is None or not len(comps):
                    continue
                r = roots[comps]
                g = int(group_label[r[0]])
                plist = producers.setdefault(g, [])
                pname = call.path if isinstance(k, int) else f"{call.path}:{k}"
                if not isinstance(k, int):
                    internal_paths[pname] = (call.path, comps)
                if pname not in plist:
                    plist.append(pname)
                _, first = np.unique(r, return_index=True)
                new = r[np.sort(first)]
                new = new[~seen[new]]
                seen[new] = True
                unit_roots.setdefault(g, []).extend(new.tolist())

        members: Dict[int, List[str]] = {g: [] for g in producers}
        for pname, (path, comps) in internal_paths.items():
            for g in np.unique(group_of_comp[roots[comps]]).tolist():
                if g >= 0 and path not in members[g]:
                    members[g].append(path)
        out_groups = {}
        for call in graph.calls:
            touched = set()
            for tid in call.inputs + call.outputs:
                touched.update(np.unique(group_of_comp[self.layouts[tid]]).tolist())
            touched.discard(-1)
            for g in touched:
                if call.path not in members[g]:
                    members[g].append(call.path)
            if call.outputs and call.path not in out_groups:
                out_groups[call.path] = self.layouts[call.outputs[0]]

        unit_index = np.full(n, -1, dtype=np.int64)
        groups = []
        self.frozen_groups: List[Group] = []
        for g, plist in producers.items():
            rs = np.asarray(unit_roots[g], dtype=np.int64)
            frozen = rs[self.fixed_mask[rs]]
            unit_index[rs] = np.arange(len(rs))
            gmaps = {}
            for path in members[g]:
                if path in out_groups:
                    rl = roots[out_groups[path]]
                    gmaps[path] = np.where(group_label[rl] == g, unit_index[rl], -1) \
                        if len(rl) else rl
            for pname, (path, comps) in internal_paths.items():
                rl = roots[comps]
                if (group_label[rl] == g).any():
                    gmaps[pname] = np.where(group_label[rl] == g, unit_index[rl], -1)
            inexact = {self.inexact[r] for r in rs.tolist() if r in self.inexact}
            if frozen.size:
                group = Group(len(self.frozen_groups), plist, members[g],
                              rs.tolist(), gmaps, inexact, [])
                group.frozen = self.fixed[int(frozen[0])]
                self.frozen_groups.append(group)
                continue
            group = Group(len(groups), plist, members[g], rs.tolist(), gmaps,
                          inexact, [])
            group._label = g
            groups.append(group)
        self._unit_index = unit_index
        self._group_label = group_label
        self._attach_score_points(groups)
        return groups

    def _attach_score_points(self, groups):
        """Post-activation tensors: what each mixing consumer reads, traced
        back through pooling/flatten/concat/padding to where it was made."""
        graph = self.graph
        producer_call = {}
        for call in graph.calls:
            for k, tid in enumerate(call.outputs):
                producer_call[tid] = (call, k)
        chosen = []
        seen = set()
        for call in graph.calls:
            handler = self.handlers[id(call.layer)]
            if not handler.mixes_channels:
                continue
            stack = list(call.inputs[:1])
            while stack:
                tid = stack.pop()
                if tid in seen:
                    continue
                seen.add(tid)
                if tid not in producer_call:
                    continue
                pcall, k = producer_call[tid]
                if self.handlers[id(pcall.layer)].is_structural:
                    stack.extend(pcall.inputs)
                    continue
                chosen.append((pcall, k, tid))
        by_label = {g._label: g for g in groups}
        for pcall, k, tid in chosen:
            rl = self.roots[self.layouts[tid]]
            labels = self._group_label[rl]
            for label in np.unique(labels).tolist():
                g = by_label.get(label)
                if g is None:
                    continue
                units = np.where(labels == label, self._unit_index[rl], -1)
                kt = pcall.node.outputs[k] if k < len(pcall.node.outputs) else None
                g.score_points.append(ScorePoint(pcall.index, k, pcall.path, units, kt))

    # -- removal ---------------------------------------------------------------
    def resolve_removal(self, removal: Dict[str, Sequence[int]]) -> set:
        """{layer: output indices} -> the set of component roots to remove.

        Raises ValueError for unknown or non-prunable layers, out-of-range
        indices, or a removal that would leave a layer with no channels.
        """
        graph = self.graph
        removed = set()
        if not isinstance(removal, dict):
            raise ValueError(
                "remove_channels expects a dict {layer_name: [output channel "
                f"indices]}}, got {type(removal).__name__}")
        for name, indices in removal.items():
            layer, unit_set = self.find_member(name)
            calls = graph.calls_of(layer)
            path = calls[0].path
            if unit_set is not None:
                rl = self.roots[self.internal_layout(layer, unit_set)]
                path = f"{path}:{unit_set}"
            elif not calls[0].outputs:
                raise ValueError(f"layer '{name}' has no output")
            else:
                rl = self.root_layout(calls[0].outputs[0])
            idx = channel_indices(indices, len(rl), path)
            if idx.size == 0:
                continue
            bad = idx[(idx < 0) | (idx >= len(rl))]
            if bad.size:
                raise ValueError(
                    f"channel index {int(bad[0])} is out of range for layer "
                    f"'{path}', which has {len(rl)} output channels")
            for i in idx.tolist():
                r = int(rl[i])
                if self.fixed_mask[r]:
                    raise ValueError(
                        f"channel {i} of layer '{path}' "
                        f"({type(layer).__name__}) cannot be removed: "
                        f"{self.fixed[r]}. Pass another layer, or if an "
                        "unsupported layer blocks it, register a handler "
                        "(kprune.register_handler) or leave this layer out")
                removed.add(r)
        # No tensor may lose every channel.
        gone = np.zeros(len(self.roots), dtype=bool)
        gone[list(removed)] = True
        for call in graph.calls:
            for tid in call.outputs:
                rl = self.roots[self.layouts[tid]]
                if len(rl) and gone[rl].all():
                    raise ValueError(
                        f"the removal takes every channel of layer "
                        f"'{call.path}' ({call.class_name}, {len(rl)} "
                        "channels): keep at least one channel of its group")
            for unit_set in self.internal_names(call.layer):
                rl = self.roots[self.internal_layout(call.layer, unit_set)]
                if len(rl) and gone[rl].all():
                    raise ValueError(
                        f"the removal takes every unit of '{call.path}:"
                        f"{unit_set}' ({call.class_name}, {len(rl)} "
                        f"{unit_set}): keep at least one of them")
        return removed

    def find_member(self, name: str):
        """(layer, internal unit set or None) named by a `remove_channels`
        key: a layer path or name, or '<layer>:<unit set>' (e.g.
        'mha:heads')."""
        graph = self.graph
        if name not in graph.layers_by_path and ":" in name:
            base, _, unit_set = name.rpartition(":")
            try:
                layer = graph.find_layer(base)
            except ValueError:
                layer = None
            if layer is not None:
                names = self.internal_names(layer)
                if unit_set not in names:
                    raise ValueError(
                        f"layer '{base}' ({type(layer).__name__}) has no unit "
                        f"set '{unit_set}'" + (f"; it has {names}" if names else
                                               ": name the layer alone to remove "
                                               "its output channels"))
                return layer, unit_set
        return graph.find_layer(name), None

    def keep_units(self, layer, unit_set: str, removed: set) -> np.ndarray:
        """Kept indices of one internal unit set of `layer`."""
        rl = self.roots[self.internal_layout(layer, unit_set)]
        if not removed:
            return np.arange(len(rl))
        gone = np.isin(rl, np.fromiter(removed, dtype=np.int64))
        return np.nonzero(~gone)[0]

    def keep_indices(self, tid, removed: set) -> np.ndarray:
        rl = self.roots[self.layouts[tid]]
        if not removed:
            return np.arange(len(rl))
        if getattr(self, "_gone_for", None) is not removed:
            self._gone = np.zeros(len(self.roots), dtype=bool)
            self._gone[list(removed)] = True
            self._gone_for = removed
        return np.nonzero(~self._gone[rl])[0]


def _tied_layers(graph) -> Dict[int, str]:
    """id(layer) -> description of a weight it shares with another leaf
    layer of the graph (one layer reading another's variable)."""
    owners: Dict[int, list] = {}
    for layer in graph.leaf_layers():
        for w in getattr(layer, "weights", None) or ():
            owners.setdefault(id(w), [])
            if not any(o is layer for o in owners[id(w)]):
                owners[id(w)].append(layer)
    tied = {}
    for layer in graph.leaf_layers():
        for w in getattr(layer, "weights", None) or ():
            others = [o for o in owners[id(w)] if o is not layer]
            if others and id(layer) not in tied:
                names = ", ".join(f"'{graph.layer_paths.get(id(o), o.name)}'"
                                  for o in others)
                tied[id(layer)] = f"'{w.path}' with layer {names}"
    return tied


class _BoundaryHandler:
    """Unknown layers: their inputs and outputs are frozen."""

    mixes_channels = False
    is_structural = False
    is_activation = False

    def propagate(self, call, ctx):
        why = untraced_reason(call.layer)  # a composite kprune could not trace
        for tid in call.inputs:
            ctx.fix(ctx.layout(tid), why or (
                    f"it reaches layer '{call.path}' of class "
                    f"{call.class_name}, which kprune has no channel handler "
                    "for (kprune.register_handler adds one)"))
        outs = []
        for k, tid in enumerate(call.outputs):
            comps = ctx.new_channels(call, ctx.tensor(tid).channels, k)
            ctx.fix(comps, why or f"output of unsupported layer '{call.path}' "
                    f"({call.class_name})")
            outs.append(comps)
        return outs

    def weight_roles(self, layer, in_channels, out_channels):
        return {}

    def update_config(self, config, layer, in_keep, out_keep):
        pass

    def describe(self):
        return "boundary"


_BOUNDARY = _BoundaryHandler()


def channel_indices(indices, n_channels: int, layer: str) -> np.ndarray:
    """The int64 channel indices named by `indices` for a layer of `n_channels`.

    Accepts integer indices (any sequence or array) or a boolean mask of
    exactly `n_channels` entries (True = remove). Floats, strings, masks
    of the wrong length and repeated indices raise, since reading them as
    indices would silently remove other channels than the caller meant.

    Example:
        >>> channel_indices(np.array([True, False, True]), 3, "conv")
        array([0, 2])
    """
    if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
        indices = [indices]
    try:
        arr = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
    except TypeError:
        raise TypeError(f"channels to remove from layer '{layer}' must be a list of "
                        f"indices or a boolean mask, got {indices!r}") from None
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype == bool:
        if arr.ndim != 1 or arr.shape[0] != n_channels:
            raise ValueError(
                f"boolean mask for layer '{layer}' has shape {arr.shape} but the layer has "
                f"{n_channels} output channels; pass a mask of length {n_channels} or a "
                "list of indices")
        return np.flatnonzero(arr).astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"channel indices for layer '{layer}' must be integers, got dtype {arr.dtype} "
            f"({arr.reshape(-1)[:4].tolist()}...); pass ints (e.g. np.asarray(idx, int) "
            "after checking they are whole numbers) or a boolean mask")
    flat = arr.reshape(-1).astype(np.int64)
    unique, counts = np.unique(flat, return_counts=True)
    if (counts > 1).any():
        twice = unique[counts > 1]
        raise ValueError(
            f"channel index {int(twice[0])} is listed {int(counts[counts > 1][0])} times "
            f"for layer '{layer}' ({twice.size} repeated index(es) in all); pass each "
            "channel once (e.g. sorted(set(indices))) — a repeat usually means the "
            "indices were computed for another layer or another width")
    return unique


#: values of `gqa_units`
GQA_UNITS = ("key_value_heads", "query_heads")


def analyze(model, ignored_layers: Sequence[str] = (),
            gqa_units: str = "key_value_heads") -> Analysis:
    """Analyzes `model`'s channel dependencies (see module docstring).
    A tf_keras model is analyzed through its Keras 3 copy (same layer names).

    `gqa_units` picks the heads of grouped-query attention (keras-hub
    Llama / Qwen / Mistral / Gemma: `num_query_heads` a multiple of
    `num_key_value_heads`) that are units: 'key_value_heads' (default) makes
    unit i key/value head i with its query heads (whole groups go);
    'query_heads' keeps every key/value head and makes unit j the j-th
    query head of every group, so removing it leaves each group one query
    head fewer (the group sizes stay equal, as those layers require).

    Example:
        >>> a = analyze(llama, gqa_units="query_heads")
        >>> kprune.remove_channels(llama, {"transformer_layer_0/self_attention/query:heads": [1]},
        ...                        analysis=a)
    """
    from kprune.compat.tf_keras_bridge import keras3_of
    return Analysis(keras3_of(model), ignored_layers, gqa_units)


def dependency_groups(model, ignored_layers: Sequence[str] = (),
                      include_frozen: bool = False,
                      gqa_units: str = "key_value_heads") -> List[Group]:
    """The prunable channel dependency groups of a Functional/Sequential model.

    Each group lists its member layers (producers first), its number of
    removable channels and, for activation-based scoring, the tensors on
    which its channels are post-activation. Channels reaching a model output,
    a model input, an ignored layer or a layer kprune has no handler for are
    not prunable (nor are channels that meet a softmax-like activation, a
    per-channel constant, or statistics over another axis), and groups
    containing them are left out; with `include_frozen=True` they follow the
    prunable groups, each with `group.frozen` saying why.
    A tf_keras (Keras 2) model is accepted too (see `kprune.compat`).
    `gqa_units`: grouped-query attention's units, as for `analyze`.

    Example:
        >>> for group in kprune.dependency_groups(model):
        ...     print(group.layers, group.channels)
        >>> [(g.name, g.frozen) for g in kprune.dependency_groups(
        ...     model, include_frozen=True) if g.frozen]
        [('predictions', 'model output')]
    """
    analysis = analyze(model, ignored_layers, gqa_units)
    if include_frozen:
        return analysis.groups + analysis.frozen_groups
    return analysis.groups

