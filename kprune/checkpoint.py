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
    >>> ckpt.save_state({"completed_rounds": 1, ...})
    >>> ckpt.load_state()["completed_rounds"]
    1
"""

import json
import os

import keras

from kprune._keras_compat import has_lambda, model_classes
from kprune.atomic import atomic_save_model, atomic_write_text

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

    def save_state(self, state):
        atomic_write_text(self.path(STATE_FILE), json.dumps(state, indent=1, sort_keys=True))

    def load_state(self):
        """The committed state, or None for a fresh out_dir."""
        p = self.path(STATE_FILE)
        if not os.path.exists(p):
            return None
        try:
            with open(p) as f:
                state = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(
                f"checkpoint state '{p}' is not valid JSON ({_first_line(e)}); it was not "
                "written by kprune or was edited by hand: remove that out_dir (or use "
                "another one) to start a fresh run") from e
        missing = [k for k in ("fingerprint", "history", "controller", "best_round", "done",
                               "reason", "current_file") if k not in state]
        if not isinstance(state, dict) or missing:
            raise ValueError(
                f"checkpoint state '{p}' lacks {missing or 'a JSON object'}; it was not "
                "written by this kprune version: use another out_dir to start a fresh run")
        return state

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
