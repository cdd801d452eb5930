"""The typed state of a pruning run: round entries, their status, the run.

A run's history is a list of `RoundEntry` (round 0 is the baseline); each
has a `RoundStatus`. `RunState` is what a checkpoint holds (written as JSON
by `kprune.methods.checkpoint.Checkpointer`): history, the model to return,
whether the run is done and why, and the method's own controller state (a
small dataclass per method, see `RunState.method_state`).

Example:
    >>> entry = RoundEntry(round=1, status=RoundStatus.ACCEPTED, val_accuracy=0.9,
    ...                    params=1000, macs=5000, widths={"conv1": 4})
    >>> entry.to_dict()["status"]
    'accepted'
"""

import dataclasses
import enum
import json
from typing import Any, Dict, List, Optional

from kprune.atomic import json_default

#: Version of the state.json layout.
STATE_VERSION = 2


class RoundStatus(str, enum.Enum):
    """What became of a round. A `str` enum: ``status == "accepted"`` works."""

    BASELINE = "baseline"            # round 0, the unpruned model
    ACCEPTED = "accepted"            # the round's model became the current model
    VIOLATED = "violated"            # retrained, broke the target, rolled back (AIAP)
    NAN_DISCARDED = "nan_discarded"  # NaN loss or weights: discarded
    FINETUNED = "finetuned"          # the final fine-tuning of the returned model

    def __str__(self):
        return self.value

    @property
    def keeps_model(self) -> bool:
        """Whether a model of this status may be returned."""
        return self in (RoundStatus.BASELINE, RoundStatus.ACCEPTED, RoundStatus.FINETUNED)


_FIELDS = ("round", "status", "val_accuracy", "params", "macs", "widths", "removed",
           "removed_by_group", "feasible", "time_s")


@dataclasses.dataclass
class RoundEntry:
    """One round of the history. Method-specific values (``rate``,
    ``threshold``, ``step``, ``from_round``, ``epochs``, measured latency...)
    live in ``info``; `to_dict` flattens them beside the fixed fields, as
    `kprune.PruneResult.history` shows them."""

    round: int
    status: RoundStatus
    val_accuracy: Optional[float] = None
    params: int = 0
    macs: int = 0
    widths: Dict[str, int] = dataclasses.field(default_factory=dict)
    removed: int = 0
    removed_by_group: Dict[str, int] = dataclasses.field(default_factory=dict)
    feasible: bool = False
    time_s: float = 0.0
    info: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.status = RoundStatus(self.status)

    def to_dict(self) -> Dict[str, Any]:
        d = {k: getattr(self, k) for k in _FIELDS}
        d["status"] = self.status.value
        d.update(self.info)
        return _jsonable(d)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RoundEntry":
        if not isinstance(d, dict) or "round" not in d or "status" not in d:
            raise ValueError(f"not a round entry: {d!r}")
        fixed = {k: d[k] for k in _FIELDS if k in d}
        info = {k: v for k, v in d.items() if k not in _FIELDS}
        return cls(**fixed, info=info)

    def __getitem__(self, key):  # read access like the dicts of PruneResult.history
        return self.to_dict()[key]


@dataclasses.dataclass
class RunState:
    """What a run knows between rounds (and what its checkpoint stores)."""

    fingerprint: Optional[str] = None
    method: str = ""
    history: List[RoundEntry] = dataclasses.field(default_factory=list)
    controller: Dict[str, Any] = dataclasses.field(default_factory=dict)
    best_round: int = 0
    current_round: int = 0
    done: bool = False
    reason: str = ""
    has_rewind: bool = False

    @property
    def last_round(self) -> int:
        return self.history[-1].round if self.history else -1

    @property
    def baseline(self) -> RoundEntry:
        return self.history[0]

    def entry(self, round_index: int, model_only=True) -> Optional[RoundEntry]:
        """The entry of `round_index` whose model exists (the last one recorded)."""
        for e in reversed(self.history):
            if e.round == round_index and (not model_only or e.status.keeps_model):
                return e
        return None

    def method_state(self, cls):
        """The method's controller state as dataclass `cls` (its defaults for
        a fresh run). Changes are saved with `store_method_state`."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in self.controller.items() if k in names})

    def store_method_state(self, value):
        self.controller.update(dataclasses.asdict(value))

    # -- JSON --------------------------------------------------------------------------
    def to_json(self) -> str:
        d = {"version": STATE_VERSION, "fingerprint": self.fingerprint, "method": self.method,
             "history": [e.to_dict() for e in self.history],
             "controller": _jsonable(self.controller), "best_round": self.best_round,
             "current_round": self.current_round, "done": self.done, "reason": self.reason,
             "has_rewind": self.has_rewind,
             # for a reader of the file: the checkpoints the state relies on
             "current_file": model_file(self.current_round),
             "rewind_file": rewind_file(self.current_round) if self.has_rewind else None}
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "state.json") -> "RunState":
        """Parse a checkpoint's state; ValueError naming `where` and the fix."""
        try:
            d = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(
                f"checkpoint state '{where}' is not valid JSON ({_first_line(e)}); it was "
                "not written by kprune or was edited by hand: remove that out_dir (or use "
                "another one) to start a fresh run") from e
        keys = ("fingerprint", "history", "controller", "best_round", "done", "reason",
                "current_round")
        missing = [k for k in keys if k not in d] if isinstance(d, dict) else ["a JSON object"]
        if missing or d.get("version") != STATE_VERSION:
            raise ValueError(
                f"checkpoint state '{where}' lacks {missing} or has layout version "
                f"{d.get('version') if isinstance(d, dict) else None} (this kprune writes "
                f"{STATE_VERSION}); it was not written by this kprune version: use another "
                "out_dir to start a fresh run")
        try:
            history = [RoundEntry.from_dict(e) for e in d["history"]]
        except (TypeError, ValueError) as e:
            raise ValueError(f"checkpoint state '{where}' has a damaged history ({e}); use "
                             "another out_dir to start a fresh run") from e
        if not history:
            raise ValueError(f"checkpoint state '{where}' has an empty history; use another "
                             "out_dir to start a fresh run")
        return cls(fingerprint=d["fingerprint"], method=d.get("method", ""), history=history,
                   controller=dict(d["controller"]), best_round=int(d["best_round"]),
                   current_round=int(d["current_round"]), done=bool(d["done"]),
                   reason=str(d["reason"]), has_rewind=bool(d.get("has_rewind")))


def model_file(round_index: int) -> str:
    """The checkpoint file of an accepted round's model."""
    return f"round_{round_index:03d}.keras"


def rewind_file(round_index: int) -> str:
    """The checkpoint file of an accepted round's weight-rewinding reference."""
    return f"rewind_{round_index:03d}.keras"


def _first_line(e):
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__


def _jsonable(value):
    """`value` with numpy scalars/arrays turned into Python numbers/lists."""
    return json.loads(json.dumps(value, default=json_default))
