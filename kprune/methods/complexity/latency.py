"""The measured-latency planner (``mode='latency'``, ``target_latency_ms``):
widths picked on the measured latency staircase of each group
(`latency_staircase`, `plan_latency_pruning`)."""

import numbers
from typing import List, Optional, Sequence, Tuple

import keras
import numpy as np

from kprune.core.dependency import analyze
from kprune.core.surgery import remove_channels
from kprune.methods.complexity.arena import _fewest_that_fit
from kprune.methods.complexity.resources import check_step_options, reductions, reinitialize, resources, widths_of
from kprune.methods.device_budget import DeviceBudget, TOLERANCE, interleaved_ms, minimal_model


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
                      max_probes: int = STAIRCASE_PROBES, at_width=None) -> dict:
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
    ``at_width(w) -> ms``, when given, prices the group at width ``w`` instead
    of a surgery and `cost` (`plan_latency_pruning` passes a re-widthed
    flatbuffer, `kprune.runtime.resize.WidthMap`: no conversion).

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
        if w not in memo and at_width is not None:
            memo[w] = at_width(w)
        if w not in memo:
            # measured only: the plain graph (no class restoring) is enough
            memo[w] = cost(model if w == c else remove_channels(
                model, group.to_layer_indices(range(w, c)), analysis=analysis,
                keep_classes=False))
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
                         staircase_probes: int = STAIRCASE_PROBES, rewidth: bool = True,
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

    By default no candidate is converted: the original flatbuffer is
    re-widthed (`rewidth`); three conversions in all instead of one per
    candidate (MobileNetV2 0.35 / 96: 786 s -> 228 s of planning, the latter
    on a machine 5.7x slower; BENCHMARKS.md, Device budgets).

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
        rewidth: price candidates on the original flatbuffer re-widthed
            (`kprune.runtime.resize.WidthMap`: two conversions in all, the
            model and a probe, then every staircase point and search step
            without the converter; the chosen model is converted and measured
            at the end). False, or a graph the re-widthing cannot follow
            (``steps[0]['rewidth_note']`` says why), converts every candidate.
            ``steps[0]['planner']`` counts conversions and pricings.

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
    check_step_options(step_fraction, min_channels)
    min_channels = int(min_channels)
    target, low = budget.limit, budget.low
    ignored_layers = tuple(ignored_layers or ())
    lat = budget.estimate  # ms, cached by flatbuffer
    base = resources(model)
    analysis = analyze(model, ignored_layers)
    flat0 = budget.flatbuffer(model)
    l0 = lat(flat0)
    steps = [{"step": 0, "group": None, "removed": 0, **base, "latency_ms": l0,
              "widths": widths_of(analysis), "reduction": reductions(base, base)}]
    if l0 <= target:
        steps[0]["note"] = "the model already meets the latency target"
        return (reinitialize(model, seed) if reinit else model), steps
    wm = None
    steps[0]["planner"] = {"rewidth": False}
    if rewidth:
        wm, why = _width_map(model, analysis, budget, flat0, min_channels)
        if wm is None:
            steps[0]["rewidth_note"] = (f"converting every candidate: the flatbuffer cannot "
                                        f"be re-widthed ({why})")
    try:
        fastest = lat(wm.resize({g.name: min(min_channels, g.channels)
                                 for g in analysis.groups}) if wm is not None
                      else minimal_model(model, min_channels, ignored_layers))
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
        at_width = None if wm is None else (
            lambda w, name=g.name: lat(wm.resize({name: w})))
        try:
            st = latency_staircase(model, g, lat, analysis, min_channels, fractions,
                                   max_probes=staircase_probes if staircase else 2,
                                   at_width=at_width)
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
    if wm is not None:
        steps[0]["planner"]["rewidth"] = True
        return _plan_on_widths(model, analysis, wm, budget, flat0, table, stairs, steps,
                               target_latency_ms, min_channels, step_fraction, seed, reinit,
                               repeats, ignored_layers)
    rng = np.random.default_rng(seed)
    current, predicted, scale, unchecked = model, l0, 1.0, 0
    while True:
        analysis = analyze(current, ignored_layers)
        cands = [g for g in analysis.groups if g.channels > min_channels]
        if not cands:
            raise _not_reached(target_latency_ms, min_channels, steps, l0)
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
                values = resources(nxt)
                record.update(values, reduction=reductions(values, base),
                              widths=widths_of(analyze(nxt, ignored_layers)))
                ref_ms, new_ms = interleaved_ms(budget.latency_fn,
                                                [budget.flatbuffer(model),
                                                 budget.flatbuffer(nxt)],
                                                max(repeats, 5))
                record.update(latency_ms_interleaved=new_ms, reference_ms_interleaved=ref_ms)
                steps.append(record)
                steps[0]["planner"].update(conversions=budget.conversions,
                                           pricings=budget.pricings,
                                           convert_s=budget.seconds["convert"],
                                           price_s=budget.seconds["price"])
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


def _width_map(model, analysis, budget, flat0, min_channels):
    """(`kprune.runtime.resize.WidthMap` of `model`'s flatbuffer `flat0`, None)
    from one probe conversion, or (None, why) when the re-widthing cannot
    follow the graph."""
    from kprune.runtime.resize import WidthMap, probe_widths

    channels = {g.name: int(g.channels) for g in analysis.groups
                if g.channels > min_channels}
    if not channels:
        return None, "no group can shrink"
    try:
        probe = probe_widths(channels, min_channels)
        removal = {}
        for g in analysis.groups:
            if g.name in probe:
                removal.update(g.to_layer_indices(range(probe[g.name], g.channels)))
        flat_p = budget.flatbuffer(remove_channels(model, removal, analysis=analysis))
        return WidthMap.infer(flat0, flat_p, channels, probe), None
    except ValueError as err:
        return None, str(err)


#: Searches again after the converted result, timed interleaved with the
#: original, misses the window (each costs one conversion): toward a target
#: scaled by interleaved / re-widthed latency.
REWIDTH_CORRECTIONS = 2


def _plan_on_widths(model, analysis, wm, budget, flat0, table, stairs, steps,
                    target_latency_ms, min_channels, step_fraction, seed, reinit, repeats,
                    ignored_layers):
    """`plan_latency_pruning`'s search on widths: each candidate is the
    original flatbuffer re-widthed (`wm.resize`) and priced with
    `budget.estimate`; channels are cut from the original model once, at the
    end, and that model converted and timed interleaved with the original
    (`interleaved_ms`: long runs, the verdict). If that misses the window,
    the search aims at a target scaled by interleaved / re-widthed latency,
    going on from there (too slow) or starting again (too fast), at most
    `REWIDTH_CORRECTIONS` times."""
    lat = budget.estimate
    target, low = budget.limit, budget.low
    l0 = steps[0]["latency_ms"]
    base = {k: steps[0][k] for k in resources(model)}
    rng = np.random.default_rng(seed)
    groups = {g.name: g for g in analysis.groups}
    widths = {n: int(g.channels) for n, g in groups.items()}
    kept = {n: np.arange(g.channels) for n, g in groups.items()}
    scale, corrections = 1.0, 0
    while True:
        cands = [n for n in groups if widths[n] > min_channels]
        if not cands:
            raise _not_reached(target_latency_ms, min_channels, steps, l0)
        w = np.array([table.get(n, 0.0) * widths[n] for n in cands]) + 1e-12
        name = cands[int(rng.choice(len(cands), p=w / w.sum()))]
        order = rng.permutation(widths[name])
        to = _next_step(stairs.get(name, {}).get("steps", []), widths[name], min_channels)
        k = (widths[name] - to) if to is not None else min(
            max(1, int(np.floor(step_fraction * widths[name] + 0.5))),
            widths[name] - min_channels)

        def cut(n, name=name):
            return wm.resize({**widths, name: widths[name] - n})

        t_hi, t_lo = scale * target, scale * low
        measured = lat(cut(k))
        record = {"step": len(steps), "group": name, "removed": int(k),
                  "on_step": to is not None, "latency_ms": measured}
        chosen = (name, int(k), order)
        if measured <= t_hi and measured < t_lo:  # too far: fewer channels, another step
            if to is None and k > 1:
                hi, fit = _fewest_that_fit(cut, lat, 0, k, t_hi, t_lo)
                if fit is not None:
                    chosen, measured = (name, int(hi), order), fit[1]
                    record.update(removed=int(hi), latency_ms=measured)
            for other, g in groups.items():
                if measured >= t_lo:
                    break
                nxt = _next_step(stairs.get(other, {}).get("steps", []), widths[other],
                                 min_channels)
                if other == name or nxt is None:
                    continue
                ms = lat(wm.resize({**widths, other: nxt}))
                if measured < ms <= t_hi:
                    chosen, measured = (other, widths[other] - nxt,
                                        np.arange(widths[other])[::-1]), ms
                    record.update(group=other, removed=int(widths[other] - nxt),
                                  on_step=True, latency_ms=ms)
        n_name, n_k, n_order = chosen
        kept[n_name] = kept[n_name][np.sort(n_order[n_k:])]
        widths[n_name] -= n_k
        if measured > t_hi:
            steps.append(record)
            continue
        removal = {}
        for n, g in groups.items():
            if widths[n] < g.channels:
                removal.update(g.to_layer_indices(np.setdiff1d(np.arange(g.channels),
                                                               kept[n])))
        final = remove_channels(model, removal, analysis=analysis)
        flat = budget.flatbuffer(final)
        real = lat(flat)
        # The verdict: the converted result timed interleaved with the original
        # (a short latency_fn call and a long interleaved run can disagree on
        # tiny models: LiteRT on LeNet-5 by a third).
        ref_ms, new_ms = interleaved_ms(budget.latency_fn, [flat0, flat], max(repeats, 5))
        ratio = new_ms / max(measured, 1e-12)  # interleaved / re-widthed
        record.update(latency_ms_rewidthed=measured, latency_ms=real,
                      latency_ms_interleaved=new_ms, reference_ms_interleaved=ref_ms)
        verdict = new_ms
        if not low <= verdict <= target and corrections < REWIDTH_CORRECTIONS:
            corrections += 1
            scale /= ratio
            record["note"] = (f"the converted result measures {verdict:.4g} ms interleaved "
                              f"with the original, outside [{low:.4g}, {target:.4g}]: the "
                              f"search aims at {scale:.3f} x the target "
                              + ("from here" if verdict > target else "from the start"))
            steps.append(record)
            if verdict < low:  # overshot: start again (no conversion until the end)
                rng = np.random.default_rng(seed + corrections)
                widths = {n: int(g.channels) for n, g in groups.items()}
                kept = {n: np.arange(g.channels) for n, g in groups.items()}
            continue
        values = resources(final)
        record.update(values, reduction=reductions(values, base),
                      widths=widths_of(analyze(final, ignored_layers)))
        steps.append(record)
        steps[0]["planner"].update({"corrections": corrections, "conversions": budget.conversions,
                                    "pricings": budget.pricings, "rewidthed": wm.resized,
                                    "convert_s": budget.seconds["convert"],
                                    "price_s": budget.seconds["price"],
                                    "rewidth_s": wm.seconds})
        return (reinitialize(final, seed) if reinit else final), steps


def group_step_widths(model, analysis, budget, min_channels: int = 1,
                      fractions: Sequence[float] = STAIRCASE_FRACTIONS,
                      max_probes: int = STAIRCASE_PROBES) -> dict:
    """{group name: step widths (widest first)}: each group's latency
    staircase (`latency_staircase`) priced with ``budget.estimate`` on the
    original flatbuffer re-widthed (`kprune.runtime.resize.WidthMap`: two
    conversions in all), or by converting each width where the graph cannot
    be re-widthed. Groups with a gentle slope get no step widths.

    Example:
        >>> group_step_widths(model, kprune.analyze(model), budget)["conv2"]
        [8]
    """
    flat0 = budget.flatbuffer(model)
    wm, _ = _width_map(model, analysis, budget, flat0, min_channels)
    out = {}
    for g in analysis.groups:
        if g.channels <= min_channels:
            continue
        at_width = None if wm is None else (
            lambda w, name=g.name: budget.estimate(wm.resize({name: w})))
        try:
            st = latency_staircase(model, g, budget.estimate, analysis, min_channels,
                                   fractions, max_probes=max_probes, at_width=at_width)
        except ValueError:
            continue  # this width cannot be timed: no rounding for the group
        if st["steps"]:
            out[g.name] = list(st["steps"])
    return out


def _not_reached(target_latency_ms, min_channels, steps, l0) -> ValueError:
    """The error of a latency plan that ran out of channels to remove."""
    last = [s_["latency_ms"] for s_ in steps if "latency_ms" in s_]
    return ValueError(
        f"target_latency_ms={target_latency_ms} was not reached: every group is at "
        f"min_channels={min_channels} and the last measured latency is "
        f"{last[-1]:.4g} ms (the model: {l0:.4g} ms); on this runtime narrower "
        f"layers are not always faster: ask for more")
