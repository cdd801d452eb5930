"""The ILP / IAP schedule: per-round percentile pruning of every group.

Per round: score every group and remove units, then retrain and evaluate.
Which units (``allocation``):

* ``'layer'`` (the paper's rule): in every group the ``round(rate * n)``
  lowest-scoring of its n alive units (the rate scaled by complexity weights
  when ``complexity_aware`` is set);
* ``'global'``: one ranking over all groups of the scores divided by their
  group's mean; the lowest ``rate`` of all alive units go, so a layer loses
  units in proportion to how weak they are, not at a fixed rate.

``max_round_fraction`` caps what any group loses in one round. Stops after
``rounds``, when nothing can be removed any more, after ``patience``
consecutive rounds that violate an accuracy target (default 0: never; pruning
continues from a violating round, whose retraining may recover), or when a
size target is reached: a reduction (``params_reduction`` /
``macs_reduction``) or a device budget (``target_arena_bytes`` /
``target_latency_ms``, priced by `kprune.methods.device_budget.DeviceBudget`).
The round that reaches a size target is trimmed before retraining: its rate
is bisected down to the smallest that still reaches it (a device budget is
then met within 10% below it). Returns the smallest (last) round that met the
target.

Example:
    >>> kprune.prune(model, "iap", train_data=(x, y), target_arena_bytes=32 * 1024,
    ...              complexity_aware="memory")
"""

import dataclasses
import warnings

from kprune.methods import selection
from kprune.methods.state import RoundStatus


@dataclasses.dataclass
class IterativeState:
    """The schedule's controller state (saved with every round)."""

    nan_streak: int = 0   # consecutive rounds discarded for NaN
    violations: int = 0   # consecutive rounds that broke an accuracy target


def run_iterative(run):
    """Run (or resume) the percentile schedule on `run` (a `kprune.methods.run.Run`)."""
    rate = float(run.opts.rate)
    target_kind = run.target.kind if run.target else None
    state = run.method_state(IterativeState)
    patience = int(run.opts.patience)
    while True:
        r = run.state.last_round + 1
        if r > run.rounds:
            return run.finish(_reason(run, f"completed {run.rounds} rounds"))
        model = run.current
        analysis = run.analyze(model)
        weights = run.complexity_weights(model, analysis)

        scores = run.scores(model, analysis)
        if run.opts.allocation == "global" and weights is not None:
            # complexity_aware: heavier groups rank lower
            ranked = {k: v / max(float(weights.get(k, 1.0)), 1e-12) for k, v in scores.items()}
        else:
            ranked = scores

        def propose_at(q):
            if run.opts.allocation == "global":
                chosen = selection.global_candidates(ranked, q)

                def select(group, scores):
                    return chosen[group.index]
            else:
                def select(group, scores):
                    w = 1.0 if weights is None else float(weights.get(group.index, 1.0))
                    return selection.percentile_candidates(scores, min(1.0, q * w))
            return run.propose(model, select, r, analysis, scores=scores)

        proposal = propose_at(rate)
        info = {"rate": rate}
        if proposal.model is not None and target_kind not in (None, "accuracy_loss"):
            # A size target: the round that reaches it removes no more than needed.
            q, proposal = run.land(propose_at, 0.0, rate, proposal)
            info["rate"] = q
        if proposal.model is None:
            return run.finish(_reason(run, f"round {r}: no channel can be removed any more "
                                      "(min_channels / max_fraction / round_to limits)"))
        entry = run.try_round(proposal, r, info)
        if entry.status is RoundStatus.NAN_DISCARDED:
            state.nan_streak += 1
            run.store(state)
            run.commit(entry, proposal, accept=False)
            if state.nan_streak >= 2:
                return run.finish(_reason(run, f"round {r}: NaN loss twice in a row"))
            continue
        state.nan_streak = 0
        if target_kind in (None, "accuracy_loss"):
            state.violations = 0 if entry.feasible else state.violations + 1
            run.store(state)
            run.commit(entry, proposal, best=entry.feasible)
            if patience and state.violations >= patience:
                return run.finish(
                    f"rounds {r - patience + 1}-{r} lost more than the allowed "
                    f"{100 * run.target.value:.2f} points of validation accuracy (round {r}: "
                    f"{100 * (run.history[0].val_accuracy - entry.val_accuracy):.2f}); "
                    f"returning round {run.best_round}")
        else:
            # Reduction targets: every accepted round is the best so far.
            run.store(state)
            run.commit(entry, proposal, best=True)
            if entry.feasible:
                return run.finish(f"{target_kind} {run.target.value} reached at round {r}")


def _reason(run, why):
    if run.target and run.target.is_budget:
        got = run.history[-1].info.get(run.target.kind)
        if got is not None and not run.budget.met(got):
            msg = (f"{why}; target {run.target.kind}={run.target.value:.6g} not reached "
                   f"(last: {got:.6g}); returning the smallest model, round {run.best_round}")
            warnings.warn("kprune: " + msg, RuntimeWarning, stacklevel=3)
            return msg
        return why
    if run.target and not run.target.is_accuracy:
        kind, value = run.target
        got = run.reduction(run.history[-1], kind) if run.history else 0.0
        msg = (f"{why}; target {kind}={value} not reached (best: {got:.3f}); "
               f"returning the most reduced model, round {run.best_round}")
        warnings.warn("kprune: " + msg, RuntimeWarning, stacklevel=3)
        return msg
    return why
