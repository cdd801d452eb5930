"""The TFLite-Micro arena planner (``target_arena_bytes``): widths chosen
on the int8 model's arena estimate, verified on the runtime
(`plan_arena_pruning`)."""

import numbers
import time
from typing import List, Sequence, Tuple

import keras
import numpy as np

from kprune.core.complexity_weights import complexity_weights, normalize_mode
from kprune.core.dependency import analyze
from kprune.core.surgery import remove_channels
from kprune.methods.complexity.draw import complexity_steps
from kprune.methods.complexity.resources import check_step_options, reductions, reinitialize, resources, widths_of
from kprune.methods.device_budget import (TOLERANCE, flatbuffer_for, measured_arena,
                                          minimal_model)


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
    from kprune.runtime.arena import estimate

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
    check_step_options(step_fraction, min_channels)
    min_channels = int(min_channels)
    ignored_layers = tuple(ignored_layers or ())
    base = resources(model, "int8")
    base_arena = arena_of(model)
    analysis = analyze(model, ignored_layers)
    steps = [{"step": 0, "group": None, "removed": 0, **base,
              "reduction": reductions(base, base), "widths": widths_of(analysis),
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
        record["reduction"] = reductions(record, base)
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
            values = resources(current, "int8")
            record.update(values, reduction=reductions(values, base),
                          widths=widths_of(analyze(current, ignored_layers)))
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
