"""From scores to a removal plan (`Proposer`): the criterion's importance of
every group unit, a method's selection rule, then the run's limits
(``max_round_fraction``, ``min_channels``, ``max_fraction``, ``round_to``)
and the physical removal, as a `Proposal`.

Example:
    >>> proposer = Proposer(config.method_options, config.options, data.calibration)
    >>> analysis = proposer.analyze(model)
    >>> scores = proposer.scores(model, analysis)
    >>> p = proposer.propose(model, lambda g, s: s <= np.median(s), 1, analysis, scores)
    >>> p.total_removed > 0
    True
"""

import dataclasses
import re
from typing import Callable, Dict, Optional

import numpy as np

from kprune.core.dependency import analyze
from kprune.core.surgery import remove_channels
from kprune.methods import selection
from kprune.methods.phases import timed


@dataclasses.dataclass
class Proposal:
    """A pruned candidate: the new model and what was removed."""

    model: object
    removed: Dict[str, int]  # group name -> units removed
    removal: Dict[str, list]  # remove_channels argument
    rewind_model: object = None
    stats: object = None      # activation statistics recorded while retraining

    @property
    def total_removed(self):
        return int(sum(self.removed.values()))


def tie_sets(groups, key=None):
    """Index lists of the groups that `tie_repeated` ties: groups with the
    same width whose names are equal once every run of digits is replaced
    (``transformer_layer_0/feedforward_intermediate_dense`` and
    ``transformer_layer_1/...``; ``stack2_block0_conv1`` and
    ``stack2_block1_conv1``), or equal under `key` (fn(group name) -> key,
    None for an untied group). Only sets of two or more are returned.

    Example:
        >>> [[g.name for g in groups if g.index in s] for s in tie_sets(groups)]
        [['block_0_conv', 'block_1_conv']]
    """
    sets = {}
    for g in groups:
        k = re.sub(r"\d+", "#", g.name) if key is None else key(g.name)
        if k is not None:
            sets.setdefault((k, g.channels), []).append(g.index)
    return [v for v in sets.values() if len(v) > 1]


class Proposer:
    """Scores and removal plans for a run whose method options are a
    `kprune.methods.options.PruningOptions` (`opts`) and whose common options
    are `common`; `record` (a `kprune.methods.record.RunRecord`) gives the
    original widths, the current model's recorded statistics and its
    weight-rewinding reference; `ensure_loss` compiles a model for gradient
    criteria."""

    def __init__(self, opts, common, calibration, record=None, strategy=None,
                 ensure_loss: Callable = None):
        self.opts, self.common, self.calibration = opts, common, calibration
        self.record, self.strategy = record, strategy
        self.ensure_loss = ensure_loss or (lambda model: model)
        self.phases = None          # a `kprune.methods.phases.Phases` (set by the run)
        self.step_widths = None     # {group name: latency step widths} (latency_steps)

    @property
    def criterion(self):
        return self.opts.criterion

    def analyze(self, model):
        return analyze(model, self.common.ignored_layers,
                       gqa_units=getattr(self.opts, "gqa_units", "key_value_heads"))

    def record_groups(self, model):
        """The groups whose activations training should record (``recording='fit'``)."""
        if self.opts.recording != "fit" or self.criterion.needs != "activations":
            return None
        return self.analyze(model).groups

    def scores(self, model, analysis) -> Dict[int, np.ndarray]:
        """{group index: per-unit importance} under the run's criterion."""
        with timed(self.phases, "scoring"):
            return self._scores(model, analysis)

    def _scores(self, model, analysis) -> Dict[int, np.ndarray]:
        from kprune.scoring.criteria import criterion_stats, group_scores

        crit, stats = self.criterion, None
        if self.opts.recording != "calibration" and self.record is not None \
                and model is self.record.current:
            stats = self.record.current_stats    # recorded while training (fit)
        if stats is None:
            self.ensure_loss(model)     # gradient criteria need the training loss
            stats = criterion_stats(crit, model, self.calibration,
                                    analysis=analysis, groups=analysis.groups,
                                    strategy=self.strategy)
        return {g.index: group_scores(model, g, crit, stats, analysis=analysis)
                for g in analysis.groups}

    def original_width(self, group) -> int:
        base = self.record.baseline if self.record is not None else None
        widths = base.widths if base is not None else {}
        vals = [widths[p] for p in group.producers if p in widths]
        return max(vals) if vals else group.channels

    def max_fraction_of(self, group, analysis=None) -> Optional[float]:
        """The ``max_fraction`` that limits `group`: the float, or the
        smallest value given for a layer whose *output* is the group's units
        (a producer, or a member such as BatchNormalization / Flatten that
        produces no group of its own). A layer that only reads the units (the
        next convolution) does not limit them: ``{'conv2': 0.0}`` keeps
        conv2's filters, not conv1's."""
        mf = self.opts.max_fraction
        if mf is None or isinstance(mf, (int, float)):
            return mf
        producers = set(self._all_producers(analysis)) if analysis is not None else set()
        vals = [mf[name] for name in group.layers if name in mf and
                (name in group.producers or name not in producers)]
        return min(vals) if vals else None

    @staticmethod
    def _all_producers(analysis):
        return [p for g in list(analysis.groups) + list(getattr(analysis, "frozen_groups", ()))
                for p in g.producers]

    def measure_steps(self, model, analysis, budget) -> None:
        """With ``latency_steps``: measure each group's latency staircase on
        the budget's runtime once, on the first model seen (the original
        widths; `kprune.methods.complexity.group_step_widths`), so that
        `propose` rounds kept widths to step widths. Without a latency budget
        (a MAC or parameter target) the staircase is measured with the run's
        ``latency_fn`` / ``latency_quantization`` (default: LiteRT int8 on
        this host, 1 thread)."""
        if self.step_widths is not None or not getattr(self.opts, "latency_steps", False):
            return
        from kprune.methods.complexity.latency import group_step_widths

        if budget is None or budget.kind != "latency_ms":
            from kprune.methods.device_budget import DeviceBudget

            # only its latency_fn prices the staircase: the limit is never compared
            budget = DeviceBudget("latency_ms", 1.0, latency_fn=self.common.latency_fn,
                                  quantization=self.common.latency_quantization)

        with timed(self.phases, "latency_steps"):
            self.step_widths = group_step_widths(model, analysis, budget,
                                                 self.common.min_channels)

    def room(self, analysis) -> Dict[int, int]:
        """{group index: units it may still lose this round}: down to its
        floor (``min_channels``, ``max_fraction`` of the original width,
        ``round_to``) and at most ``max_round_fraction`` of its width."""
        out = {}
        for g in analysis.groups:
            free = g.channels - selection.keep_floor(
                self.original_width(g), self.common.min_channels,
                self.max_fraction_of(g, analysis), self.opts.round_to)
            if self.opts.max_round_fraction is not None:
                free = min(free, selection.round_cap(g.channels, self.opts.max_round_fraction))
            out[g.index] = max(0, free)
        return out

    def at_floor(self, analysis) -> bool:
        """Whether every group is at its minimum width (nothing can go)."""
        return not any(self.room(analysis).values())

    def complexity_weights(self, model, analysis, budget=None) -> Optional[Dict[int, float]]:
        """With ``complexity_aware``: {group index: weight}, mean 1 (None
        otherwise); priced on the device by `budget` for 'memory' with an
        arena budget and 'latency' with a latency budget."""
        mode = self.opts.complexity_aware
        if mode is None:
            return None
        if budget is not None and (mode, budget.kind) in (("memory", "arena_bytes"),
                                                          ("latency", "latency_ms")):
            return budget.group_weights(model, analysis)
        from kprune.core.complexity_weights import complexity_weights

        w = complexity_weights(model, mode, analysis=analysis)
        if not w:
            return None
        # Normalized to mean 1: a group with an average share of the
        # complexity is pruned at the plain rate, heavier ones faster.
        mean = float(np.mean(list(w.values()))) or 1.0
        return {k: float(v) / mean for k, v in w.items()}

    def unit_costs(self, model, analysis, budget=None) -> Optional[Dict[int, float]]:
        """With ``cost`` set: {group index: what removing one of its units
        saves}, in parameters or MACs (`kprune.core.complexity_weights.group_complexity`
        divided by the group's width) or in measured ms (``budget.group_weights``),
        scaled so the mean over all units is 1 (None without ``cost``)."""
        mode = getattr(self.opts, "cost", None)
        if mode is None or not analysis.groups:
            return None
        if mode == "latency":
            per_unit = budget.group_weights(model, analysis)
        else:
            from kprune.core.complexity_weights import group_complexity

            amounts = group_complexity(model, mode, analysis)
            per_unit = {g.index: float(amounts[i]) / max(g.channels, 1)
                        for i, g in enumerate(analysis.groups)}
        units = sum(g.channels for g in analysis.groups)
        mean = sum(per_unit.get(g.index, 0.0) * g.channels for g in analysis.groups) / \
            max(units, 1)
        if mean <= 0:
            return {g.index: 1.0 for g in analysis.groups}
        return {k: float(v) / mean for k, v in per_unit.items()}

    def _limit(self, g, s, cand, analysis, rng):
        return selection.limit_removal(
            s, cand, self.original_width(g), self.common.min_channels,
            self.max_fraction_of(g, analysis), self.opts.round_to, rng,
            steps=(self.step_widths or {}).get(g.name))

    def _tie(self, analysis, scores, chosen, rng) -> None:
        """With ``tie_repeated``: every set of tied groups (`tie_sets`) loses
        the same number of units, the mean of what the selection chose for
        them (within every member's limits); each member loses its own
        lowest-scoring units."""
        tie = getattr(self.opts, "tie_repeated", False)
        if not tie:
            return
        by_index = {g.index: g for g in analysis.groups}
        for members in tie_sets(analysis.groups, None if tie is True else tie):
            k = int(round(np.mean([chosen[i].size for i in members])))
            picks = {}
            for i in members:
                s = scores[i]
                lowest = np.zeros(len(s), bool)
                lowest[np.argsort(s, kind="stable")[:k]] = True
                lowest = selection.cap_candidates(s, lowest, self.opts.max_round_fraction)
                picks[i] = self._limit(by_index[i], s, lowest, analysis, rng)
            n = min(p.size for p in picks.values())  # the tightest member's limits
            for i in members:
                p = picks[i]
                chosen[i] = p[np.argsort(scores[i][p], kind="stable")[:n]] if p.size > n else p

    def propose(self, model, select: Callable, round_index: int, analysis=None,
                scores=None) -> Proposal:
        """Prune `model` with `select(group, scores) -> candidate mask`.

        Applies max_round_fraction / min_channels / max_fraction / round_to,
        removes the channels physically and returns a `Proposal` (its model
        is None when nothing is removed).
        """
        analysis = analysis or self.analyze(model)
        scores = self.scores(model, analysis) if scores is None else scores
        rng = np.random.default_rng((self.common.seed or 0) * 1000 + round_index)
        removal, removed = {}, {}
        chosen = {}
        for g in analysis.groups:
            s = scores[g.index]
            cand = selection.cap_candidates(s, np.asarray(select(g, s), bool),
                                            self.opts.max_round_fraction)
            chosen[g.index] = self._limit(g, s, cand, analysis, rng)
        self._tie(analysis, scores, chosen, rng)
        for g in analysis.groups:
            units = chosen[g.index]
            if units.size:
                removed[g.name] = int(units.size)
                for layer, idx in g.to_layer_indices(units).items():
                    removal.setdefault(layer, []).extend(idx)
        if not removal:
            return Proposal(None, {}, {})
        with timed(self.phases, "rebuild"):
            new = remove_channels(model, removal, analysis=analysis)
            rewind = None
            if self.record is not None and self.record.current_rewind is not None and \
                    model is self.record.current:
                rewind = remove_channels(self.record.current_rewind, removal)
        return Proposal(new, removed, removal, rewind)
