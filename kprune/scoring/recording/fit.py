"""Recording during `fit`: statistics of the training forward passes."""

import keras
import numpy as np
from keras import ops

from kprune.scoring.recording.view import RecordingView, reduce_batch


def _add(variable, delta):
    """variable += delta. On the backing tf.Variable: under a tf.distribute
    strategy the (aggregation='sum') accumulators then sum the replicas'
    deltas (Keras' own assign_add, ``assign(self + delta)``, would sum the
    replicas' totals)."""
    target = getattr(variable, "value", variable)
    if hasattr(target, "assign_add"):
        target.assign_add(delta)
    else:
        variable.assign_add(delta)


class RecordingModel(keras.Model):
    """Wraps `model` so that `fit` also records post-activation statistics.

    The wrapper calls a weight-sharing view of `model` (the same layer
    objects): training it trains `model` itself, no weight is copied. During
    training forward passes (``training=True``) each recorded tensor is
    reduced inside the graph and added to float64 accumulator variables; the
    wrapper's output is `model`'s output, so the usual loss and metrics apply.

    Example:
        >>> rec = RecordingModel(model)
        >>> rec.compile_from_config(model.get_compile_config())
        >>> rec.fit(x, y, epochs=1, callbacks=[RecordingCallback(rec)])
        >>> stats = rec.stats()          # ActivationStats of that epoch
        >>> # `model` now holds the trained weights
    """

    def __init__(self, model, groups=None, ignored_layers=(), **kwargs):
        super().__init__(name=kwargs.pop("name", f"{model.name}_recording"), **kwargs)
        if groups is None:
            from kprune.core.dependency import dependency_groups

            groups = dependency_groups(model, ignored_layers)
        view = RecordingView(model, groups, include_outputs=True)
        self._rview = view
        self.view_model = view.model
        self._n_out = view.num_outputs
        self._sum_vars, self._zero_vars = [], []
        for i, shape in enumerate(view.tensor_shapes):
            self._sum_vars.append(self.add_weight(
                shape=shape, dtype="float64", initializer="zeros",
                trainable=False, aggregation="sum", name=f"rec_sum_{i}"))
            self._zero_vars.append(self.add_weight(
                shape=shape[-1:], dtype="float64", initializer="zeros",
                trainable=False, aggregation="sum", name=f"rec_zeros_{i}"))
        self._count = self.add_weight(shape=(), dtype="float64", initializer="zeros",
                                      trainable=False, aggregation="sum",
                                      name="rec_count")

    def call(self, inputs, training=False):
        outs = self.view_model(inputs, training=training)
        model_outs = outs[: self._n_out]
        if training:
            for t, sv, zv in zip(outs[self._n_out:], self._sum_vars, self._zero_vars):
                pos_sum, zeros = reduce_batch(t)
                _add(sv, ops.cast(pos_sum, "float64"))
                _add(zv, ops.cast(zeros, "float64"))
            _add(self._count, ops.cast(ops.shape(outs[0])[0], "float64"))
        return model_outs[0] if self._n_out == 1 else list(model_outs)

    def reset_stats(self):
        """Zero the accumulators."""
        for v in self._sum_vars + self._zero_vars + [self._count]:
            v.assign(ops.zeros(v.shape, "float64"))

    def stats(self):
        """The accumulated statistics as `ActivationStats` (float64 copies)."""
        stats = self._rview.new_stats()
        count = int(round(float(self._count.numpy())))
        sums = [np.asarray(v.numpy()) for v in self._sum_vars]
        zeros = [np.asarray(v.numpy()) for v in self._zero_vars]
        for gi, slot in self._rview.slots.items():
            for (out_index, _), ps in zip(slot, stats.points[gi]):
                k = out_index - self._n_out
                ps.add(sums[k], zeros[k], count)
        return stats


class RecordingCallback(keras.callbacks.Callback):
    """Controls which training passes a `RecordingModel` records.

    Args:
        recorder: the `RecordingModel` being fit.
        scope: ``"last_epoch"`` (default: statistics of the final epoch only,
            the weights closest to the ones that will be pruned) or ``"all"``.

    After training, ``callback.result`` holds the `ActivationStats`.
    """

    def __init__(self, recorder, scope="last_epoch"):
        super().__init__()
        if scope not in ("last_epoch", "all"):
            raise ValueError(f"scope must be 'last_epoch' or 'all', got {scope!r}")
        self.recorder = recorder
        self.scope = scope
        self.result = None

    def on_train_begin(self, logs=None):
        self.recorder.reset_stats()

    def on_epoch_begin(self, epoch, logs=None):
        if self.scope == "last_epoch":
            self.recorder.reset_stats()

    def on_train_end(self, logs=None):
        self.result = self.recorder.stats()
