"""The dedicated calibration pass."""

import weakref

import numpy as np
import tensorflow as tf

from kprune.scoring.recording.view import RecordingView, reduce_batch


def record_activations(model, data, groups=None, batch_size=256, max_samples=None,
                       ignored_layers=(), apoz=True):
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
        apoz: also count zeros per channel (for APoZ). Costs one more read of
            every recorded activation; the mean / mean**p statistics alone
            add only a few percent to an inference pass.

    Returns:
        `ActivationStats`.

    Example:
        >>> stats = record_activations(model, x_train[:1000])
        >>> scores = stats.mean_power(stats.groups[0])
    """
    from kprune.data import iterate_inputs

    if groups is None:
        from kprune.core.dependency import dependency_groups

        groups = dependency_groups(model, ignored_layers)
    view, reducer = _cached_reducer(model, groups, apoz)
    stats = view.new_stats()
    seen = 0
    for x in iterate_inputs(data, batch_size=batch_size):
        if max_samples is not None and seen >= max_samples:
            break
        n = int(np.shape(tf.nest.flatten(x)[0])[0])
        if max_samples is not None and seen + n > max_samples:
            x = tf.nest.map_structure(lambda a: a[: max_samples - seen], x)
            n = max_samples - seen
        flat = reducer.predict_on_batch(x)
        if not isinstance(flat, (list, tuple)):
            flat = [flat]
        reduced = ([(flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)] if apoz
                   else [(f, None) for f in flat])
        _accumulate(view, stats, reduced, n)
        seen += n
    if seen == 0:
        raise ValueError("record_activations got no samples from `data`")
    return stats


_CACHE = weakref.WeakKeyDictionary()


def _cached_reducer(model, groups, apoz):
    """One view + reducer per (model, groups): repeated passes reuse the traced
    predict function instead of building and tracing a new model."""
    key = (apoz,) + tuple((g.index, g.channels, tuple((sp.path, sp.output_index) for sp in g.score_points))
                for g in groups)
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        view = RecordingView(model, groups)
        if len(per_model) >= 4:  # keep a few configurations alive, drop the oldest
            per_model.pop(next(iter(per_model)))
        per_model[key] = (view, reducing_model(view, apoz))
    view, reducer = per_model[key]
    view.groups = list(groups)
    return view, reducer


def reducing_model(view, apoz=True):
    """A functional model sharing `view`'s layers whose outputs are the
    in-graph per-batch reductions (position sums, zero counts) of every
    recorded tensor: only these small arrays leave the graph."""
    import keras

    outs = view.model.outputs[view.num_outputs:]
    flat = []
    for t in outs:
        pos_sum, zeros = reduce_batch(t, apoz)
        flat.extend([pos_sum, zeros] if apoz else [pos_sum])
    return keras.Model(view.model.inputs, flat, name=f"{view.model.name}_reducer")


def _accumulate(view, stats, reduced, n):
    for gi, slot in view.slots.items():
        for (out_index, _), ps in zip(slot, stats.points[gi]):
            pos_sum, zeros = reduced[out_index - view.num_outputs]
            ps.add(pos_sum, zeros, n)
