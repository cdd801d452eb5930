"""The method behind ``kprune.prune(method='complexity')``: plan the
architecture with one of the planners, re-initialise it and train it from
scratch."""

import dataclasses
import time
from typing import Optional

from kprune.core.complexity_weights import MODES, normalize_mode
from kprune.methods.checks import check_choice, check_fraction, check_positive
from kprune.methods.complexity.arena import plan_arena_pruning
from kprune.methods.complexity.draw import plan_complexity_pruning
from kprune.methods.complexity.latency import plan_latency_pruning
from kprune.methods.complexity.resources import ABSOLUTE_TARGETS, UNITS, resources
from kprune.methods.device_budget import measured_arena
from kprune.methods.options import MethodOptions, OptionContext
from kprune.methods.proposer import Proposal
from kprune.methods.registry import MethodDefaults, register_method
from kprune.methods.state import RoundStatus


@dataclasses.dataclass(frozen=True)
class ComplexityOptions(MethodOptions):
    """Options only the complexity method takes."""

    mode: Optional[str] = None    # 'params' (PA, default) | 'macs' (FA) | 'memory' (MA)
                                  # | 'latency' (with target_latency_ms)
    step_fraction: float = 0.1    # fraction of a drawn group's channels per step
    target_params: Optional[float] = None  # absolute budgets (with or without target)
    target_macs: Optional[float] = None
    target_memory_bytes: Optional[float] = None
    memory_dtype: str = "float32"  # activations the memory budget counts: float32 | int8

    def validate(self, ctx: OptionContext) -> "ComplexityOptions":
        mode = self.mode
        if mode is not None:
            if not isinstance(mode, str):
                raise TypeError(f"mode must be a string, one of {MODES + ('latency',)}, "
                                f"got {mode!r}")
            mode = "latency" if mode.lower() == "latency" else normalize_mode(mode)
        step = check_fraction("step_fraction", self.step_fraction, high_closed=True,
                              fix="; the fraction of a drawn group's channels one step "
                                  "removes")
        for arg in ABSOLUTE_TARGETS:
            value = getattr(self, arg)
            if value is not None:
                check_positive(arg, value, fix=f"; a number of {UNITS[ABSOLUTE_TARGETS[arg]]} "
                                               "the pruned model must fit")
        check_choice("memory_dtype", self.memory_dtype, ("float32", "int8"),
                     "'float32' or 'int8' (the activation type the deployed model runs with)")
        common = ctx.options
        latency = common is not None and common.target_latency_ms is not None
        if mode == "latency" and not latency:
            raise ValueError("mode='latency' needs target_latency_ms=<milliseconds> (the "
                             "measured latency the pruned model must reach)")
        if latency and mode not in (None, "latency"):
            raise ValueError(f"target_latency_ms= plans on measured latency: drop "
                             f"mode={self.mode!r} or pass mode='latency'")
        given = [a for a in ABSOLUTE_TARGETS if getattr(self, a) is not None]
        if (latency or (common is not None and common.target_arena_bytes is not None)) and \
                given:
            raise ValueError(f"{given[0]}= cannot be combined with a device budget "
                             "(target_arena_bytes= / target_latency_ms=): give one budget")
        if latency and ctx.target is not None:
            raise ValueError("give either target= or target_latency_ms=, not both")
        if common is not None and common.target_arena_bytes is not None and \
                ctx.target is not None:
            raise ValueError("give either target= or target_arena_bytes=, not both "
                             "(the arena budget is the complexity method's target)")
        if self.memory_dtype != "float32" and self.target_memory_bytes is None and \
                mode != "memory":
            raise ValueError(f"memory_dtype={self.memory_dtype!r} counts the activations of "
                             "a memory budget: use it with mode='memory' or "
                             "target_memory_bytes=, or drop it")
        return dataclasses.replace(self, mode=mode, step_fraction=step)


def _targets_from_run(run, model):
    """run.target + options -> (mode, target fraction, absolute budgets)."""
    opts = run.method_options
    mode = opts.mode
    absolute = {a: getattr(opts, a) for a in ABSOLUTE_TARGETS}
    target = None
    if run.goal.target is not None:
        kind, value = run.goal.target
        resource = {"params_reduction": "params",
                    "macs_reduction": "macs"}.get(kind)
        if resource is None:  # a plain number: fraction of the mode's complexity
            target = value
        elif mode is None or normalize_mode(mode) == resource:
            mode, target = resource, value
        else:  # weights by `mode`, budget on another resource
            arg = "target_params" if resource == "params" else "target_macs"
            if absolute[arg] is not None:
                raise ValueError(f"give either target={{{kind!r}: {value}}} or {arg}=, not both")
            base = resources(model)[resource]
            absolute[arg] = base * (1.0 - value)
    if mode is None:
        given = {ABSOLUTE_TARGETS[a] for a, v in absolute.items() if v is not None}
        mode = given.pop() if (len(given) == 1 and target is None) else "params"
    return normalize_mode(mode), target, absolute


@register_method("complexity", options=ComplexityOptions,
                 defaults=MethodDefaults(target=None,
                                         number_means="the fraction of complexity to remove",
                                         budget_targets=False))
def complexity(run):
    """Complexity-driven pruning through `kprune.prune` (method 'complexity').

    Plans the pruned architecture with `plan_complexity_pruning`, re-initialises
    it (seeded) and trains it from scratch for ``epochs`` epochs with the
    model's compiled loss/metrics and a fresh optimizer (or ``fit_fn``). No
    ranking, no fine-tuning of the original weights.

    Targets: ``target=<fraction>`` of the ``mode``'s complexity to remove
    (``mode`` 'params' (PA, default), 'macs' (FA, MACs) or 'memory' (MA, peak
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
    ``memory`` (peak activation bytes), ``reduction`` ({params, macs,
    memory}), the planning ``steps``, ``plan_time_s`` and ``train_time_s``.

    Example:
        >>> result = kprune.prune(model, "complexity", mode="memory", target=0.5,
        ...                       train_data=(x, y), val_data=(xv, yv), epochs=5)
        >>> result.final["reduction"]["memory"] >= 0.5
        True
    """
    if run.record.next_round > 1:  # resumed after the trained round
        return run.finish(run.record.reason or "complexity-driven pruning done")
    opts, common = run.method_options, run.opts
    original = run.record.current
    seed = common.seed if common.seed is not None else 0
    t0 = time.time()
    if opts.mode == "latency" or common.target_latency_ms is not None:
        pruned, steps = plan_latency_pruning(
            original, common.target_latency_ms, latency_fn=common.latency_fn,
            quantization=common.latency_quantization, seed=seed,
            step_fraction=opts.step_fraction, min_channels=common.min_channels,
            ignored_layers=common.ignored_layers, reinit=True)
        info = {"mode": "latency", "target_latency_ms": common.target_latency_ms,
                "latency_ms": steps[-1]["latency_ms"], "steps": steps}
        report = {"target_latency_ms": common.target_latency_ms}
        done = (f"latency mode: {len(steps) - 1} steps to {steps[-1]['latency_ms']:.4g} ms, "
                "then trained from scratch")
        removed = {}
    else:
        arena_budget = common.target_arena_bytes
        if arena_budget is not None:
            mode, target, absolute = normalize_mode(opts.mode or "memory"), None, {}
        else:
            mode, target, absolute = _targets_from_run(run, original)
        if arena_budget is not None:
            pruned, steps = plan_arena_pruning(
                original, arena_budget, mode=mode, step_fraction=opts.step_fraction,
                seed=seed, min_channels=common.min_channels,
                ignored_layers=common.ignored_layers, reinit=True)
        else:
            pruned, steps = plan_complexity_pruning(
                original, mode, target=target, step_fraction=opts.step_fraction,
                seed=seed, min_channels=common.min_channels,
                ignored_layers=common.ignored_layers, memory_dtype=opts.memory_dtype,
                reinit=True, **absolute)
        base_widths, final_widths = steps[0]["widths"], steps[-1]["widths"]
        removed = {g: base_widths[g] - final_widths.get(g, 0) for g in base_widths
                   if base_widths[g] != final_widths.get(g, 0)}
        info = {"mode": mode, "target": target,
                "budgets": {k: v for k, v in absolute.items() if v is not None},
                "arena": steps[-1].get("arena"),
                "arena_measured": steps[-1].get("arena_measured"),
                "memory": steps[-1]["memory"], "memory_dtype": opts.memory_dtype,
                "reduction": steps[-1]["reduction"], "steps": steps}
        report = dict(info["budgets"])
        if arena_budget is not None:
            report["target_arena_bytes"] = arena_budget
        if target is not None:
            report[f"{mode}_reduction"] = target
        done = (f"{mode} mode: {len(steps) - 1} steps, then trained from scratch for "
                f"{run.epochs} epoch(s)")
    info["plan_time_s"] = time.time() - t0
    t1 = time.time()
    out = run.train(pruned, run.epochs)
    info.update({"train_time_s": time.time() - t1, "epochs": run.epochs,
                 "losses": out.losses})
    if common.target_arena_bytes is not None:  # the trained model, as it will be deployed
        info["arena_measured"] = measured_arena(pruned)
        info["arena_within_budget"] = info["arena_measured"] <= common.target_arena_bytes
    entry = run.meter.entry(1, RoundStatus.ACCEPTED, pruned, removed=int(sum(removed.values())),
                            removed_by_group=removed, info=info)
    # One NaN rule for every path (`Run.judge`): a NaN loss or accuracy
    # discards the round; the model as given is returned.
    run.judge(entry, float("nan") if out.nan else run.evaluate(pruned))
    entry.time_s = time.time() - t0
    if entry.status is RoundStatus.NAN_DISCARDED:
        run.commit(entry, None, accept=False)
        return run.finish("training the pruned architecture from scratch gave a "
                          "NaN loss; lower the learning rate", report_target=report)
    entry.feasible = True
    run.commit(entry, Proposal(pruned, removed, {}), best=True)
    return run.finish(done, report_target=report)
