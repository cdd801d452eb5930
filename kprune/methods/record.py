"""The run's record: its `RunState` (history, the model to return, the
method's controller state) with the models it refers to, kept in memory or
checkpointed atomically under ``out_dir`` (`RunRecord`).

Methods read the record through a few names: ``current`` (the model the
next round prunes), ``next_round``, ``history`` / ``baseline`` /
``best_round`` / ``best``, ``method_state(cls)`` / ``store(state)``; they
change it only through `kprune.methods.run.Run.commit` and `roll_back`.

Example:
    >>> record = RunRecord(model)             # no out_dir: models in memory
    >>> record.next_round
    0
"""

from typing import Optional

from kprune.methods.checkpoint import Checkpointer
from kprune.methods.state import RoundEntry, RunState, model_file, rewind_file


class RunRecord:
    """See the module docstring. With `out_dir` every commit is saved."""

    def __init__(self, original, out_dir=None, fingerprint=None, method: str = ""):
        self.original = original
        self.ckpt = Checkpointer(out_dir, original) if out_dir else None
        self.out_dir = self.ckpt.out_dir if self.ckpt else None
        self.state = RunState(fingerprint=fingerprint, method=method)
        self.current = None         # the model the next round starts from
        self.current_rewind = None  # its weight-rewinding reference
        self.current_stats = None   # activation statistics recorded while training it
        self._models = {}           # round -> model (in memory when no out_dir)

    # -- reading -----------------------------------------------------------------
    @property
    def history(self):
        return self.state.history

    @property
    def baseline(self) -> Optional[RoundEntry]:
        return self.history[0] if self.history else None

    @property
    def best_round(self) -> int:
        return self.state.best_round

    @property
    def best(self) -> Optional[RoundEntry]:
        """The entry of the model to return."""
        return self.state.entry(self.state.best_round)

    @property
    def next_round(self) -> int:
        return self.state.last_round + 1

    @property
    def done(self) -> bool:
        return self.state.done

    @property
    def reason(self) -> str:
        return self.state.reason

    def entry(self, round_index: int) -> Optional[RoundEntry]:
        return self.state.entry(round_index)

    def model_of_round(self, r):
        if self.ckpt is None:
            return self._models.get(0, self.original) if r == 0 else self._models[r]
        return self.ckpt.load_model(model_file(r))

    # -- the method's controller state ---------------------------------------------
    def method_state(self, cls):
        """The method's controller state as dataclass `cls`."""
        return self.state.method_state(cls)

    def store(self, method_state, save=False):
        """Keep `method_state` (saved with the next commit, or now with `save`)."""
        self.state.store_method_state(method_state)
        if save:
            self.save()

    @property
    def report_target(self):
        return self.state.controller.get("report_target")

    # -- writing --------------------------------------------------------------------
    def resume(self) -> Optional[int]:
        """Load the checkpoint of `out_dir` (the round it ends at), or None
        for a fresh run. ValueError when it holds another run."""
        if self.ckpt is None:
            return None
        self.ckpt.cleanup_temporaries()
        state = self.ckpt.load_state()
        if state is None:
            return None
        if state.fingerprint != self.state.fingerprint:
            raise ValueError(
                f"out_dir '{self.out_dir}' holds another run (method {state.method!r}): its "
                "model weights, data or settings differ from this call's; use a new out_dir, "
                "or the same model, data and arguments to resume")
        self.state = state
        self.current = self.ckpt.load_model(model_file(state.current_round))
        if state.has_rewind:
            self.current_rewind = self.ckpt.load_model(rewind_file(state.current_round))
        return state.last_round

    def add(self, entry: RoundEntry, model=None, rewind=None, stats=None, accept=False,
            best=False):
        """Append `entry`; `accept` makes `model` the current one, `best` the
        one to return."""
        r = entry.round
        if accept and model is not None:
            self.current, self.current_rewind, self.current_stats = model, rewind, stats
        self.history.append(entry)
        if best:
            self.state.best_round = r
        if accept:
            self.state.current_round = r
            self.state.has_rewind = self.current_rewind is not None
            if self.ckpt is None:
                self._models[r] = self.current
            else:
                self.ckpt.save_model(self.current, model_file(r))
                if self.current_rewind is not None:
                    self.ckpt.save_model(self.current_rewind, rewind_file(r))
        self.save()

    def roll_back(self, r: int):
        """Make accepted round `r`'s model the current one again."""
        if self.ckpt is None:
            self.current = self._models[r]
        else:
            self.current = self.ckpt.load_model(model_file(r))
            if self.current_rewind is not None:
                self.current_rewind = self.ckpt.load_model(rewind_file(r))
        self.current_stats = None
        self.state.current_round = r

    def mark_done(self, reason: str, report_target=None):
        self.state.done = True
        self.state.reason = reason
        if report_target is not None:
            self.state.controller["report_target"] = report_target
        self.save()

    def save(self):
        if self.ckpt is not None:
            self.ckpt.save_state(self.state)
