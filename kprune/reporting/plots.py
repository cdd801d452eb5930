"""Pictures of what pruning did (matplotlib, the optional ``plots`` extra).

* `plot_history`: validation accuracy against compression, one point per
  round (accepted rounds filled, rejected ones hollow), and parameters/MACs
  left per round;
* `plot_widths`: channels per layer before and after pruning;
* `plot_result`: both for a `kprune.PruneResult` (``result.plot()``).

matplotlib is imported only when a function is called; figures are drawn
with the object-oriented API (no pyplot state, no display needed) and
written as PNG.

Example:
    >>> from kprune.reporting.plots import plot_history, plot_widths
    >>> plot_history("runs/lenet", "runs/lenet/history.png")
    >>> plot_widths(model, result.model, "runs/lenet/widths.png")
"""

import json
import os
from typing import Dict, List, Optional

__all__ = ["load_history", "plot_history", "plot_result", "plot_widths"]


def _figure(*args, **kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "kprune's plots need matplotlib: pip install 'kprune[plots]' "
            "(or pip install matplotlib)") from e
    return Figure(*args, **kwargs)


def load_history(source) -> List[Dict]:
    """The per-round history from a `PruneResult`, a list of entries, a dict
    with a ``history`` key (``result.json``) or a run directory (its
    ``result.json`` written by ``kprune prune``, or ``state.json`` /
    ``checkpoints/state.json`` written by ``kprune.prune(out_dir=...)``).

    Example:
        >>> [e["round"] for e in load_history("runs/lenet")]
        [0, 1, 2, 3]
    """
    if hasattr(source, "history") and not isinstance(source, dict):
        return list(source.history)
    if isinstance(source, dict):
        if "history" not in source:
            raise ValueError("load_history: the dict has no 'history' key")
        return list(source["history"])
    if isinstance(source, (list, tuple)):
        return list(source)
    path = os.fspath(source)
    if os.path.isdir(path):
        for name in ("result.json", "state.json", os.path.join("checkpoints", "state.json")):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                path = candidate
                break
        else:
            raise FileNotFoundError(
                f"'{source}' has no result.json, state.json or checkpoints/state.json: "
                "pass the out_dir of a kprune.prune / kprune prune run")
    with open(path) as f:
        data = json.load(f)
    if "history" not in data:
        raise ValueError(f"'{path}' has no 'history' list")
    return list(data["history"])


def _accepted(entry) -> bool:
    return entry.get("status") in ("baseline", "accepted", "finetuned")


def _draw_history(ax_acc, ax_size, history):
    base = history[0]
    xs = [base["params"] / max(e["params"], 1) for e in history]
    ok = [i for i, e in enumerate(history) if _accepted(e) and e.get("val_accuracy") is not None]
    bad = [i for i, e in enumerate(history)
           if not _accepted(e) and e.get("val_accuracy") is not None]
    ax_acc.plot([xs[i] for i in ok], [history[i]["val_accuracy"] for i in ok], "o-",
                color="tab:blue", label="accepted rounds")
    if bad:
        ax_acc.plot([xs[i] for i in bad], [history[i]["val_accuracy"] for i in bad], "o",
                    mfc="none", color="tab:red", label="rejected rounds")
    for i in ok + bad:
        ax_acc.annotate(str(history[i]["round"]), (xs[i], history[i]["val_accuracy"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax_acc.axhline(base["val_accuracy"], color="gray", ls=":", lw=1, label="baseline")
    ax_acc.set_xlabel("compression (baseline parameters / parameters)")
    ax_acc.set_ylabel("validation accuracy")
    ax_acc.set_title("accuracy vs compression (labels: round)")
    ax_acc.legend(loc="lower left", fontsize=8)
    rounds = [e["round"] for e in history]
    ax_size.plot(rounds, [e["params"] / max(base["params"], 1) for e in history], "s-",
                 label="parameters")
    if base.get("macs"):
        ax_size.plot(rounds, [e["macs"] / base["macs"] for e in history], "^-", label="MACs")
    ax_size.set_xlabel("round")
    ax_size.set_ylabel("fraction of the baseline")
    ax_size.set_ylim(0, 1.05)
    ax_size.set_title("size per round")
    ax_size.legend(fontsize=8)


def plot_history(history_or_out_dir, path: Optional[str] = None):
    """Accuracy vs compression per round, and parameters/MACs per round.

    Args:
        history_or_out_dir: a `PruneResult`, its ``history`` list, a
            ``result.json`` dict/path, or a run directory (see `load_history`).
        path: write the figure as PNG here (directories created).

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> plot_history(result, "history.png")
    """
    history = load_history(history_or_out_dir)
    if not history:
        raise ValueError("plot_history: the history is empty")
    fig = _figure(figsize=(11, 4.2), layout="constrained")
    ax_acc, ax_size = fig.subplots(1, 2)
    _draw_history(ax_acc, ax_size, history)
    _save(fig, path)
    return fig


def _widths_of(model_or_widths) -> Dict[str, int]:
    if isinstance(model_or_widths, dict):
        return {str(k): int(v) for k, v in model_or_widths.items()}
    from kprune.core.profile import layer_widths

    return layer_widths(model_or_widths)


def _draw_widths(ax, before, after):
    import numpy as np

    names = list(before) + [n for n in after if n not in before]
    b = [before.get(n, 0) for n in names]
    a = [after.get(n, 0) for n in names]
    x = np.arange(len(names))
    ax.bar(x - 0.2, b, 0.4, label="before", color="tab:gray")
    bars = ax.bar(x + 0.2, a, 0.4, label="after", color="tab:green")
    for rect, v in zip(bars, a):
        ax.annotate(str(v), (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                    ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("output channels")
    ax.set_title("channels per layer")
    ax.legend(fontsize=8)


def plot_widths(before_model, after_model, path: Optional[str] = None):
    """Channels per Conv/Dense layer before and after pruning (grouped bars).

    Args:
        before_model, after_model: Keras models or ``{layer: channels}`` dicts
            (e.g. ``result.baseline['widths']``).
        path: write the figure as PNG here.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> plot_widths(original, result.model, "widths.png")
    """
    before, after = _widths_of(before_model), _widths_of(after_model)
    if not before and not after:
        raise ValueError("plot_widths: neither model has a layer with 'filters' or 'units'")
    fig = _figure(figsize=(max(6, 0.55 * len(before) + 2), 4.2), layout="constrained")
    _draw_widths(fig.subplots(), before, after)
    _save(fig, path)
    return fig


def plot_result(result, path: Optional[str] = None):
    """One figure for a `PruneResult`: accuracy vs compression, size per round
    and channels per layer (baseline vs returned model). ``result.plot()``.

    Example:
        >>> fig = kprune.reporting.plots.plot_result(result, "pruning.png")
    """
    history = load_history(result)
    fig = _figure(figsize=(15, 4.4), layout="constrained")
    ax_acc, ax_size, ax_w = fig.subplots(1, 3)
    _draw_history(ax_acc, ax_size, history)
    final = getattr(result, "final", None) or history[-1]
    _draw_widths(ax_w, history[0].get("widths") or {}, final.get("widths") or {})
    _save(fig, path)
    return fig


def _save(fig, path):
    if path is None:
        return
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    from kprune.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
