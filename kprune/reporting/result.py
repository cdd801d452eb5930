"""The result of `kprune.prune`: the pruned model and how it got there."""

import json
from typing import Dict, List, Optional


class PruneResult:
    """What `kprune.prune` returns.

    Attributes:
        model: the pruned model (a plain Keras model, channels physically removed).
        history: one dict per round (round 0 is the baseline): ``params``,
            ``macs``, ``val_accuracy`` (with ``metric=``: ``val_<metric name>``,
            e.g. ``val_mae``), ``widths`` ({layer: channels}),
            ``removed`` (units removed that round), ``status`` (``baseline``,
            ``accepted``, ``violated``, ``nan_discarded``, ``finetuned``), ``feasible``,
            ``time_s`` and method-specific fields (``threshold``, ``rate``).
        baseline: the round-0 entry (unpruned model).
        final: the history entry of the returned model.
        reason: why the run stopped (e.g. the target could not be reached).
        target_reached: whether the requested target was met.

    Example:
        >>> result = kprune.prune(model, "iap", train_data=(x, y), val_data=(xv, yv))
        >>> print(result.summary())
        >>> result.model.save("small.keras")
    """

    def __init__(self, model, history: List[Dict], final_round: int, method: str,
                 target=None, reason: str = "", target_reached: bool = True,
                 options: Optional[Dict] = None, out_dir: Optional[str] = None):
        self.model = model
        self.history = history
        self.method = method
        self.target = target
        self.reason = reason
        self.target_reached = target_reached
        self.options = options or {}
        self.out_dir = out_dir
        self.final_round = final_round

    @property
    def baseline(self) -> Dict:
        return self.history[0]

    @property
    def final(self) -> Dict:
        for entry in self.history:
            if entry["round"] == self.final_round and entry["status"] in ("baseline", "accepted", "finetuned"):
                return entry
        return self.history[0]

    @property
    def compression(self) -> float:
        """Parameters before / after."""
        return self.baseline["params"] / max(self.final["params"], 1)

    @property
    def phase_times(self) -> Dict[str, float]:
        """Seconds per run phase (scoring, rebuild, training, tracing,
        bn_recalibration, evaluation, measurement, checkpoint; see
        `kprune.methods.phases`), summed over the history's ``phase_s``.

        Example:
            >>> max(result.phase_times, key=result.phase_times.get)
            'training'
        """
        total: Dict[str, float] = {}
        for entry in self.history:
            for k, v in (entry.get("phase_s") or {}).items():
                total[k] = total.get(k, 0.0) + float(v)
        return total

    @property
    def macs_reduction(self) -> float:
        """1 - MACs after / MACs before."""
        return 1.0 - self.final["macs"] / max(self.baseline["macs"], 1)

    def summary(self) -> str:
        """A before/after table (parameters, MACs, accuracy, widths)."""
        b, f = self.baseline, self.final
        rows = [("parameters", f"{b['params']:,}", f"{f['params']:,}",
                 f"{b['params'] / max(f['params'], 1):.2f}x smaller"),
                ("MACs (batch 1)", f"{b['macs']:,}", f"{f['macs']:,}",
                 f"{100 * (1 - f['macs'] / max(b['macs'], 1)):.1f}% fewer"),
                self._metric_row(b, f)]
        for layer, width in b["widths"].items():
            after = f["widths"].get(layer, width)
            rows.append((f"  {layer} channels", str(width), str(after),
                         "" if after == width else f"-{width - after}"))
        w = [max(len(r[i]) for r in rows + [("", "before", "after", "change")]) for i in range(4)]
        line = lambda r: " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i])  # noqa: E731
                                    for i, c in enumerate(r))
        out = [f"kprune.prune(method={self.method!r}): round {self.final_round} of "
               f"{max(e['round'] for e in self.history)}"
               + (f", target {self.target}" if self.target else ""),
               line(("", "before", "after", "change")),
               "-+-".join("-" * x for x in w)]
        out += [line(r) for r in rows]
        phases = self.phase_times
        if phases:
            out.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in
                                           sorted(phases.items(), key=lambda kv: -kv[1])))
        if self.reason:
            out.append(f"stopped: {self.reason}")
        return "\n".join(out)

    @property
    def metric(self) -> str:
        """The name of the metric every decision used (``'accuracy'`` by
        default; the history holds it as ``'val_<name>'``)."""
        return (self.options or {}).get("metric") or "accuracy"

    def _metric_row(self, b, f):
        name = self.metric
        key = f"val_{name}"
        bv, fv = b.get(key), f.get(key)
        if bv is None or fv is None:
            return (f"val {name}", str(bv), str(fv), "")
        if name == "accuracy":
            return ("val accuracy", f"{bv:.4f}", f"{fv:.4f}", f"{100 * (fv - bv):+.2f} pt")
        lower = (self.options or {}).get("metric_direction") == "min"
        rel = f" ({100 * (fv - bv) / abs(bv):+.2f}%)" if bv else ""
        arrow = "lower is better" if lower else "higher is better"
        return (f"val {name} ({arrow})", f"{bv:.6g}", f"{fv:.6g}", f"{fv - bv:+.4g}{rel}")

    def __str__(self):
        return self.summary()

    def plot(self, path=None):
        """Accuracy vs compression per round, size per round and channels per
        layer (before/after) in one matplotlib figure, saved as PNG when
        `path` is given (needs matplotlib: ``pip install 'kprune[plots]'``).

        Example:
            >>> result.plot("pruning.png")
        """
        from kprune.reporting.plots import plot_result

        return plot_result(self, path)

    def to_dict(self) -> Dict:
        """JSON-serializable record of the run."""
        return {"method": self.method, "target": self.target, "reason": self.reason,
                "target_reached": self.target_reached, "final_round": self.final_round,
                "compression": self.compression, "macs_reduction": self.macs_reduction,
                "baseline": self.baseline, "final": self.final, "history": self.history,
                "options": json.loads(json.dumps(self.options, default=str)),
                "out_dir": self.out_dir}
