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
reduction target is reached. Returns the smallest (last) round that met the
target.
"""

import warnings

from kprune.methods import selection


def run_iterative(ctx):
    """Run (or resume) the percentile schedule on `ctx` and return the result."""
    rate = float(ctx.opts["rate"])
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    target_kind = ctx.target[0] if ctx.target else None
    ctx.controller.setdefault("nan_streak", 0)
    ctx.controller.setdefault("violations", 0)
    patience = int(ctx.opts["patience"])
    while True:
        r = ctx.history[-1]["round"] + 1
        if r > ctx.rounds:
            return ctx.finish(_reason(ctx, f"completed {ctx.rounds} rounds"))
        model = ctx.current
        analysis = ctx.analyze(model)
        weights = ctx.complexity_weights(model, analysis)

        scores = None
        if ctx.opts["allocation"] == "global":
            scores = ctx.scores(model, analysis)
            if weights is not None:  # complexity_aware: heavier groups rank lower
                ranked = {k: v / max(float(weights.get(k, 1.0)), 1e-12)
                          for k, v in scores.items()}
            else:
                ranked = scores
            chosen = selection.global_candidates(ranked, rate)

            def select(group, scores):
                return chosen[group.index]
        else:
            def select(group, scores, weights=weights):
                q = rate if weights is None else min(1.0, rate * float(weights.get(group.index, 1.0)))
                return selection.percentile_candidates(scores, q)

        proposal = ctx.propose(model, select, r, analysis, scores=scores)
        if proposal.model is None:
            return ctx.finish(_reason(ctx, f"round {r}: no channel can be removed any more "
                                      "(min_channels / max_fraction / round_to limits)"))
        entry = ctx.try_round(proposal, r, {"rate": rate})
        if entry["status"] == "nan_discarded":
            ctx.controller["nan_streak"] += 1
            ctx.commit(entry, proposal, accept=False)
            if ctx.controller["nan_streak"] >= 2:
                return ctx.finish(_reason(ctx, f"round {r}: NaN loss twice in a row"))
            continue
        ctx.controller["nan_streak"] = 0
        entry["status"] = "accepted"
        if target_kind in (None, "accuracy_loss"):
            ctx.controller["violations"] = 0 if entry["feasible"] else ctx.controller["violations"] + 1
            ctx.commit(entry, proposal, best=entry["feasible"])
            if patience and ctx.controller["violations"] >= patience:
                return ctx.finish(
                    f"rounds {r - patience + 1}-{r} lost more than the allowed "
                    f"{100 * ctx.target[1]:.2f} points of validation accuracy (round {r}: "
                    f"{100 * (ctx.history[0]['val_accuracy'] - entry['val_accuracy']):.2f}); "
                    f"returning round {ctx.best_round}")
        else:
            # Reduction targets: every accepted round is the best so far.
            ctx.commit(entry, proposal, best=True)
            if entry["feasible"]:
                return ctx.finish(f"{target_kind} {ctx.target[1]} reached at round {r}")


def _reason(ctx, why):
    if ctx.target and ctx.target[0] != "accuracy_loss":
        kind, value = ctx.target
        got = ctx.reduction(ctx.history[-1], kind) if ctx.history else 0.0
        msg = (f"{why}; target {kind}={value} not reached (best: {got:.3f}); "
               f"returning the most reduced model, round {ctx.best_round}")
        warnings.warn("kprune: " + msg, RuntimeWarning, stacklevel=3)
        return msg
    return why
