"""Complexity-driven pruning: parameter-, FLOPs- and memory-aware modes.

Zawish, Davy, Abraham, *Complexity-Driven CNN Compression for
Resource-constrained Edge AI* (2022), as specified in ALGORITHMS.md:

1. Each dependency group's weight is its share of the model's complexity in
   the chosen mode (`kprune.core.complexity_weights`): parameters (PA), MACs (FA)
   or activation memory at batch 1 (MA).
2. A seeded weighted random draw picks a group; a step removes
   ``step_fraction`` of its remaining channels (at least one, never below
   ``min_channels``). Weights are recomputed on the pruned model after every
   step, so they stay shares of the *remaining* complexity.
3. After every step the rebuilt model is measured with `kprune.profile`; the
   search stops at the first step that meets the target (so the target is met
   within one step).
4. No ranking and no fine-tuning: the pruned architecture is re-initialised
   and trained from scratch.

What is measured:

* ``params``: `Profile.params`;
* ``flops``: `Profile.macs` (multiply-accumulates, batch 1; FLOPs = 2 x MACs);
* ``memory``: `Profile.peak_activation_bytes` (float32, or
  `peak_activation_bytes_int8` with ``memory_dtype='int8'``), the tensor
  arena the model needs when run layer by layer (TFLite Micro).
  Memory-mode *weights* use each group's share of the summed per-layer
  activation footprints (input + output bytes), the paper's layer-level
  definition; the *stopping rule* uses the peak, which is what has to fit
  in RAM.

Example:
    >>> pruned, steps = plan_complexity_pruning(kprune.zoo.lenet5(), "flops",
    ...                                         target=0.5, seed=0)
    >>> steps[-1]["reduction"]["flops"] >= 0.5
    True
"""

import numbers
import time
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np

from kprune.core.complexity_weights import (MODES, complexity_weights,
                                       group_complexity, normalize_mode)
from kprune.core.dependency import analyze
from kprune.core.profile import profile
from kprune.core.surgery import remove_channels
from kprune.methods.device_budget import (TOLERANCE, DeviceBudget, flatbuffer_for,
                                          interleaved_ms, measured_arena, minimal_model)
from kprune.methods.registry import MethodDefaults, register_method
from kprune.methods.run import Proposal, measure as run_measure
from kprune.methods.state import RoundEntry, RoundStatus

__all__ = ["COMPLEXITY_OPTIONS", "complexity", "complexity_steps",
           "arena_of", "complexity_weights", "group_complexity", "latency_staircase",
           "measure", "minimal_model", "plan_arena_pruning", "plan_complexity_pruning",
           "plan_latency_pruning", "reinitialize"]

#: absolute-budget argument -> the resource it bounds.
ABSOLUTE_TARGETS = {"target_params": "params", "target_macs": "flops",
                    "target_memory_bytes": "memory"}
_UNITS = {"params": "parameters", "flops": "MACs", "memory": "bytes"}


def measure(model, memory_dtype: str = "float32", graph=None) -> Dict[str, int]:
    """{'params', 'flops' (MACs, batch 1), 'memory' (peak activation bytes)}
    of `model` from `kprune.profile`.

    Example:
        >>> measure(kprune.zoo.lenet5())
        {'params': 61706, 'flops': 416520, 'memory': 23520}
    """
    if memory_dtype not in ("float32", "int8"):
        raise ValueError(
            f"memory_dtype={memory_dtype!r}: use 'float32' or 'int8' (the "
            "activation type the deployed model runs with)")
    p = profile(model, graph=graph)
    memory = (p.peak_activation_bytes if memory_dtype == "float32"
              else p.peak_activation_bytes_int8)
    return {"params": int(p.params), "flops": int(p.macs), "memory": int(memory)}


def _reductions(values, base):
    return {k: (1.0 - values[k] / base[k]) if base[k] else 0.0 for k in MODES}


def _widths(analysis) -> Dict[str, int]:
    return {g.name: int(g.channels) for g in analysis.groups}


class _Goal:
    """One stopping condition: measured[resource] <= limit."""

    def __init__(self, resource, limit, argument, requested):
        self.resource = resource
        self.limit = float(limit)
        self.argument = argument
        self.requested = requested

    def met(self, values) -> bool:
        return values[self.resource] <= self.limit + 1e-9

    def to_dict(self):
        return {"resource": self.resource, "limit": self.limit,
                "argument": self.argument, "requested": self.requested}


def _goals(mode, base, target, absolute) -> List[_Goal]:
    goals = []
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, numbers.Real):
            raise ValueError(
                f"target={target!r} must be a number: the fraction of the "
                f"model's {mode} complexity to remove, in (0, 1)")
        if not 0.0 < float(target) < 1.0:
            raise ValueError(
                f"target={target!r} must be in (0, 1): the fraction of the "
                f"model's {mode} complexity to remove (0.5 halves it); it "
                "cannot remove everything")
        goals.append(_Goal(mode, base[mode] * (1.0 - float(target)), "target",
                           float(target)))
    for arg, value in absolute.items():
        if value is None:
            continue
        resource = ABSOLUTE_TARGETS[arg]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
            raise ValueError(
                f"{arg}={value!r} must be a positive number of "
                f"{_UNITS[resource]} (the budget the pruned model must fit)")
        goals.append(_Goal(resource, float(value), arg, value))
    if not goals:
        raise ValueError(
            "give a target: target=<fraction to remove> of the mode's "
            "complexity, or an absolute budget target_params=, target_macs= "
            "or target_memory_bytes=")
    return goals


def _check_step_options(step_fraction, min_channels):
    if not 0.0 < float(step_fraction) <= 1.0:
        raise ValueError(f"step_fraction={step_fraction!r} must be in (0, 1]: "
                         "the fraction of a drawn group's channels one step removes")
    if int(min_channels) < 1:
        raise ValueError(f"min_channels={min_channels!r} must be at least 1")


def _resolve_mode(mode, absolute):
    if mode is not None:
        return normalize_mode(mode)
    given = [ABSOLUTE_TARGETS[a] for a, v in absolute.items() if v is not None]
    if len(set(given)) == 1:
        return given[0]
    raise ValueError(
        "mode is required: 'params' (PA), 'flops' (FA) or 'memory' (MA) "
        "decides which layers are drawn for pruning")


def _check_reachable(goals, minimal_values, base, min_channels):
    for goal in goals:
        if goal.met(minimal_values):
            continue
        r = goal.resource
        best = minimal_values[r]
        most = 1.0 - best / base[r] if base[r] else 0.0
        if goal.argument == "target":
            raise ValueError(
                f"target={goal.requested} cannot be reached: with at least "
                f"min_channels={min_channels} channel(s) left in every "
                "prunable group (and unprunable layers kept) the most that "
                f"can be removed is {most:.4f} of the model's {r} "
                f"({base[r]:,} -> {best:,} {_UNITS[r]}); ask for at most that")
        raise ValueError(
            f"{goal.argument}={goal.requested} cannot be reached: with at "
            f"least min_channels={min_channels} channel(s) left in every "
            "prunable group (and unprunable layers kept) the smallest "
            f"reachable value is {best:,} {_UNITS[r]} (the model has "
            f"{base[r]:,})")


def plan_complexity_pruning(model, mode: Optional[str] = None,
                            target: Optional[float] = None,
                            target_params: Optional[int] = None,
                            target_macs: Optional[int] = None,
                            target_memory_bytes: Optional[int] = None,
                            step_fraction: float = 0.1, seed: int = 0,
                            min_channels: int = 1,
                            ignored_layers: Sequence[str] = (),
                            memory_dtype: str = "float32",
                            reinit: bool = True,
                            target_arena_bytes: Optional[int] = None,
                            ) -> Tuple[keras.Model, List[dict]]:
    """Chooses the pruned architecture by complexity-weighted random draws.

    Args:
        model: a Functional or Sequential Keras model (left unchanged).
        mode: 'params' (PA), 'flops' (FA) or 'memory' (MA): which complexity
            share weights the draw. May be omitted when a single absolute
            budget is given (its resource is used).
        target: fraction of the mode's complexity to remove, in (0, 1).
        target_params, target_macs, target_memory_bytes: absolute budgets
            (parameters, MACs at batch 1, peak activation bytes); the search
            stops when every given budget (and `target`) holds.
        step_fraction: fraction of a drawn group's remaining channels removed
            per step (at least one channel).
        seed: seeds the draws and which channels go; the same seed gives the
            same architecture.
        min_channels: channels every group keeps.
        ignored_layers: layers whose output channels must not be pruned.
        memory_dtype: 'float32' or 'int8' activations for the memory budget.
        reinit: re-initialise the weights of the returned model (the method
            trains it from scratch); False keeps the sliced original weights.
        target_arena_bytes: TFLite-Micro tensor arena budget in bytes (int8
            model): the returned model's arena, measured by the real runtime,
            is <= this and >= 0.9 of it (see `plan_arena_pruning`).

    Returns:
        (pruned model, steps): `steps[0]` is the original model, one entry per
        step after it, each with the drawn group, channels removed, the
        measured params / flops (MACs) / memory, the reductions and the
        widths of every group.

    Raises:
        ValueError: no target, a target outside (0, 1) or not positive, or a
            target that no pruning can reach with `min_channels` left in
            every group (the message gives the reachable maximum).

    Example:
        >>> small, steps = plan_complexity_pruning(lenet5(), "params",
        ...                                        target=0.7, seed=1)
        >>> [s["group"] for s in steps[1:4]]
        ['fc1', 'fc1', 'fc2']
    """
    if target_arena_bytes is not None:
        return plan_arena_pruning(model, target_arena_bytes, mode=mode or "memory",
                                  step_fraction=step_fraction, seed=seed,
                                  min_channels=min_channels, ignored_layers=ignored_layers,
                                  reinit=reinit)
    absolute = {"target_params": target_params, "target_macs": target_macs,
                "target_memory_bytes": target_memory_bytes}
    mode = _resolve_mode(mode, absolute)
    _check_step_options(step_fraction, min_channels)
    min_channels = int(min_channels)
    ignored_layers = tuple(ignored_layers or ())
    base = measure(model, memory_dtype)
    goals = _goals(mode, base, target, absolute)
    analysis = analyze(model, ignored_layers)
    steps = [{"step": 0, "group": None, "removed": 0, **base,
              "reduction": _reductions(base, base),
              "widths": _widths(analysis), "time_s": 0.0,
              "goals": [g.to_dict() for g in goals]}]
    if all(goal.met(base) for goal in goals):
        return (reinitialize(model, seed) if reinit else model), steps
    if not analysis.groups:
        raise ValueError(
            f"model '{model.name}' has no prunable channel group (check "
            "ignored_layers and unsupported layers); nothing can be removed")
    _check_reachable(goals, measure(minimal_model(model, min_channels,
                                                  ignored_layers), memory_dtype),
                     base, min_channels)
    for current, record in complexity_steps(model, mode, seed=seed,
                                            step_fraction=step_fraction,
                                            min_channels=min_channels,
                                            ignored_layers=ignored_layers,
                                            memory_dtype=memory_dtype):
        record["reduction"] = _reductions(record, base)
        steps.append(record)
        if all(goal.met(record) for goal in goals):
            break
    else:  # cannot happen after _check_reachable; be explicit
        raise RuntimeError("every group is at min_channels but the target is "
                           "not met; please report this model")
    return (reinitialize(current, seed) if reinit else current), steps


def complexity_steps(model, mode: str, seed: int = 0,
                     step_fraction: float = 0.1, min_channels: int = 1,
                     ignored_layers: Sequence[str] = (),
                     memory_dtype: str = "float32"):
    """The draws of complexity-driven pruning, one step at a time.

    Yields ``(model, record)`` after each step: the pruned model (sliced
    weights) and a dict with the drawn ``group``, its ``weight`` at the draw,
    channels ``removed``, ``channels_before``, the measured ``params``,
    ``flops`` (MACs), ``memory`` (peak activation bytes), ``widths`` of every
    group and ``time_s`` since the start. Ends when every group is down to
    `min_channels`. `plan_complexity_pruning` stops it at the target.

    Example:
        >>> for small, record in complexity_steps(lenet5(), "memory", seed=0):
        ...     if record["step"] == 3:
        ...         break
        >>> record["widths"]
        {'conv1': 3, 'conv2': 16, 'fc1': 120, 'fc2': 84}
    """
    mode = normalize_mode(mode)
    _check_step_options(step_fraction, min_channels)
    min_channels = int(min_channels)
    rng = np.random.default_rng(seed)
    analysis = analyze(model, ignored_layers)
    current = model
    start = time.perf_counter()
    step = 0
    while True:
        cands = [g for g in analysis.groups if g.channels > min_channels]
        if not cands:
            return
        weights = complexity_weights(current, mode, analysis=analysis)
        p = np.array([weights.get(g.index, 0.0) for g in cands], dtype=np.float64)
        p = p / p.sum() if p.sum() > 0 else np.full(len(cands), 1.0 / len(cands))
        group = cands[int(rng.choice(len(cands), p=p))]
        n = group.channels
        k = max(1, int(np.floor(step_fraction * n + 0.5)))
        k = min(k, n - min_channels)
        units = np.sort(rng.choice(n, size=k, replace=False))
        current = remove_channels(current, group.to_layer_indices(units),
                                  analysis=analysis)
        analysis = analyze(current, ignored_layers)
        values = measure(current, memory_dtype, graph=analysis.graph)
        step += 1
        yield current, {"step": step, "group": group.name, "removed": int(k),
                        "channels_before": int(n),
                        "weight": float(weights.get(group.index, 0.0)),
                        **values, "widths": _widths(analysis),
                        "time_s": time.perf_counter() - start}


def reinitialize(model, seed: Optional[int] = 0) -> keras.Model:
    """The same architecture with freshly initialised weights (seeded), and
    compiled like `model` (fresh optimizer) when `model` was compiled.

    Example:
        >>> fresh = reinitialize(pruned, seed=0)
        >>> fresh.count_params() == pruned.count_params()
        True
    """
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    serialized = keras.saving.serialize_keras_object(model)
    serialized.pop("build_config", None)
    compiled = serialized.pop("compile_config", None)
    fresh = keras.saving.deserialize_keras_object(serialized)
    if compiled is not None:
        try:
            fresh.compile_from_config(compiled)
        except Exception:  # noqa: BLE001 - custom losses: caller compiles
            pass
    return fresh


# -- TFLite-Micro arena budget (target_arena_bytes) ------------------------------

#: The returned model's arena must be within this fraction below the budget.
ARENA_TOLERANCE = TOLERANCE
#: The search aims this fraction below the budget: after training, the same
#: architecture can convert to a slightly different flatbuffer (tens of bytes).
ARENA_MARGIN = 0.01


def _check_arena_target(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
        raise ValueError(
            f"target_arena_bytes={value!r} must be a positive number of bytes: the "
            "TFLite-Micro tensor arena the int8 model must fit, e.g. 32 * 1024")
    return int(value)


def arena_of(model) -> int:
    """Estimated TFLite-Micro arena bytes of `model` converted to int8
    (`kprune.bench.arena_estimate`; exact on the tested models).

    Example:
        >>> arena_of(kprune.zoo.lenet5())
        10352
    """
    from kprune.bench.arena import estimate

    return estimate(flatbuffer_for(model)).total_bytes


def plan_arena_pruning(model, target_arena_bytes: int, mode: str = "memory",
                       step_fraction: float = 0.1, seed: int = 0, min_channels: int = 1,
                       ignored_layers: Sequence[str] = (), reinit: bool = True,
                       verify: bool = True) -> Tuple[keras.Model, List[dict]]:
    """Complexity-driven draws until the int8 model's TFLite-Micro arena fits
    `target_arena_bytes`, landing within `ARENA_TOLERANCE` (10 %) below it.

    The draws are `complexity_steps` (weighted by `mode`, 'memory' by default);
    each step's peak int8 activation bytes, scaled by the arena/activation
    ratio of the last exact check, predicts the arena, and only steps predicted
    within 10 % of the budget are converted and priced exactly
    (`kprune.bench.arena_estimate`). When a step jumps below 0.9 of the budget,
    fewer channels of that step's group are removed (binary search). The model
    chosen is verified with the real runtime (TFLM's recording allocator) when
    `verify` is True; if the runtime disagrees, the draws go on.

    Returns:
        (model, steps) like `plan_complexity_pruning`; each step checked has
        ``arena`` (estimated bytes), the last one ``arena_measured``.

    Raises:
        ValueError: a target that is not a positive number, or below the
            smallest reachable arena (every group at `min_channels`); the
            message gives that arena.

    Example:
        >>> small, steps = plan_arena_pruning(kprune.zoo.resnet20(), 32 * 1024)
        >>> 0.9 * 32768 <= steps[-1]["arena_measured"] <= 32768
        True
    """
    budget = _check_arena_target(target_arena_bytes)
    mode = normalize_mode(mode)
    _check_step_options(step_fraction, min_channels)
    min_channels = int(min_channels)
    ignored_layers = tuple(ignored_layers or ())
    base = measure(model, "int8")
    base_arena = arena_of(model)
    analysis = analyze(model, ignored_layers)
    steps = [{"step": 0, "group": None, "removed": 0, **base,
              "reduction": _reductions(base, base), "widths": _widths(analysis),
              "time_s": 0.0, "arena": base_arena,
              "goals": [{"resource": "arena", "limit": budget,
                         "argument": "target_arena_bytes", "requested": target_arena_bytes}]}]

    def finish(current, record):
        if verify:
            record["arena_measured"] = measured_arena(current)
        return (reinitialize(current, seed) if reinit else current), steps

    if base_arena <= budget:
        steps[0]["note"] = ("the model already fits the arena budget; pruning cannot "
                            "make an arena larger")
        return finish(model, steps[0])
    if not analysis.groups:
        raise ValueError(f"model '{model.name}' has no prunable channel group; its arena "
                         f"stays {base_arena:,} bytes > target_arena_bytes={budget:,}")
    smallest = arena_of(minimal_model(model, min_channels, ignored_layers))
    if smallest > budget:
        raise ValueError(
            f"target_arena_bytes={target_arena_bytes} cannot be reached: the smallest "
            f"reachable TFLite-Micro arena is {smallest:,} bytes (every prunable group cut "
            f"to min_channels={min_channels}; the model needs {base_arena:,}); ask for at "
            f"least {smallest:,}")
    low = (1.0 - ARENA_TOLERANCE) * budget
    budget = int(budget * (1.0 - ARENA_MARGIN))  # the search's own, slightly lower aim
    ratio = base_arena / max(base["memory"], 1)
    prev, start = model, time.perf_counter()
    for current, record in complexity_steps(model, mode, seed=seed,
                                            step_fraction=step_fraction,
                                            min_channels=min_channels,
                                            ignored_layers=ignored_layers,
                                            memory_dtype="int8"):
        record["reduction"] = _reductions(record, base)
        steps.append(record)
        if record["memory"] * ratio > 1.1 * budget:
            prev = current
            continue
        exact = arena_of(current)
        record["arena"] = exact
        ratio = exact / max(record["memory"], 1)
        if exact > budget:
            prev = current
            continue
        if exact < low:
            if record["removed"] > 1:
                current, exact = _fewer_from_group(prev, record, budget, low, seed,
                                                   ignored_layers, exact, current)
            if exact < low:  # the greedy plan jumped: try the other heavy groups
                current, exact = _best_other_group(prev, record, budget, low, seed,
                                                   ignored_layers, exact, current)
            record["arena"] = exact
            values = measure(current, "int8")
            record.update(values, reduction=_reductions(values, base),
                          widths=_widths(analyze(current, ignored_layers)))
        if verify:
            measured = measured_arena(current)
            record["arena_measured"] = measured
            if measured > budget:  # the estimator was wrong: keep drawing
                prev = current
                continue
        record["time_s"] = time.perf_counter() - start
        return (reinitialize(current, seed) if reinit else current), steps
    raise RuntimeError("every group is at min_channels but the arena budget is not met; "
                       "please report this model")


def _best_other_group(prev, record, budget, low, seed, ignored_layers, exact, current,
                      max_groups: int = 5):
    """Arena planning is not monotone in one group's width (greedy placement can
    jump); from `prev`, cut each of the `max_groups` groups with the most
    int8 activation memory as little as fits and keep the largest arena <= budget."""
    analysis = analyze(prev, ignored_layers)
    weights = complexity_weights(prev, "memory", analysis=analysis)
    groups = sorted((g for g in analysis.groups if g.channels > 1 and g.name != record["group"]),
                    key=lambda g: -weights.get(g.index, 0.0))[:max_groups]
    best = (current, exact, record["group"], record["removed"])
    for g in groups:
        hi, fit = _fewest_that_fit(
            lambda k, g=g: remove_channels(
                prev, g.to_layer_indices(range(g.channels - k, g.channels)), analysis=analysis),
            arena_of, 0, g.channels - 1, budget, low)
        if fit is not None and fit[1] > best[1]:
            best = (fit[0], fit[1], g.name, hi)
            if fit[1] >= low:
                break
    record["group"], record["removed"] = best[2], int(best[3])
    return best[0], best[1]


def _fewer_from_group(prev, record, budget, low, seed, ignored_layers, exact, current):
    """The last step overshot below `low`: remove fewer channels of its group
    from `prev` (binary search on the count); the best arena <= budget wins."""
    analysis = analyze(prev, ignored_layers)
    group = next(g for g in analysis.groups if g.name == record["group"])
    rng = np.random.default_rng(seed + record["step"])
    order = rng.permutation(group.channels)
    # record["removed"] channels fit (below low); search fewer.
    hi, fit = _fewest_that_fit(
        lambda k: remove_channels(prev, group.to_layer_indices(np.sort(order[:k])),
                                  analysis=analysis),
        arena_of, 0, int(record["removed"]), budget, low)
    record["removed"] = hi
    return fit or (current, exact)


def _fewest_that_fit(build, cost, lo, hi, budget, low):
    """Binary search on the number k in (lo, hi] of channels removed
    (``build(k)`` makes that model): the fewest whose ``cost`` (arena bytes,
    seconds) is <= `budget`, stopping at the first that is also >= `low`.
    Returns ``(k, (model, cost))`` of the last fit found, or ``(hi, None)``."""
    fit = None
    while hi - lo > 1:
        k = (lo + hi) // 2
        cand = build(k)
        a = cost(cand)
        if a <= budget:
            hi, fit = k, (cand, a)
            if a >= low:
                break
        else:
            lo = k
    return hi, fit


# -- measured latency budget (target_latency_ms) ---------------------------------

#: The returned model's measured latency must be within this fraction of the target.
LATENCY_TOLERANCE = TOLERANCE
#: Widths (fractions of a group's channels) at which the latency staircase is swept.
STAIRCASE_FRACTIONS = (0.75, 0.5, 0.25)
#: A latency drop between two widths larger than this fraction of the model's
#: latency counts as a step (smaller drops are noise or a gentle slope).
STEP_THRESHOLD = 0.02
#: Latency measurements per group for its staircase (sweep + refinement).
STAIRCASE_PROBES = 8
#: The planner measures at least every this many steps (the latency table's
#: prediction can be far off: on LiteRT narrower layers are not always faster).
LATENCY_CHECK_EVERY = 5


def latency_staircase(model, group, cost, analysis=None, min_channels: int = 1,
                      fractions: Sequence[float] = STAIRCASE_FRACTIONS,
                      threshold: float = STEP_THRESHOLD,
                      max_probes: int = STAIRCASE_PROBES) -> dict:
    """Latency against the width of one dependency group, and its steps.

    Kernels process channels in tiles (SIMD lanes, register blocks), so
    latency often falls in steps as a group narrows rather than smoothly:
    removing channels inside a tile saves nothing until the whole tile goes.
    The group is cut to ``fractions`` of its channels (a coarse sweep, other
    groups untouched) and each width priced with ``cost(model) -> ms``; every
    interval between two swept widths whose latency drops by more than
    ``threshold`` of the model's latency is bisected until the step is found
    between two adjacent widths (at most ``max_probes`` prices per group, the
    sweep included). A *step width* is the low side of a step: the widest
    width with the lower latency, i.e. the most channels one can keep for that
    latency. A gentle slope (no drop above the threshold between adjacent
    widths) gives no step widths. When the probes run out, the low end of an
    interval not yet bisected down to adjacent widths stands in for its step
    (a coarse step width: a swept or bisected width where latency was lower).

    Returns:
        ``{'points': [(width, ms), ...] (widest first, every width priced),
        'steps': [step widths, widest first]}``.

    Example:
        >>> stair = latency_staircase(model, group, budget.estimate)
        >>> stair["steps"]          # e.g. a kernel working in blocks of 8 channels
        [24, 16, 8]
    """
    if analysis is None:
        analysis = analyze(model)
    c = int(group.channels)
    memo = {}

    def t(w):
        if w not in memo:
            memo[w] = cost(model if w == c else remove_channels(
                model, group.to_layer_indices(range(w, c)), analysis=analysis))
        return memo[w]

    widths = sorted({c} | {min(c, max(int(min_channels), int(round(f * c))))
                           for f in fractions}, reverse=True)
    base = t(c)
    for w in widths:
        t(w)
    gap = float(threshold) * base
    todo = [(a, b) for a, b in zip(widths, widths[1:])]
    steps = []
    while todo:
        hi, lo = todo.pop(0)
        if memo[hi] - memo[lo] <= gap:
            continue
        if hi - lo == 1:
            steps.append(lo)
            continue
        if len(memo) >= max_probes:  # out of probes: the swept width stands in
            steps.append(lo)
            continue
        m = (hi + lo) // 2
        t(m)
        todo[:0] = [(hi, m), (m, lo)]
    return {"points": sorted(memo.items(), reverse=True), "steps": sorted(set(steps),
                                                                           reverse=True)}


def _next_step(widths, width, min_channels):
    """The widest step width below `width` (None if there is none)."""
    below = [w for w in widths if min_channels <= w < width]
    return max(below) if below else None


def plan_latency_pruning(model, target_latency_ms: float, latency_fn=None,
                         quantization: Optional[str] = "int8", seed: int = 0,
                         step_fraction: float = 0.1, min_channels: int = 1,
                         ignored_layers: Sequence[str] = (), reinit: bool = True,
                         repeats: int = 3, staircase: bool = True,
                         staircase_fractions: Sequence[float] = STAIRCASE_FRACTIONS,
                         staircase_probes: int = STAIRCASE_PROBES,
                         ) -> Tuple[keras.Model, List[dict]]:
    """Prunes until the model's *measured* latency is within
    `LATENCY_TOLERANCE` (10 %) below `target_latency_ms`, NetAdapt-style.

    First, for every prunable group, its latency staircase is measured on the
    deploy runtime (`latency_staircase`: ``latency_fn`` on the converted model
    at a sweep of widths; default LiteRT on this host, 1 thread, int8). That
    gives a latency table (ms saved per channel over the sweep) and the
    group's *step widths*, the widths just below which the kernels get no
    faster. Groups are drawn with probability proportional to the latency they
    still save; a drawn group with a step width below its current width is cut
    to that width (the widest width with the lower latency: no channel is given
    up without a latency gain, and no ``round_to`` is guessed), else by
    `step_fraction` of its channels. The latency is predicted from the table
    and measured (median of `repeats` calls, cached per flatbuffer) when the
    prediction is within 10 % of the target, and at least every
    `LATENCY_CHECK_EVERY` steps. A step that lands below 0.9 of
    the target is redone with fewer channels of that group (binary search; not
    after a cut to a step width, where fewer channels buy no latency) or with
    the next step width of another group instead, whichever lands in the window.

    The chosen model is finally timed interleaved with the original
    (`kprune.methods.device_budget.interleaved_ms`): ``steps[-1]`` has
    ``latency_ms_interleaved`` and ``reference_ms_interleaved``; their ratio
    is the speedup with the machine's drift cancelled to first order.

    Args:
        latency_fn: ``f(tflite_bytes) -> seconds`` for the deploy target (a
            phone or board); default
            `kprune.methods.device_budget.default_latency_fn`.
        quantization: conversion for the latency (``'int8'`` or None/float32).
        staircase: measure staircases and prefer step widths (True); False
            measures only the half-width table and cuts by `step_fraction`.
        staircase_fractions, staircase_probes: the sweep (fractions of each
            group's channels) and the prices per group (see `latency_staircase`).

    Raises:
        ValueError: a bad target, a `latency_fn` that fails or returns no
            positive seconds, a target below the fastest reachable model
            (every group at `min_channels`): the message gives that latency, or
            a target still missed when every group is at `min_channels` (where
            the smallest model is slower than the original, it is no floor).

    Example:
        >>> fast, steps = plan_latency_pruning(model, target_latency_ms=0.5)
        >>> steps[-1]["latency_ms"]
        0.48
        >>> steps[0]["step_widths"]["conv2"]
        [56, 48, 40, 32]
    """
    if isinstance(target_latency_ms, bool) or not isinstance(target_latency_ms, numbers.Real) \
            or not target_latency_ms > 0:
        raise ValueError(f"target_latency_ms={target_latency_ms!r} must be a positive number "
                         f"of milliseconds (the measured latency the model must reach)")
    budget = DeviceBudget("latency_ms", target_latency_ms, latency_fn=latency_fn,
                          quantization=quantization, repeats=repeats)
    _check_step_options(step_fraction, min_channels)
    min_channels = int(min_channels)
    target, low = budget.limit, budget.low
    ignored_layers = tuple(ignored_layers or ())
    lat = budget.estimate  # ms, cached by flatbuffer
    base = measure(model)
    analysis = analyze(model, ignored_layers)
    l0 = lat(model)
    steps = [{"step": 0, "group": None, "removed": 0, **base, "latency_ms": l0,
              "widths": _widths(analysis), "reduction": _reductions(base, base)}]
    if l0 <= target:
        steps[0]["note"] = "the model already meets the latency target"
        return (reinitialize(model, seed) if reinit else model), steps
    try:
        fastest = lat(minimal_model(model, min_channels, ignored_layers))
    except ValueError as err:
        fastest = None  # e.g. TFLM aborts on a 1-channel model's degenerate softmax
        steps[0]["note"] = f"the fastest reachable model could not be timed: {err}"
    if fastest is not None and fastest >= l0:  # not a floor: 1-channel kernels can be slow
        steps[0]["note"] = (f"the smallest reachable model measures {fastest:.4g} ms, not "
                            f"faster than the model ({l0:.4g} ms): no floor known")
    elif fastest is not None and fastest > target:
        raise ValueError(
            f"target_latency_ms={target_latency_ms} cannot be reached: the fastest "
            f"reachable model (every prunable group at min_channels={min_channels}) "
            f"measures {fastest:.4g} ms (the model: {l0:.4g} ms); ask for at least that")
    # The latency table and staircases, measured on the deploy runtime.
    table, stairs = {}, {}
    for g in analysis.groups:
        if g.channels <= min_channels:
            continue
        fractions = staircase_fractions if staircase else (0.5,)
        try:
            st = latency_staircase(model, g, lat, analysis, min_channels, fractions,
                                   max_probes=staircase_probes if staircase else 2)
        except ValueError:
            table[g.name] = 0.0  # this cut cannot be timed (e.g. degenerate on TFLM)
            continue
        (w0, t0), (w1, t1) = st["points"][0], st["points"][-1]
        table[g.name] = max(t0 - t1, 0.0) / max(w0 - w1, 1)  # ms per channel removed
        if staircase:
            stairs[g.name] = st
    steps[0]["latency_table_ms_per_channel"] = dict(table)
    if staircase:
        steps[0]["latency_staircase"] = {k: [list(p) for p in v["points"]]
                                         for k, v in stairs.items()}
        steps[0]["step_widths"] = {k: list(v["steps"]) for k, v in stairs.items()}
    rng = np.random.default_rng(seed)
    current, predicted, scale, unchecked = model, l0, 1.0, 0
    while True:
        analysis = analyze(current, ignored_layers)
        cands = [g for g in analysis.groups if g.channels > min_channels]
        if not cands:
            last = [s_["latency_ms"] for s_ in steps if "latency_ms" in s_]
            raise ValueError(
                f"target_latency_ms={target_latency_ms} was not reached: every group is at "
                f"min_channels={min_channels} and the last measured latency is "
                f"{last[-1]:.4g} ms (the model: {l0:.4g} ms); on this runtime narrower "
                f"layers are not always faster: ask for more")
        w = np.array([table.get(g.name, 0.0) * g.channels for g in cands]) + 1e-12
        group = cands[int(rng.choice(len(cands), p=w / w.sum()))]
        order = rng.permutation(group.channels)
        step_widths = stairs.get(group.name, {}).get("steps", [])
        to = _next_step(step_widths, group.channels, min_channels)
        k = (group.channels - to) if to is not None else min(
            max(1, int(np.floor(step_fraction * group.channels + 0.5))),
            group.channels - min_channels)

        def cut(n, group=group, order=order, analysis=analysis, current=current):
            return remove_channels(current, group.to_layer_indices(np.sort(order[:n])),
                                   analysis=analysis)

        nxt = cut(k)
        predicted -= scale * table.get(group.name, 0.0) * k
        record = {"step": len(steps), "group": group.name, "removed": int(k),
                  "on_step": to is not None}
        unchecked += 1
        if predicted <= 1.1 * target or unchecked >= LATENCY_CHECK_EVERY:
            unchecked = 0
            measured = lat(nxt)
            scale *= max(l0 - measured, 1e-9) / max(l0 - predicted, 1e-9) if predicted < l0 \
                else 1.0
            predicted = measured
            record["latency_ms"] = measured
            if measured <= target:
                if measured < low:  # too far: fewer channels, or another group's step
                    nxt, measured, how = _land_in_window(
                        current, analysis, group, cut, k, to is not None, stairs, lat,
                        target, low, min_channels, nxt, measured)
                    record.update(how, latency_ms=measured)
                values = measure(nxt)
                record.update(values, reduction=_reductions(values, base),
                              widths=_widths(analyze(nxt, ignored_layers)))
                ref_ms, new_ms = interleaved_ms(budget.latency_fn,
                                                [budget.flatbuffer(model),
                                                 budget.flatbuffer(nxt)],
                                                max(repeats, 5))
                record.update(latency_ms_interleaved=new_ms, reference_ms_interleaved=ref_ms)
                steps.append(record)
                return (reinitialize(nxt, seed) if reinit else nxt), steps
        steps.append(record)
        current = nxt


def _land_in_window(current, analysis, group, cut, k, on_step, stairs, lat, target, low,
                    min_channels, nxt, measured):
    """The cut of `k` channels of `group` from `current` measured `measured`
    < `low`: find a cut that lands in [low, target]. First fewer channels of
    the same group by binary search (not when the cut was to a step width:
    there is no step between it and the current width, so fewer channels buy
    no latency), then the next step width of each other group. Returns (model,
    ms, record fields): the first cut in the window, else the slowest found
    within the target."""
    best = (nxt, measured, {"removed": int(k)})
    if not on_step and k > 1:
        hi, fit = _fewest_that_fit(cut, lat, 0, k, target, low)
        if fit is not None:
            best = (fit[0], fit[1], {"removed": int(hi)})
            if fit[1] >= low:
                return best
    for g in analysis.groups:  # the next step of another group instead
        if g.name == group.name or g.channels <= min_channels:
            continue
        to = _next_step(stairs.get(g.name, {}).get("steps", []), g.channels, min_channels)
        if to is None:
            continue
        cand = remove_channels(current, g.to_layer_indices(range(to, g.channels)),
                               analysis=analysis)
        ms = lat(cand)
        if best[1] < ms <= target:
            best = (cand, ms, {"group": g.name, "removed": int(g.channels - to),
                               "on_step": True})
            if ms >= low:
                return best
    return best


# -- the method behind kprune.prune(method='complexity') ------------------------

#: Options only the complexity method takes (declared with its registration).
COMPLEXITY_OPTIONS = {
    "mode": None,                 # 'params' (PA, default) | 'flops' (FA) | 'memory' (MA)
    "step_fraction": 0.1,         # fraction of a drawn group's channels per step
    "target_params": None,        # absolute budgets (any of them, with or without target)
    "target_macs": None,
    "target_memory_bytes": None,
    "memory_dtype": "float32",    # activations the memory budget counts: float32 | int8
}


def _targets_from_run(run, model):
    """run.target + options -> (mode, target fraction, absolute budgets)."""
    opts = run.method_options
    mode = opts["mode"]
    absolute = {a: opts[a] for a in ABSOLUTE_TARGETS}
    target = None
    if run.target is not None:
        kind, value = run.target
        resource = {"params_reduction": "params",
                    "macs_reduction": "flops"}.get(kind)
        if resource is None:  # a plain number: fraction of the mode's complexity
            target = value
        elif mode is None or normalize_mode(mode) == resource:
            mode, target = resource, value
        else:  # weights by `mode`, budget on another resource
            arg = "target_params" if resource == "params" else "target_macs"
            if absolute[arg] is not None:
                raise ValueError(f"give either target={{{kind!r}: {value}}} or {arg}=, not both")
            base = measure(model)[resource]
            absolute[arg] = base * (1.0 - value)
    if mode is None:
        given = {ABSOLUTE_TARGETS[a] for a, v in absolute.items() if v is not None}
        mode = given.pop() if (len(given) == 1 and target is None) else "params"
    return normalize_mode(mode), target, absolute


@register_method("complexity", options=COMPLEXITY_OPTIONS,
                 defaults=MethodDefaults(criterion="l1", target=None,
                                         number_means="the fraction of complexity to remove",
                                         budget_targets=False))
def complexity(run):
    """Complexity-driven pruning through `kprune.prune` (method 'complexity').

    Plans the pruned architecture with `plan_complexity_pruning`, re-initialises
    it (seeded) and trains it from scratch for ``epochs`` epochs with the
    model's compiled loss/metrics and a fresh optimizer (or ``fit_fn``). No
    ranking, no fine-tuning of the original weights.

    Targets: ``target=<fraction>`` of the ``mode``'s complexity to remove
    (``mode`` 'params' (PA, default), 'flops' (FA, MACs) or 'memory' (MA, peak
    activation bytes)); ``{'params_reduction': r}`` / ``{'macs_reduction': r}``;
    absolute budgets ``target_params=``, ``target_macs=``,
    ``target_memory_bytes=`` (``memory_dtype='int8'`` to count int8
    activations); ``target_arena_bytes=`` (the int8 model's TFLite-Micro
    tensor arena, priced by `kprune.bench.arena_estimate` and verified on the
    runtime: the result lies in [0.9 N, N]; see `plan_arena_pruning`);
    ``mode='latency'`` with ``target_latency_ms=`` (see `plan_latency_pruning`).
    Other options: ``step_fraction`` (0.1), ``seed``, ``min_channels``,
    ``ignored_layers``.

    History: round 0 is the model as given (its validation accuracy as
    passed in); round 1 is the pruned architecture trained from scratch, with
    ``memory`` (peak activation bytes), ``reduction`` ({params, flops,
    memory}), the planning ``steps``, ``plan_time_s`` and ``train_time_s``.

    Example:
        >>> result = kprune.prune(model, "complexity", mode="memory", target=0.5,
        ...                       train_data=(x, y), val_data=(xv, yv), epochs=5)
        >>> result.final["reduction"]["memory"] >= 0.5
        True
    """
    if run.state.last_round >= 1:  # resumed after the trained round
        return run.finish(run.state.reason or "complexity-driven pruning done")
    opts = run.method_options
    original = run.current
    arena_budget = run.opts.target_arena_bytes
    latency_target = run.opts.target_latency_ms
    if opts["mode"] == "latency" or latency_target is not None:
        return _complexity_latency(run, original, latency_target)
    if arena_budget is not None:
        mode, target, absolute = normalize_mode(opts["mode"] or "memory"), None, {}
    else:
        mode, target, absolute = _targets_from_run(run, original)
    seed = run.opts.seed if run.opts.seed is not None else 0
    t0 = time.time()
    pruned, steps = plan_complexity_pruning(
        original, mode, target=target, step_fraction=opts["step_fraction"],
        seed=seed, min_channels=run.opts.min_channels,
        ignored_layers=run.opts.ignored_layers, memory_dtype=opts["memory_dtype"],
        reinit=True, target_arena_bytes=arena_budget, **absolute)
    plan_time = time.time() - t0
    t1 = time.time()
    out = run.trainer.fit(pruned, run.epochs)
    train_time = time.time() - t1
    base_widths = steps[0]["widths"]
    final_widths = steps[-1]["widths"]
    removed = {g: base_widths[g] - final_widths.get(g, 0) for g in base_widths
               if base_widths[g] != final_widths.get(g, 0)}
    info = {"mode": mode, "target": target,
            "budgets": {k: v for k, v in absolute.items() if v is not None},
            "arena": steps[-1].get("arena"), "arena_measured": steps[-1].get("arena_measured"),
            "memory": steps[-1]["memory"], "memory_dtype": opts["memory_dtype"],
            "reduction": steps[-1]["reduction"], "steps": steps,
            "plan_time_s": plan_time, "train_time_s": train_time,
            "epochs": run.epochs, "losses": out.losses}
    if arena_budget is not None:  # the trained model, as it will be deployed
        info["arena_measured"] = measured_arena(pruned)
        info["arena_within_budget"] = info["arena_measured"] <= arena_budget
    report = dict(info["budgets"])
    if arena_budget is not None:
        report["target_arena_bytes"] = arena_budget
    if target is not None:
        report[f"{mode}_reduction"] = target
    entry = RoundEntry(round=1, status=RoundStatus.ACCEPTED, removed=int(sum(removed.values())),
                       removed_by_group=removed, info=info, **run_measure(pruned))
    acc = float("nan") if out.nan else run.evaluate(pruned)
    entry.time_s = time.time() - t0
    if out.nan or acc != acc:
        entry.status, entry.val_accuracy, entry.feasible = RoundStatus.NAN_DISCARDED, None, False
        run.commit(entry, None, accept=False)
        return run.finish("training the pruned architecture from scratch gave a "
                          "NaN loss; lower the learning rate", report_target=report)
    entry.val_accuracy, entry.feasible = acc, True
    run.commit(entry, Proposal(pruned, removed, {}), best=True)
    return run.finish(f"{mode} mode: {len(steps) - 1} steps, then trained "
                      f"from scratch for {run.epochs} epoch(s)", report_target=report)


def _complexity_latency(run, original, latency_target):
    if latency_target is None:
        raise ValueError("mode='latency' needs target_latency_ms=<milliseconds> (the measured "
                         "latency the pruned model must reach)")
    opts = run.method_options
    seed = run.opts.seed if run.opts.seed is not None else 0
    t0 = time.time()
    pruned, steps = plan_latency_pruning(
        original, latency_target, latency_fn=run.opts.latency_fn,
        quantization=run.opts.latency_quantization, seed=seed,
        step_fraction=opts["step_fraction"], min_channels=run.opts.min_channels,
        ignored_layers=run.opts.ignored_layers, reinit=True)
    out = run.trainer.fit(pruned, run.epochs)
    info = {"mode": "latency", "target_latency_ms": latency_target,
            "latency_ms": steps[-1]["latency_ms"], "steps": steps,
            "epochs": run.epochs, "losses": out.losses}
    acc = float("nan") if out.nan else run.evaluate(pruned)
    entry = RoundEntry(round=1, status=RoundStatus.ACCEPTED, val_accuracy=acc,
                       feasible=acc == acc, info=info, **run_measure(pruned))
    entry.time_s = time.time() - t0
    run.commit(entry, Proposal(pruned, {}, {}), best=True)
    return run.finish(f"latency mode: {len(steps) - 1} steps to "
                      f"{steps[-1]['latency_ms']:.4g} ms, then trained from scratch",
                      report_target={"target_latency_ms": latency_target})
