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
import tempfile

import keras

STATE_FILE = "state.json"


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text):
    """Write `text` to `path` atomically (temp file + fsync + rename)."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(d)


class Checkpointer:
    """Writes and reads a pruning run's checkpoints in `out_dir`."""

    def __init__(self, out_dir):
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        os.makedirs(self.out_dir, exist_ok=True)

    def path(self, name):
        return os.path.join(self.out_dir, name)

    def save_model(self, model, name):
        """Save `model` as `name` (a .keras file) atomically."""
        if not name.endswith(".keras"):
            raise ValueError(f"model file name must end with .keras, got {name!r}")
        fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".keras", dir=self.out_dir)
        os.close(fd)
        try:
            model.save(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path(name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        _fsync_dir(self.out_dir)
        return self.path(name)

    def load_model(self, name):
        path = self.path(name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"checkpoint model '{path}' named in {STATE_FILE} is missing; "
                "the out_dir is damaged: remove it or use another out_dir")
        # Uncompiled: kprune recompiles from the run's compile config (a fresh
        # optimizer per round), so the saved optimizer state is not needed.
        return keras.saving.load_model(path, compile=False)

    def save_state(self, state):
        atomic_write_text(self.path(STATE_FILE), json.dumps(state, indent=1, sort_keys=True))

    def load_state(self):
        """The committed state, or None for a fresh out_dir."""
        p = self.path(STATE_FILE)
        if not os.path.exists(p):
            return None
        with open(p) as f:
            return json.load(f)

    def cleanup_temporaries(self):
        for name in os.listdir(self.out_dir):
            if name.startswith(".tmp_"):
                try:
                    os.unlink(self.path(name))
                except OSError:
                    pass
