"""The params / MACs / memory planner (PA / FA / MA): a seeded weighted
random draw of groups, a step at a time, until the budget is met
(`plan_complexity_pruning`, `complexity_steps`).
"""

import numbers
import time
from typing import List, Optional, Sequence, Tuple

import keras
import numpy as np

from kprune.core.complexity_weights import complexity_weights, normalize_mode
from kprune.core.dependency import analyze
from kprune.core.surgery import remove_channels
from kprune.methods.complexity.resources import (ABSOLUTE_TARGETS, UNITS, check_step_options,
                                                 reductions,
                                                 reinitialize, resources, widths_of)
from kprune.methods.device_budget import minimal_model


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
                f"{UNITS[resource]} (the budget the pruned model must fit)")
        goals.append(_Goal(resource, float(value), arg, value))
    if not goals:
        raise ValueError(
            "give a target: target=<fraction to remove> of the mode's "
            "complexity, or an absolute budget target_params=, target_macs= "
            "or target_memory_bytes=")
    return goals


def _resolve_mode(mode, absolute):
    if mode is not None:
        return normalize_mode(mode)
    given = [ABSOLUTE_TARGETS[a] for a, v in absolute.items() if v is not None]
    if len(set(given)) == 1:
        return given[0]
    raise ValueError(
        "mode is required: 'params' (PA), 'macs' (FA) or 'memory' (MA) "
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
                f"({base[r]:,} -> {best:,} {UNITS[r]}); ask for at most that")
        raise ValueError(
            f"{goal.argument}={goal.requested} cannot be reached: with at "
            f"least min_channels={min_channels} channel(s) left in every "
            "prunable group (and unprunable layers kept) the smallest "
            f"reachable value is {best:,} {UNITS[r]} (the model has "
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
                            ) -> Tuple[keras.Model, List[dict]]:
    """Chooses the pruned architecture by complexity-weighted random draws.

    Args:
        model: a Functional or Sequential Keras model (left unchanged).
        mode: 'params' (PA), 'macs' (FA) or 'memory' (MA): which complexity
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

    Returns:
        (pruned model, steps): `steps[0]` is the original model, one entry per
        step after it, each with the drawn group, channels removed, the
        measured params / MACs / memory, the reductions and the
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
    absolute = {"target_params": target_params, "target_macs": target_macs,
                "target_memory_bytes": target_memory_bytes}
    mode = _resolve_mode(mode, absolute)
    check_step_options(step_fraction, min_channels)
    min_channels = int(min_channels)
    ignored_layers = tuple(ignored_layers or ())
    base = resources(model, memory_dtype)
    goals = _goals(mode, base, target, absolute)
    analysis = analyze(model, ignored_layers)
    steps = [{"step": 0, "group": None, "removed": 0, **base,
              "reduction": reductions(base, base),
              "widths": widths_of(analysis), "time_s": 0.0,
              "goals": [g.to_dict() for g in goals]}]
    if all(goal.met(base) for goal in goals):
        return (reinitialize(model, seed) if reinit else model), steps
    if not analysis.groups:
        raise ValueError(
            f"model '{model.name}' has no prunable channel group (check "
            "ignored_layers and unsupported layers); nothing can be removed")
    _check_reachable(goals, resources(minimal_model(model, min_channels,
                                                  ignored_layers), memory_dtype),
                     base, min_channels)
    for current, record in complexity_steps(model, mode, seed=seed,
                                            step_fraction=step_fraction,
                                            min_channels=min_channels,
                                            ignored_layers=ignored_layers,
                                            memory_dtype=memory_dtype):
        record["reduction"] = reductions(record, base)
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
    ``macs`` (batch 1), ``memory`` (peak activation bytes), ``widths`` of every
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
    check_step_options(step_fraction, min_channels)
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
        values = resources(current, memory_dtype, graph=analysis.graph)
        step += 1
        yield current, {"step": step, "group": group.name, "removed": int(k),
                        "channels_before": int(n),
                        "weight": float(weights.get(group.index, 0.0)),
                        **values, "widths": widths_of(analysis),
                        "time_s": time.perf_counter() - start}
