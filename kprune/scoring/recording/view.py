"""A weight-sharing, multi-output view of a model onto its groups' score points."""

import keras
import numpy as np


class RecordingView:
    """`model` seen through the post-activation tensors of `groups`.

    Attributes:
        model: `keras.Model(model.inputs, [model outputs..., unique score-point
            tensors...])`; it calls the very same layer objects, so it shares
            every weight with the original (nothing is copied).
        num_outputs: how many leading outputs are the original model's.
        slots: {group index: [(view output index, ScorePoint), ...]}.
    """

    def __init__(self, model, groups, include_outputs=False):
        tensors, index_of, slots = [], {}, {}
        outputs = list(model.outputs) if include_outputs else []
        for g in groups:
            for sp in g.score_points:
                if sp.tensor is None:
                    continue
                key = id(sp.tensor)
                if key not in index_of:
                    index_of[key] = len(tensors)
                    tensors.append(sp.tensor)
                slots.setdefault(g.index, []).append(
                    (len(outputs) + index_of[key], sp))
        if not tensors:
            raise ValueError(
                f"model '{model.name}' has no prunable group with a recordable "
                "post-activation tensor (no prunable Conv/Dense channels?)")
        try:
            view = keras.Model(model.inputs, outputs + tensors,
                               name=f"{model.name}_recording_view")
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"cannot build an activation-recording view of model "
                f"'{model.name}': {e}. Activation recording needs the score "
                "tensors in the top-level functional graph; models with nested "
                "sub-models are not supported for activation criteria yet: use "
                "method='ilp' (weight norms) or flatten the model") from e
        self.model = view
        self.num_outputs = len(outputs)
        self.tensor_shapes = [tuple(t.shape[1:]) for t in tensors]
        self.slots = slots
        self.groups = list(groups)

    def new_stats(self):
        """Empty float64 accumulators, one per (group, score point)."""
        from kprune.scoring.recording.stats import ActivationStats, PointStats

        points = {}
        for gi, slot in self.slots.items():
            plist = []
            for out_index, sp in slot:
                shape = self.tensor_shapes[out_index - self.num_outputs]
                plist.append(PointStats(sp.path, np.asarray(sp.units),
                                        np.zeros(shape, np.float64),
                                        np.zeros(shape[-1:], np.float64)))
            points[gi] = plist
        return ActivationStats(self.groups, points)


def reduce_batch(tensor, apoz=True):
    """In-graph per-batch reduction: (sum over the batch at each position,
    count of values <= 0 per channel, or None without `apoz`). Both small;
    accumulate them in float64. Counting zeros reads every activation once
    more (about +25% of a ResNet-20 inference pass on CPU), so it is optional."""
    from keras import ops

    t = ops.cast(tensor, "float32")
    pos_sum = ops.sum(t, axis=0)
    if not apoz:
        return pos_sum, None
    axes = tuple(range(len(t.shape) - 1))
    zeros = ops.sum(ops.cast(t <= 0, "float32"), axis=axes)
    return pos_sum, zeros


def recording_view(model, groups=None, ignored_layers=()):
    """The weight-sharing recording view of `model` (see `RecordingView`).

    Example:
        >>> view = recording_view(model)
        >>> outs = view.model(x)    # one tensor per recorded score point
    """
    if groups is None:
        from kprune.core.dependency import dependency_groups

        groups = dependency_groups(model, ignored_layers)
    return RecordingView(model, groups)
