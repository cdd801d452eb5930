"""Channel importance criteria for dependency groups.

A criterion returns one score per group unit (higher = more important).
Criteria are small classes (`Criterion`) with a stable config; strings
resolve to them with `get_criterion`:

* ``"l1"`` / `L1Norm`, ``"l2"`` / `L2Norm`: filter norms of the group's producer layers (ILP).
* ``"mean_activation"`` / `MeanActivation`: mean post-activation value (IAP, p = 1).
* ``"attention"`` / `Attention`: IAP score with power ``p`` (default 2): mean over
  positions of (mean over samples of A) ** p (AAP's attention map).
* ``"apoz"`` / `APoZ`: 1 - average percentage of zeros.
* ``"taylor"`` / `Taylor`: first-order Taylor importance (Molchanov et al. 2017),
  |activation x gradient of the loss| per channel, on labelled calibration
  data (`taylor_scores`).

Member scores are aggregated over the group's members with ``"sum"``
(default), ``"mean"`` or ``"max"``. A user criterion is any callable
``fn(model, group)`` or ``fn(model, group, stats)`` returning an array of
``group.channels`` scores; with the three-argument form, activation statistics
(`kprune.scoring.recording.ActivationStats`) are recorded and passed.

Example:
    >>> scores = kprune.scoring.score_groups(model, "l1")   # {group index: scores}
    >>> kprune.prune(model, "iap", criterion=kprune.scoring.MeanActivation(p=2), ...)
    >>> my = lambda model, group: np.arange(group.channels, dtype=float)
    >>> scores = kprune.scoring.score_groups(model, my)
"""

import inspect
from typing import Callable, Dict, Sequence, Union

import numpy as np

from kprune.scoring.aggregate import AGGREGATES, aggregate_members



def _analysis_parts(model, analysis):
    from kprune.core.dependency import analyze

    return analysis or analyze(model)


def filter_norms(model, group, ord=1, aggregate="sum", analysis=None) -> np.ndarray:
    """Per-unit L1 (ord=1) or L2 (ord=2) norm of the producers' filters.

    A producer's filter for output channel c is every kernel weight along its
    'out' axis at c (all kernel positions and input channels).

    Example:
        >>> filter_norms(model, groups[0], ord=1).shape == (groups[0].channels,)
        True
    """
    analysis = _analysis_parts(model, analysis)
    members = []
    for producer in group.producers:
        layer, roles = _layer_roles(analysis, producer)
        target = _unit_role(analysis, producer)
        per_channel = None
        for i, w in enumerate(getattr(layer, "weights", ())):  # traced ops have none
            r = roles.get(i, roles.get(w.name))
            axis, blocks = _unit_axis(r, target)
            if axis is None or len(r) < 2:
                continue
            v = _per_unit_last(np.asarray(w.numpy(), dtype=np.float64), axis, blocks)
            norm = np.abs(v).sum(0) if ord == 1 else (v ** 2).sum(0)
            per_channel = norm if per_channel is None else per_channel + norm
        if per_channel is None:  # no kernel along 'out' (e.g. depthwise): use |bias| or skip
            continue
        if ord == 2:
            per_channel = np.sqrt(per_channel)
        members.append(_to_units(group, producer, per_channel))
    if not members:
        raise ValueError(
            f"group '{group.name}' has no producer with a kernel to take a "
            "filter norm of; use an activation criterion for it")
    return aggregate_members(members, aggregate)


def _unit_role(analysis, member) -> str:
    """The weight role of a group member's units: 'out' for a layer's
    output channels, 'unit:heads' for the member 'mha:heads'."""
    unit_set = analysis.find_member(member)[1]
    return "out" if unit_set is None else f"unit:{unit_set}"


def _unit_axis(roles, target):
    """(axis, gate blocks) of the `target` role in a weight's roles, or
    (None, 1) ('out@4': an LSTM's four gate blocks of the units)."""
    from kprune.core.handlers.base import parse_role

    for axis, role in enumerate(roles or ()):
        if role is not None:
            base, blocks = parse_role(role)
            if base == target:
                return axis, blocks
    return None, 1


def _per_unit_last(value, axis, blocks):
    """`value` with the units' axis last and its gate blocks folded in:
    (everything else, units)."""
    v = np.moveaxis(value, axis, -1)
    n = v.shape[-1] // blocks
    v = v.reshape(v.shape[:-1] + (blocks, n))
    return v.reshape(-1, n)


def _layer_roles(analysis, name):
    """(layer, its handler's weight roles) of the member `name` (a layer,
    or '<layer>:<unit set>')."""
    graph = analysis.graph
    layer = analysis.find_member(name)[0]
    call = graph.calls_of(layer)[0]
    n_in = graph.tensors[call.inputs[0]].channels if call.inputs else 0
    n_out = graph.tensors[call.outputs[0]].channels
    return layer, analysis.handlers[id(layer)].weight_roles(layer, n_in, n_out)


def _to_units(group, member, per_channel) -> np.ndarray:
    """A member layer's per-channel values summed onto the group's units
    (NaN for units the member does not produce)."""
    cmap = group.channel_map(member)
    valid = cmap >= 0
    tmp = np.zeros(group.channels)
    np.add.at(tmp, cmap[valid], per_channel[valid])
    seen = np.zeros(group.channels, bool)
    seen[cmap[valid]] = True
    unit = np.full(group.channels, np.nan)
    unit[seen] = tmp[seen]
    return unit


def _loss_fn(model, loss=None):
    import keras

    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError(
            "criterion 'taylor' needs the training loss: compile the model (loss=...) "
            "or use another criterion (e.g. 'l1', 'mean_activation')")
    if isinstance(loss, (str, dict)):
        loss = keras.losses.get(loss)
    return loss


def taylor_scores(model, data, groups=None, loss=None, analysis=None, batch_size=32,
                  max_samples=None, aggregate="sum", strategy=None) -> Dict[int, np.ndarray]:
    """First-order Taylor importance of every group unit (Molchanov et al.,
    *Pruning CNNs for resource efficient inference*, 2017).

    The score of channel c estimates how much the loss changes when c's
    output is zeroed: ``| sum over positions of A_c * dL/dA_c |``, taken per
    mini-batch of `batch_size` labelled samples and averaged over batches.
    It is computed from the weights through the exact identity
    ``sum(A_c * dL/dA_c) = sum(w * dL/dw)`` over the weights that produce
    channel c (kernel slice and bias; BatchNorm gamma and beta where a BN
    follows), where A_c is the layer's pre-activation output, which equals
    the post-ReLU product (ReLU passes A and dL/dA where A > 0 and zeros
    both elsewhere). Member scores are combined with `aggregate`.

    Args:
        data: labelled ``(x, y)`` numpy arrays or a `kprune.data.Data`.
        loss: a Keras loss (default: the model's compiled loss).
        strategy: the ``tf.distribute`` strategy the model lives in (each
            replica computes the whole batch; the results are averaged, so
            the scores equal the single-device ones).

    The gradients come from the running Keras backend's own autodiff
    (TensorFlow, JAX or PyTorch; `kprune.compat.backend.gradient_products`).

    Returns:
        {group index: scores (>= 0)}.

    Example:
        >>> scores = taylor_scores(model, (x[:1000], y[:1000]))
    """
    import keras

    from kprune import data as training
    from kprune.compat import backend

    analysis = _analysis_parts(model, analysis)
    groups = analysis.groups if groups is None else groups
    multi = len(model.outputs) > 1 and loss is None
    loss_fn = None if multi else _loss_fn(model, loss)
    if multi and getattr(model, "loss", None) is None:
        _loss_fn(model, None)  # the error: compile the model
    graph = analysis.graph
    data = training.as_data(data, batch_size, "calibration data")
    if data.kind == "numpy" and data.y is None:
        raise ValueError("criterion 'taylor' needs labelled calibration data (x, y)")
    # (group index, member name, variable position, out axis)
    entries, variables, where = [], [], {}
    for g in groups:
        for name in g.layers:
            try:
                g.channel_map(name)  # members without a map onto the units are skipped
            except ValueError:
                continue
            if not graph.calls_of(analysis.find_member(name)[0]):
                continue
            layer, roles = _layer_roles(analysis, name)
            target = _unit_role(analysis, name)
            trainable = {id(w) for w in getattr(layer, "trainable_weights", ())}
            for i, w in enumerate(getattr(layer, "weights", ())):  # keras.ops nodes have none
                if id(w) not in trainable:
                    continue
                axis, blocks = _unit_axis(roles.get(i, roles.get(w.name)), target)
                if axis is None:
                    continue
                if id(w) not in where:
                    where[id(w)] = len(variables)
                    variables.append(w)
                entries.append((g.index, name, where[id(w)], axis, blocks))
    if not variables:
        raise ValueError("criterion 'taylor' found no trainable weights producing "
                         "the groups' channels")

    def batch_loss(x, y, pred):  # the batch mean, in keras.ops (any backend)
        if multi:  # the compiled loss over every output
            return model.compute_loss(x=x, y=y, y_pred=pred)
        pred = pred[0] if isinstance(pred, (list, tuple)) else pred
        return keras.ops.mean(loss_fn(y, pred))

    products = backend.gradient_products(model, variables, batch_loss, strategy)

    sums = {}
    seen, batches = 0, 0
    for x, y in training.iterate_batches(data, batch_size):
        if max_samples is not None and seen >= max_samples:
            break
        y = training.as_labels(y)
        prods = products(x, y)
        member = {}
        for gi, name, vi, axis, blocks in entries:
            v = _per_unit_last(prods[vi], axis, blocks).sum(0)
            key = (gi, name)
            member[key] = v if key not in member else member[key] + v
        for (gi, name), v in member.items():
            key = (gi, name)
            sums[key] = np.abs(v) if key not in sums else sums[key] + np.abs(v)
        seen += len(keras.tree.flatten(y)[0])
        batches += 1
    out = {}
    for g in groups:
        members = []
        for (gi, name), v in sums.items():
            if gi == g.index:
                members.append(_to_units(g, name, v / max(batches, 1)))
        out[g.index] = (aggregate_members(members, aggregate) if members
                        else np.zeros(g.channels))
    return out


def _user_wants_stats(fn) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) >= 3


# -- criteria as classes ---------------------------------------------------------------

class Criterion:
    """Importance of every unit of a dependency group (higher = keep).

    Subclasses set ``name`` (the string `get_criterion` resolves), ``needs``
    (``'weights'``, ``'activations'`` or ``'gradients'``: what must be
    computed before `score`) and implement `score`. `get_config` is stable
    across processes (it identifies a run in checkpoints). ``comparable``
    says the scores of different groups share one scale (an estimated loss
    change), so allocation by cost may divide them by the cost as they are
    instead of first dividing each group's scores by their mean.

    Example:
        >>> class Random(Criterion):
        ...     name = "random"
        ...     def score(self, model, group, stats=None, analysis=None):
        ...         return np.random.default_rng(0).random(group.channels)
        >>> kprune.prune(model, "ilp", criterion=Random(), train_data=(x, y))
    """

    name = "criterion"
    needs = "weights"
    comparable = False

    def __init__(self, aggregate="sum"):
        if aggregate not in AGGREGATES and not callable(aggregate):
            raise ValueError(f"aggregate must be one of {AGGREGATES} or a callable, "
                             f"got {aggregate!r}")
        self.aggregate = aggregate

    def score(self, model, group, stats=None, analysis=None) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> Dict:
        agg = self.aggregate
        return {"class_name": type(self).__name__,
                "aggregate": agg if isinstance(agg, str) else _qualname(agg)}

    def __repr__(self):
        cfg = {k: v for k, v in self.get_config().items() if k != "class_name"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self):
        return hash(repr(self))


def _qualname(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


class L1Norm(Criterion):
    """L1 norm of each unit's filter in the group's producer layers (ILP).

    Example:
        >>> L1Norm().score(model, group)
    """

    name = "l1"
    ord = 1

    def score(self, model, group, stats=None, analysis=None):
        return filter_norms(model, group, ord=self.ord, aggregate=self.aggregate,
                            analysis=analysis)


class L2Norm(L1Norm):
    """L2 norm of each unit's filter in the group's producer layers."""

    name = "l2"
    ord = 2


class MeanActivation(Criterion):
    """Mean over positions of (mean over samples of the post-activation) ** p
    (the IAP paper's score; p = 1 is the plain mean activation).

    Example:
        >>> MeanActivation(p=2).score(model, group, stats=stats)
    """

    name = "mean_activation"
    needs = "activations"
    default_p = 1.0

    def __init__(self, p=None, aggregate="sum"):
        super().__init__(aggregate)
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0):
            raise ValueError(f"p must be a positive number (the activation power), got {p!r}")
        self.p = float(self.default_p if p is None else p)

    def score(self, model, group, stats=None, analysis=None):
        if stats is None:
            raise ValueError(f"criterion {self.name!r} needs activation statistics (stats=)")
        if not group.score_points:
            return _no_activation_fallback(model, group, analysis)
        return stats.mean_power(group, p=self.p, aggregate=self.aggregate)

    def get_config(self):
        return {**super().get_config(), "p": self.p}


class Attention(MeanActivation):
    """AAP's attention-map score: `MeanActivation` with p = 2 by default."""

    name = "attention"
    default_p = 2.0


class APoZ(Criterion):
    """1 - the average percentage of zeros of each unit's activations."""

    name = "apoz"
    needs = "activations"

    def score(self, model, group, stats=None, analysis=None):
        if stats is None:
            raise ValueError("criterion 'apoz' needs activation statistics (stats=)")
        if not group.score_points:
            return _no_activation_fallback(model, group, analysis)
        agg = "mean" if self.aggregate == "sum" else self.aggregate
        return 1.0 - stats.apoz(group, aggregate=agg)


def _no_activation_fallback(model, group, analysis):
    """Units that no tensor carries (attention heads, head dims) have no
    activations to record: they are scored by their weights' L2 norm
    (selection compares scores within a group, or divided by the group's
    mean, so the scale does not matter)."""
    return filter_norms(model, group, ord=2, analysis=analysis)


class Taylor(Criterion):
    """First-order Taylor importance |activation x gradient of the loss|
    (Molchanov et al. 2017), computed for all groups at once by
    `taylor_scores` on labelled calibration data.

    Example:
        >>> scores = Taylor().score_all(model, (x[:1000], y[:1000]))
    """

    name = "taylor"
    needs = "gradients"
    comparable = True   # every score estimates the loss change of removing the unit

    def score(self, model, group, stats=None, analysis=None):
        if not isinstance(stats, dict) or group.index not in stats:
            raise ValueError("criterion 'taylor' is computed for all groups at once: "
                             "use taylor_scores(model, data) or score_groups(..., data=)")
        return np.asarray(stats[group.index], dtype=np.float64)

    def score_all(self, model, data, analysis=None, strategy=None) -> Dict[int, np.ndarray]:
        return taylor_scores(model, data, analysis=analysis, aggregate=self.aggregate,
                             strategy=strategy)


class FunctionCriterion(Criterion):
    """A user function ``fn(model, group)`` or ``fn(model, group, stats)``
    (then activation statistics are recorded and passed).

    Its config names the function by module and qualified name, so a run with
    it resumes in a new process (no memory address in the checkpoint).
    """

    name = "function"

    def __init__(self, fn, aggregate="sum"):
        super().__init__(aggregate)
        if not callable(fn):
            raise TypeError(f"criterion must be a name, a kprune.scoring.Criterion or a "
                            f"callable fn(model, group[, stats]), got {fn!r}")
        self.fn = fn
        self.needs = "activations" if (getattr(fn, "needs_activations", None)
                                       or _user_wants_stats(fn)) else "weights"

    def score(self, model, group, stats=None, analysis=None):
        args = (model, group, stats) if _user_wants_stats(self.fn) else (model, group)
        return np.asarray(self.fn(*args), dtype=np.float64).reshape(-1)

    def get_config(self):
        return {**super().get_config(), "function": _qualname(self.fn)}

    @property
    def label(self):
        return getattr(self.fn, "__name__", repr(self.fn))


#: name -> criterion class, for `get_criterion`.
CRITERIA = {c.name: c for c in (L1Norm, L2Norm, MeanActivation, Attention, APoZ, Taylor)}


def get_criterion(identifier, p=None, aggregate="sum") -> Criterion:
    """A `Criterion` from a name (``'l1'``, ``'l2'``, ``'mean_activation'``,
    ``'attention'``, ``'apoz'``, ``'taylor'``), a `Criterion` instance (returned
    as is) or a callable ``fn(model, group[, stats])``. `p` applies to the
    activation-power criteria only.

    Example:
        >>> get_criterion("attention", p=3)
        Attention(aggregate='sum', p=3.0)
    """
    if isinstance(identifier, Criterion):
        return identifier
    if isinstance(identifier, str):
        cls = CRITERIA.get(identifier)
        if cls is None:
            raise ValueError(
                f"unknown criterion {identifier!r}: use one of {sorted(CRITERIA)}, a "
                "kprune.scoring.Criterion or a callable fn(model, group[, stats])")
        if issubclass(cls, MeanActivation):
            return cls(p=p, aggregate=aggregate)
        return cls(aggregate=aggregate)
    if callable(identifier):
        return FunctionCriterion(identifier, aggregate=aggregate)
    raise TypeError(f"criterion must be a name, a kprune.scoring.Criterion or a callable "
                    f"fn(model, group[, stats]), got {identifier!r}")


def needs_activations(criterion) -> bool:
    """Whether `criterion` needs recorded activation statistics."""
    try:
        return get_criterion(criterion).needs == "activations"
    except (TypeError, ValueError):
        return False


def criterion_stats(crit: "Criterion", model, data, analysis=None, groups=None,
                    strategy=None):
    """What `crit` needs computed before `Criterion.score`, from calibration
    `data`: Taylor scores for ``needs='gradients'``, activation statistics for
    ``needs='activations'``, None for weight criteria. The one place that
    switches on ``crit.needs``.

    Example:
        >>> stats = criterion_stats(get_criterion("apoz"), model, x_calib)
    """
    if crit.needs not in ("gradients", "activations"):
        return None
    if data is None:
        what = "labelled calibration `data` (x, y)" if crit.needs == "gradients" else \
            "`stats` or calibration `data`"
        raise ValueError(f"criterion {crit.name!r} needs {what}")
    if crit.needs == "gradients":
        return crit.score_all(model, data, analysis=analysis, strategy=strategy)
    from kprune.scoring.distribute import record_activations

    return record_activations(model, data, strategy, groups=groups)


def group_scores(model, group, criterion: Union[str, Callable, Criterion] = "l1", stats=None,
                 aggregate="sum", p=None, analysis=None) -> np.ndarray:
    """Scores of one group's units under `criterion` (higher = keep), checked:
    one finite score per unit.

    Example:
        >>> group_scores(model, group, "mean_activation", stats=stats)
    """
    crit = get_criterion(criterion, p=p, aggregate=aggregate)
    scores = np.asarray(crit.score(model, group, stats, analysis), dtype=np.float64)
    label = crit.label if isinstance(crit, FunctionCriterion) else crit.name
    if scores.shape != (group.channels,):
        raise ValueError(
            f"criterion {label!r} returned {scores.size} scores for group '{group.name}', "
            f"which has {group.channels} channels")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"criterion {label!r} returned non-finite scores for group "
                         f"'{group.name}'")
    return scores


def score_groups(model, criterion="l1", stats=None, aggregate="sum", p=None,
                 analysis=None, groups: Sequence = None, data=None) -> Dict[int, np.ndarray]:
    """Scores for every prunable group: {group index: per-unit scores}.

    For activation criteria pass `stats` (from `kprune.scoring.recording`) or
    calibration `data` to record them.

    Example:
        >>> scores = score_groups(model, "mean_activation", data=x_calib)
    """
    from kprune.core.dependency import analyze

    analysis = analysis or analyze(model)
    groups = analysis.groups if groups is None else groups
    crit = get_criterion(criterion, p=p, aggregate=aggregate)
    if stats is None:
        stats = criterion_stats(crit, model, data, analysis=analysis, groups=groups)
    return {g.index: group_scores(model, g, crit, stats, analysis=analysis)
            for g in groups}
