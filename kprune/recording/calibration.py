"""The dedicated calibration pass."""

import numpy as np
import tensorflow as tf

from kprune.recording.view import RecordingView, reduce_batch


def record_activations(model, data, groups=None, batch_size=256, max_samples=None,
                       ignored_layers=()):
    """Per-channel post-activation statistics of `model` over `data`.

    One inference pass (``training=False``) through the weight-sharing
    recording view; each batch is reduced inside the graph to per-position
    sums and per-channel zero counts, accumulated in float64.

    Args:
        model: a Functional/Sequential Keras model.
        data: numpy array of inputs, an ``(x, y)`` tuple, a ``tf.data.Dataset``
            or a ``keras.utils.PyDataset`` (labels are ignored).
        groups: dependency groups (default: ``kprune.dependency_groups(model)``).
        batch_size: for numpy inputs.
        max_samples: stop after this many samples.

    Returns:
        `ActivationStats`.

    Example:
        >>> stats = record_activations(model, x_train[:1000])
        >>> scores = stats.mean_power(stats.groups[0])
    """
    from kprune.training import iterate_inputs

    if groups is None:
        from kprune.dependency import dependency_groups

        groups = dependency_groups(model, ignored_layers)
    view = RecordingView(model, groups)
    stats = view.new_stats()
    vm = view.model

    @tf.function(reduce_retracing=True)
    def step(x):
        outs = vm(x, training=False)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        return [reduce_batch(o) for o in outs]

    seen = 0
    for x in iterate_inputs(data, batch_size=batch_size):
        if max_samples is not None and seen >= max_samples:
            break
        n = int(tf.shape(tf.nest.flatten(x)[0])[0])
        if max_samples is not None and seen + n > max_samples:
            x = tf.nest.map_structure(lambda a: a[: max_samples - seen], x)
            n = max_samples - seen
        reduced = step(x)
        _accumulate(view, stats, [(a.numpy(), b.numpy()) for a, b in reduced], n)
        seen += n
    if seen == 0:
        raise ValueError("record_activations got no samples from `data`")
    return stats


def _accumulate(view, stats, reduced, n):
    for gi, slot in view.slots.items():
        for (out_index, _), ps in zip(slot, stats.points[gi]):
            pos_sum, zeros = reduced[out_index - view.num_outputs]
            ps.add(pos_sum, zeros, n)
