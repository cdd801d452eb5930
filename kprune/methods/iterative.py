"""The ILP / IAP schedule: per-round percentile pruning of every group.

Per round: score every group and remove units, then retrain and evaluate.
Which units (``allocation``):

* ``'layer'`` (the paper's rule): in every group the ``round(rate * n)``
  lowest-scoring of its n alive units (the rate scaled by complexity weights
  when ``complexity_aware`` is set);
* ``'global'``: one ranking over all groups of the scores divided by their
  group's mean (then by the group's complexity weight, mean 1, with
  ``complexity_aware``: heavier groups go first); the lowest ``rate`` of all
  alive units go, so a layer loses units in proportion to how weak they are,
  not at a fixed rate.

With ``cost`` (``'params'``, ``'macs'``, ``'latency'``; see below for
``'auto'``) the allocation is **by cost**: each unit's importance (Taylor's
as it is, other scores divided by their group's mean) is divided by what
removing one unit of its group saves (parameters, MACs or measured ms), and
the units with the least importance per cost go until they add up to
``rate`` of the model's prunable cost (``allocation='global'``, the default
with a cost); with ``allocation='layer'`` the per-group rate is scaled by the
group's per-unit cost instead.

The default ``cost='auto'`` is ``'macs'`` for a ``macs_reduction`` target
and ``'latency'`` for ``target_latency_ms``, but only for a criterion whose
scores share one scale across groups (``Criterion.comparable``: IAP's
Taylor). Per-layer scales (ILP's L1, activation criteria) keep the uniform
per-layer rate and stop at the target: priced by MACs, L1 lost 0.2-0.7
points more on LeNet-5 and ~5 on ResNet-20 (BENCHMARKS.md).

``max_round_fraction`` caps what any group loses in one round. Stops after
``rounds``, when nothing can be removed any more, after ``patience``
consecutive rounds that violate an accuracy target (default 0: never; pruning
continues from a violating round, whose retraining may recover), or when a
size target is reached: a reduction (``params_reduction`` /
``macs_reduction``) or a device budget (``target_arena_bytes`` /
``target_latency_ms``, priced by `kprune.methods.device_budget.DeviceBudget`).
The round that reaches a size target is trimmed before retraining: its rate
is bisected down to the smallest that still reaches it (a device budget is
then met within 10% below it); with ``allocation='layer'`` and a reduction
target the trim also tries rates that leave a small group whole
(``round(rate * n)`` may be 0 there) and keeps whichever removes less, so the
least a round removes, a unit from every group, cannot overshoot the target
by a whole step. Returns the smallest (last) round that met the
target.

Options (`IterativeOptions`): ``rate``, ``allocation``, ``patience`` and
the scoring methods' `kprune.methods.options.PruningOptions`.

Example:
    >>> kprune.prune(model, "iap", train_data=(x, y), target_arena_bytes=32 * 1024,
    ...              complexity_aware="memory")
"""

import dataclasses
from typing import Optional

from kprune.methods import selection
from kprune.methods.checks import check_choice, check_fraction, check_int
from kprune.methods.options import OptionContext, PruningOptions
from kprune.methods.state import RoundStatus


@dataclasses.dataclass(frozen=True)
class IterativeOptions(PruningOptions):
    """Options of the percentile schedule (ILP, IAP). ``allocation=None`` is
    the method's `default_allocation`."""

    default_allocation = "layer"

    rate: float = 0.1               # per-round fraction of alive units to remove
                                    # (with a cost: fraction of the prunable cost)
    allocation: Optional[str] = None  # 'layer' (the paper's rate per group) | 'global'
    patience: int = 0               # stop after this many consecutive rounds that break
                                    # an accuracy target (0: run every round)

    def validate(self, ctx: OptionContext) -> "IterativeOptions":
        checked = super().validate(ctx)
        rate = check_fraction("rate", self.rate,
                              fix="; the fraction of each group removed per round")
        if self.cost == "auto" and checked.cost is not None and \
                not getattr(checked.criterion, "comparable", False):
            # Scores on a per-layer scale (L1 norms, activations) say nothing
            # about which layer matters more: divided by a cost, the costliest
            # group goes first, nearly whole (ResNet-20's residual stream,
            # -5.9 points at 2x MACs). 'auto' keeps their uniform per-layer
            # rate and stops at the target; cost= given explicitly still prices.
            checked = dataclasses.replace(checked, cost=None)
        # A cost (MACs, ms: cost= or its 'auto' default for a MAC / latency
        # target) allocates by cost: one ranking of importance per cost.
        allocation = self.allocation or ("global" if checked.cost is not None
                                         else self.default_allocation)
        check_choice("allocation", allocation, ("layer", "global"),
                     "'layer' (the paper's rate per group) or 'global' (one ranking over "
                     "all groups)")
        patience = check_int("patience", self.patience, 0)
        if patience and ctx.target is not None and not ctx.target.is_accuracy:
            raise ValueError(f"patience={patience} counts rounds that break an accuracy "
                             f"target; with target {ctx.target.to_dict()} every round is "
                             "kept until the target is reached: drop patience")
        return dataclasses.replace(checked, rate=rate, allocation=allocation,
                                   patience=patience)


@dataclasses.dataclass
class IterativeState:
    """The schedule's controller state (saved with every round)."""

    nan_streak: int = 0   # consecutive rounds discarded for NaN
    violations: int = 0   # consecutive rounds that broke an accuracy target


def run_iterative(run):
    """Run (or resume) the percentile schedule on `run` (a `kprune.methods.run.Run`)."""
    opts, record, goal, proposer = run.method_options, run.record, run.goal, run.proposer
    rate = float(opts.rate)
    state = record.method_state(IterativeState)
    while True:
        r = record.next_round
        if r > run.rounds:
            return run.finish(goal.reason(f"completed {run.rounds} rounds", record.best))
        model = record.current
        analysis = proposer.analyze(model)
        weights = proposer.complexity_weights(model, analysis, goal.budget)
        costs = proposer.unit_costs(model, analysis, goal.budget)
        proposer.measure_steps(model, analysis, goal.budget)
        if costs is not None and opts.allocation == "layer":
            weights = costs  # per-group rates scaled by what a unit saves
        scores = proposer.scores(model, analysis)
        ranked, normalize = scores, True
        if opts.allocation == "global" and weights is not None:
            # complexity_aware: heavier groups rank lower. The weight divides
            # the scores once they are normalized per group; dividing first
            # would be undone by that normalization (the option was a no-op).
            ranked = {k: selection.normalized(v) / max(float(weights.get(k, 1.0)), 1e-12)
                      for k, v in scores.items()}
            normalize = False

        # a global rate goes to the groups that can still shrink
        room = proposer.room(analysis) if opts.allocation == "global" else None
        # scores on one scale across groups are priced as they are (cost_candidates)
        comparable = getattr(proposer.criterion, "comparable", False)

        def propose_at(q, landing=False):
            if opts.allocation == "global":
                chosen = (selection.cost_candidates(scores, costs, q, room=room,
                                                    normalize=not comparable)
                          if costs is not None else
                          selection.global_candidates(ranked, q, room=room,
                                                      normalize=normalize))

                def select(group, scores):
                    return chosen[group.index]
            else:
                def select(group, scores):
                    w = 1.0 if weights is None else float(weights.get(group.index, 1.0))
                    # landing: a small group may lose no unit, or the least a
                    # round removes (one per group) can overshoot the target
                    return selection.percentile_candidates(scores, min(1.0, q * w),
                                                           at_least_one=not landing)
            return proposer.propose(model, select, r, analysis, scores=scores)

        proposal = propose_at(rate)
        info = {"rate": rate}
        if opts.cost is not None:
            info["cost"] = opts.cost
        if proposal.model is not None and goal.is_size:
            # A size target: the round that reaches it removes no more than needed.
            q, proposal = goal.land(
                propose_at, 0.0, rate, proposal,
                finer=(lambda v: propose_at(v, landing=True))
                if opts.allocation == "layer" else None)
            info["rate"] = q
        if proposal.model is None:
            return run.finish(goal.reason(f"round {r}: no channel can be removed any more "
                                          "(min_channels / max_fraction / round_to limits)",
                                          record.best))
        entry = run.try_round(proposal, r, info)
        if entry.status is RoundStatus.NAN_DISCARDED:
            state.nan_streak += 1
            record.store(state)
            run.commit(entry, proposal, accept=False)
            if state.nan_streak >= 2:
                return run.finish(goal.reason(f"round {r}: NaN loss twice in a row",
                                              record.best))
            continue
        state.nan_streak = 0
        if not goal.is_size:
            state.violations = 0 if entry.feasible else state.violations + 1
            record.store(state)
            run.commit(entry, proposal, best=entry.feasible)
            if opts.patience and state.violations >= opts.patience:
                loss = goal.quality_loss(entry)
                return run.finish(
                    f"rounds {r - opts.patience + 1}-{r} lost more than the allowed "
                    f"{goal.describe_loss(goal.target.value)} (round {r}: "
                    f"{goal.describe_loss(loss)}); returning round {record.best_round}")
        else:
            # Size targets: every accepted round is the best so far.
            record.store(state)
            run.commit(entry, proposal, best=True)
            if entry.feasible:
                return run.finish(f"{goal.kind} {goal.target.value} reached at round {r}")
