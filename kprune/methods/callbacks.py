"""Round hooks of a pruning run, in the style of `keras.callbacks.Callback`.

A `RoundCallback` gets ``on_run_begin``, ``on_round_begin(round_index)``,
``on_round_end(round_index, logs)`` and ``on_run_end(logs)``. ``logs`` of a
round is its history entry as a dict (as in `kprune.PruneResult.history`);
during ``on_round_end``, ``self.model`` is that round's model (None for a
discarded round that has none).

Example:
    >>> class PrintRound(kprune.RoundCallback):
    ...     def on_round_end(self, round_index, logs=None):
    ...         print(round_index, logs["status"], logs["params"])
    >>> kprune.prune(model, "iap", train_data=(x, y), callbacks=[PrintRound()])
"""

from typing import Callable, Dict, Iterable, Optional


class RoundCallback:
    """Base class of round hooks (all methods are optional no-ops)."""

    def __init__(self):
        self.model = None

    def set_model(self, model):
        self.model = model

    def on_run_begin(self, logs: Optional[Dict] = None):
        """The run starts (or resumes); ``logs['resumed_after']`` is the last
        completed round of a resumed run."""

    def on_round_begin(self, round_index: int, logs: Optional[Dict] = None):
        """A round's retraining is about to start."""

    def on_round_end(self, round_index: int, logs: Optional[Dict] = None):
        """A round was recorded; ``logs`` is its history entry."""

    def on_run_end(self, logs: Optional[Dict] = None):
        """The run is done; ``logs`` has ``final_round`` and ``reason``."""


class LambdaRoundCallback(RoundCallback):
    """A callback from a plain function ``fn(entry, model)`` called at every
    round's end (`kprune.prune`'s ``on_round=``).

    Example:
        >>> kprune.prune(model, "ilp", train_data=(x, y),
        ...              on_round=lambda entry, model: print(entry["round"]))
    """

    def __init__(self, on_round: Callable):
        super().__init__()
        if not callable(on_round):
            raise TypeError(f"on_round must be a callable on_round(entry, model), got "
                            f"{on_round!r}")
        self.fn = on_round

    def on_round_end(self, round_index, logs=None):
        self.fn(logs, self.model)


class CallbackList(RoundCallback):
    """Calls every callback of a list in order."""

    def __init__(self, callbacks: Iterable[RoundCallback] = ()):
        super().__init__()
        self.callbacks = []
        for cb in callbacks or ():
            if not isinstance(cb, RoundCallback):
                raise TypeError(
                    f"callbacks must be kprune.RoundCallback instances, got {cb!r}; wrap a "
                    "function fn(entry, model) with on_round=fn (or LambdaRoundCallback(fn))")
            self.callbacks.append(cb)

    def set_model(self, model):
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def on_run_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_run_begin(logs)

    def on_round_begin(self, round_index, logs=None):
        for cb in self.callbacks:
            cb.on_round_begin(round_index, logs)

    def on_round_end(self, round_index, logs=None):
        for cb in self.callbacks:
            cb.on_round_end(round_index, logs)

    def on_run_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_run_end(logs)
