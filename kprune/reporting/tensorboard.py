"""TensorBoard logging of a pruning run: one step per round.

`RoundLogger` writes, with ``tf.summary``, for every round of `kprune.prune`:

* scalars ``accuracy/val``, ``size/params``, ``size/macs``,
  ``size/arena_estimate_bytes`` (peak int8 activation bytes at batch 1 from
  `kprune.profile`: what bounds a TFLite-Micro tensor arena),
  ``size/compression`` (baseline parameters / parameters),
  ``size/macs_reduction``, ``round/removed`` and ``round/accepted`` (1 or 0);
* one scalar per layer, ``widths/<layer>``: its output channels;
* a text summary ``widths`` (a markdown table of every layer's channels,
  with the baseline next to it) and ``status`` (accepted / violated / ...).

`kprune.prune(..., tensorboard_dir=DIR)` and ``kprune prune --tensorboard``
use it; view with ``tensorboard --logdir DIR``.

Example:
    >>> from kprune.reporting.tensorboard import RoundLogger
    >>> with RoundLogger("runs/lenet/tb") as tb:
    ...     for entry in result.history:
    ...         tb.log(entry)
"""

import math
import os
from typing import Dict, Optional

from kprune.core.profile import profile
from kprune.methods.callbacks import RoundCallback

__all__ = ["RoundLogger", "arena_estimate_bytes"]


def arena_estimate_bytes(model) -> int:
    """Peak int8 activation bytes at batch 1 (`kprune.profile`): an estimate of
    the TFLite-Micro tensor arena `model` needs (without the runtime's own
    persistent buffers).

    Example:
        >>> arena_estimate_bytes(kprune.zoo.lenet5())
        5880
    """
    return int(profile(model).peak_activation_bytes_int8)


def _metadata(plugin_name, data_class):
    import tensorflow as tf

    meta = tf.compat.v1.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin_name
    meta.data_class = data_class
    return meta


def _scalar(tag, value):
    """What ``tf.summary.scalar`` writes (plugin 'scalars', a float32 scalar
    tensor), with core TensorFlow only: the ``tensorboard`` package is needed
    to view the logs, not to write them."""
    import tensorflow as tf

    tf.summary.write(tag, tf.constant(value, tf.float32),
                     metadata=_metadata("scalars", 1))  # DATA_CLASS_SCALAR


def _text(tag, text):
    """What ``tf.summary.text`` writes (plugin 'text', a string tensor)."""
    import tensorflow as tf

    tf.summary.write(tag, tf.constant(text), metadata=_metadata("text", 2))  # DATA_CLASS_TENSOR


class RoundLogger(RoundCallback):
    """Writes one TensorBoard step per pruning round (see the module docstring).

    Args:
        log_dir: directory of the event files (created if needed).

    The first entry logged with ``round == 0`` (or, failing that, the first
    entry logged) is the baseline the compression figures refer to.

    Example:
        >>> tb = RoundLogger("runs/tb")
        >>> tb.log({"round": 0, "status": "baseline", "val_accuracy": 0.91,
        ...         "params": 61706, "macs": 416520}, widths={"conv1": 6})
        >>> tb.close()
    """

    def __init__(self, log_dir):
        import tensorflow as tf

        super().__init__()
        if not log_dir:
            raise ValueError("RoundLogger: log_dir must be a directory path")
        self.log_dir = os.fspath(log_dir)
        os.makedirs(self.log_dir, exist_ok=True)
        self._writer = tf.summary.create_file_writer(self.log_dir)
        self._baseline: Optional[Dict] = None

    def log(self, entry: Dict, widths: Optional[Dict[str, int]] = None, model=None,
            step: Optional[int] = None):
        """Write the summaries of one round.

        Args:
            entry: a `PruneResult.history` entry (``round``, ``val_accuracy``,
                ``params``, ``macs``, ``widths``, ``status``, ``removed`` ...);
                missing keys are skipped.
            widths: {layer: channels}; default ``entry['widths']``.
            model: the round's model; when given and `entry` has no
                ``arena_estimate_bytes``, the arena estimate is profiled from it.
            step: the TensorBoard step (default ``entry['round']``).
        """
        if not isinstance(entry, dict) or "round" not in entry:
            raise ValueError("RoundLogger.log: entry must be a history dict with a 'round' key, "
                             f"got {type(entry).__name__}")
        step = int(entry["round"] if step is None else step)
        widths = dict(widths if widths is not None else entry.get("widths") or {})
        if self._baseline is None or entry["round"] == 0:
            self._baseline = dict(entry, widths=widths)
        base = self._baseline
        arena = entry.get("arena_estimate_bytes")
        if arena is None and model is not None:
            arena = arena_estimate_bytes(model)
        scalars = {
            "accuracy/val": entry.get("val_accuracy"),
            "size/params": entry.get("params"),
            "size/macs": entry.get("macs"),
            "size/arena_estimate_bytes": arena,
            "round/removed": entry.get("removed"),
            "round/accepted": (1.0 if entry.get("status") in ("accepted", "baseline", "finetuned") else 0.0)
            if "status" in entry else None,
        }
        if entry.get("params") and base.get("params"):
            scalars["size/compression"] = base["params"] / max(entry["params"], 1)
        if entry.get("macs") is not None and base.get("macs"):
            scalars["size/macs_reduction"] = 1.0 - entry["macs"] / base["macs"]
        with self._writer.as_default(step=step):
            for tag, value in scalars.items():
                if value is None:
                    continue
                value = float(value)
                if math.isfinite(value):
                    _scalar(tag, value)
            for layer, width in widths.items():
                _scalar(f"widths/{layer}", float(width))
            if widths:
                _text("widths", self._widths_table(widths, base.get("widths") or {}))
            if "status" in entry:
                _text("status", f"round {entry['round']}: {entry['status']}")
        self._writer.flush()

    @staticmethod
    def _widths_table(widths, base_widths) -> str:
        rows = ["| layer | channels | baseline |", "|---|---:|---:|"]
        for layer, width in widths.items():
            rows.append(f"| {layer} | {width} | {base_widths.get(layer, width)} |")
        return "\n".join(rows)

    def on_round_end(self, round_index, logs=None):
        """`kprune.RoundCallback` form: log every round of a `kprune.prune` run."""
        self.log(logs, model=self.model)

    def on_run_end(self, logs=None):
        self._writer.flush()

    def __call__(self, entry, model=None):
        """Plain-hook form: ``hook(entry, model)``."""
        self.log(entry, model=model)

    def close(self):
        """Flush and close the event file."""
        self._writer.flush()
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
