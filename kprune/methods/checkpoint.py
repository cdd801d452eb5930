"""Atomic per-round checkpoints: the round's model (.keras) and state (JSON).

Layout of ``out_dir``::

    round_000.keras        the baseline (round 0)
    round_001.keras ...    the model after each completed round
    rewind_001.keras ...   weight-rewinding reference, pruned alike (optional)
    state.json             written last: the commit point of a round

Every file is written to a temporary name in the same directory and moved
into place with `os.replace`, so a crash (even ``kill -9``) leaves either the
previous or the new version, never a torn file. `state.json` names the model
files it relies on; files of uncommitted rounds are ignored and overwritten.

Example:
    >>> ckpt = Checkpointer("runs/lenet")
    >>> ckpt.save_model(model, "round_001.keras")
    >>> ckpt.save_state(RunState(method="ilp", history=[baseline_entry]))
    >>> ckpt.load_state().method
    'ilp'
"""

import os
from typing import Optional

import keras

from kprune.atomic import atomic_save_model, atomic_write_text
from kprune.compat.keras_private import has_lambda, model_classes
from kprune.methods.state import RunState

STATE_FILE = "state.json"


class Checkpointer:
    """Writes and reads a pruning run's checkpoints in `out_dir`."""

    def __init__(self, out_dir, model=None):
        # Read checkpoints back with the run's own layer classes (custom
        # layers need no registration) and, only when the user's model has
        # Lambda layers (whose code the user already runs), outside safe mode.
        self.custom_objects = model_classes(model) if model is not None else {}
        self.safe_mode = not (model is not None and has_lambda(model))
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise ValueError(f"out_dir '{self.out_dir}' exists and is a file, not a "
                             "directory; pass a directory path (it is created if missing)")
        os.makedirs(self.out_dir, exist_ok=True)

    def path(self, name):
        return os.path.join(self.out_dir, name)

    def save_model(self, model, name):
        """Save `model` as `name` (a .keras file) atomically."""
        return atomic_save_model(model, self.path(name))

    def load_model(self, name):
        path = self.path(name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"checkpoint model '{path}' named in {STATE_FILE} is missing; "
                "the out_dir is damaged: remove it or use another out_dir")
        # Uncompiled: kprune recompiles from the run's compile config (a fresh
        # optimizer per round), so the saved optimizer state is not needed.
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=self.safe_mode,
                                           custom_objects=self.custom_objects)
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"checkpoint model '{path}' cannot be read back ({_first_line(e)}); if the "
                "model has custom layers, register them (@keras.saving."
                "register_keras_serializable) or pass them in "
                "keras.saving.custom_object_scope; if the file is damaged, remove "
                f"'{self.out_dir}' or use another out_dir") from e

    def save_state(self, state: RunState):
        """Write `state` as state.json (atomically: the commit point of a round)."""
        atomic_write_text(self.path(STATE_FILE), state.to_json())

    def load_state(self) -> Optional[RunState]:
        """The committed `RunState`, or None for a fresh out_dir."""
        p = self.path(STATE_FILE)
        if not os.path.exists(p):
            return None
        with open(p, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"checkpoint state '{p}' is not UTF-8 text ({e.reason}); it was not written "
                "by kprune: remove that out_dir (or use another one) to start a fresh "
                "run") from e
        return RunState.from_json(text, where=p)

    def cleanup_temporaries(self):
        for name in os.listdir(self.out_dir):
            if name.startswith(".tmp_"):
                try:
                    os.unlink(self.path(name))
                except OSError:
                    pass


def _first_line(e):
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__
