"""Activation recording: per-channel statistics of post-activation outputs.

Two ways to record, both over the tensors on which each prunable group's
channels are post-activation (`Group.score_points`), through one
weight-sharing multi-output view of the model (no weights are copied):

* `record_activations(model, data)`: a dedicated calibration pass.
* `RecordingModel(model)` + `fit`: statistics of the training forward passes.

Example:
    >>> stats = kprune.scoring.recording.record_activations(model, x_calib)
    >>> stats.mean_power(group, p=1)      # one score per group unit
"""

from kprune.scoring.recording.stats import ActivationStats, PointStats
from kprune.scoring.recording.view import recording_view
from kprune.scoring.recording.calibration import record_activations
from kprune.scoring.recording.fit import RecordingModel, RecordingCallback

__all__ = ["ActivationStats", "PointStats", "RecordingCallback", "RecordingModel",
           "record_activations", "recording_view"]
