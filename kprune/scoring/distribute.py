"""Distributed retraining on each backend's own engine: TensorFlow's
``tf.distribute`` strategies, or on JAX a ``keras.distribution`` such as
``keras.distribution.DataParallel()`` (every device JAX sees).

`kprune.prune(..., strategy=strategy)` runs the whole pruning loop inside
``strategy.scope()``: every rebuilt (pruned) model, its optimizer and the
retraining ``fit`` live under the strategy, so Keras splits each global batch
across the replicas and all-reduces the gradients. Activation statistics of
the calibration pass are computed per replica on the strategy's distributed
dataset and summed across replicas (`record_activations`).

Helpers:

* `scope(strategy)`: ``strategy.scope()``, or a no-op for ``None``;
* `build(strategy, fn, *args)`: call a model/optimizer factory in the scope;
* `to_strategy(model, strategy)`: a copy of `model` whose variables live under
  the strategy (same weights, same compile configuration);
* `record_activations(model, data, strategy)`: `kprune.scoring.recording`'s
  statistics, gathered across replicas with ``strategy.reduce(SUM)``.

Example:
    >>> strategy = tf.distribute.MirroredStrategy()
    >>> with strategy.scope():
    ...     model = build_and_compile()
    >>> result = kprune.prune(model, "iap", train_data=(x, y), strategy=strategy)

On JAX the same argument takes a ``keras.distribution.Distribution``: the run
happens in ``distribution.scope()``, so the rebuilt models' variables are
laid out over its devices and Keras shards every ``fit`` / ``predict`` batch;
kprune's own passes (Taylor gradients, activation statistics) run on arrays
that JAX places itself:

    >>> result = kprune.prune(model, "iap", train_data=(x, y),
    ...                       strategy=keras.distribution.DataParallel())
"""

import contextlib
from typing import Callable, Optional

import numpy as np

__all__ = ["build", "check_strategy", "record_activations", "scope", "to_strategy",
           "uses_strategy", "uses_strategy_variable"]


def check_strategy(strategy):
    """Raises TypeError unless `strategy` is None, a ``tf.distribute.Strategy``
    (TensorFlow backend) or a ``keras.distribution.Distribution`` such as
    ``DataParallel`` (JAX backend); ValueError when it does not fit the
    running backend."""
    if strategy is None:
        return None
    from kprune.compat import backend

    backend.check_strategy(strategy)
    return strategy


def is_keras_distribution(strategy) -> bool:
    """True for a ``keras.distribution.Distribution`` (JAX's data parallelism):
    Keras itself shards every batch of ``fit`` / ``predict`` over its devices,
    so kprune's own passes run as on one device."""
    from kprune.compat import backend

    return strategy is not None and backend.is_distribution(strategy)


def engine(strategy):
    """The ``tf.distribute`` strategy kprune's own passes must drive, or None
    (no strategy, or a ``keras.distribution`` that Keras drives)."""
    return None if is_keras_distribution(strategy) else strategy


def scope(strategy):
    """``strategy.scope()``, or a no-op context for ``strategy=None``.

    Example:
        >>> with scope(strategy):
        ...     pruned = kprune.remove_channels(model, {"conv1": [0, 3]})
    """
    if strategy is None:
        return contextlib.nullcontext()
    return check_strategy(strategy).scope()


def build(strategy, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` called inside ``strategy.scope()``: the models
    and optimizers it creates are mirrored/sharded by the strategy.

    Example:
        >>> model = build(strategy, kprune.zoo.lenet5)
    """
    with scope(strategy):
        return fn(*args, **kwargs)


def uses_strategy(model, strategy) -> bool:
    """True when `model`'s variables were created under `strategy` (or when
    `strategy` is None)."""
    if strategy is None:
        return True
    return all(uses_strategy_variable(v, strategy) for v in model.weights)


def uses_strategy_variable(variable, strategy) -> bool:
    """True when `variable` (a Keras or tf variable) was created under `strategy`
    (a ``keras.distribution``: its value is laid out over the distribution's
    devices)."""
    if is_keras_distribution(strategy):
        from kprune.compat import backend

        return backend.laid_out(variable, strategy)
    import tensorflow as tf

    inner = getattr(variable, "value", variable)
    return isinstance(inner, tf.Variable) and strategy.extended.variable_created_in_scope(inner)


def to_strategy(model, strategy):
    """`model` with its variables under `strategy`: `model` itself when they
    already are, else a clone built in ``strategy.scope()`` with the same
    weights and (if `model` was compiled) the same compile configuration and a
    fresh optimizer.

    Example:
        >>> mirrored = to_strategy(model, tf.distribute.MirroredStrategy())
    """
    import keras

    if strategy is None or uses_strategy(model, strategy):
        return model
    compile_config = None
    if getattr(model, "compiled", False) and getattr(model, "optimizer", None) is not None:
        compile_config = model.get_compile_config()
    with scope(strategy):
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        if compile_config:
            clone.compile_from_config(compile_config)
    return clone


def _input_dataset(data, batch_size, max_samples):
    """A batched tf.data.Dataset of model inputs (labels dropped)."""
    import tensorflow as tf

    from kprune import data as training

    if isinstance(data, tf.data.Dataset):
        ds = data.map(lambda *e: e[0])
        if max_samples is not None:
            ds = ds.unbatch().take(max_samples).batch(batch_size)
        return ds
    if isinstance(data, np.ndarray):
        x = data
    else:
        d = data if isinstance(data, training.Data) else training.as_data(data, batch_size)
        if d.kind == "numpy":
            x = d.x
        else:  # PyDataset / dataset wrapped in Data: gather the inputs
            parts, seen = [], 0
            for batch in training.iterate_inputs(d, batch_size):
                batch = tf.nest.map_structure(np.asarray, batch)
                parts.append(batch)
                seen += len(tf.nest.flatten(batch)[0])
                if max_samples is not None and seen >= max_samples:
                    break
            if not parts:
                raise ValueError("record_activations got no samples from `data`")
            x = tf.nest.map_structure(lambda *a: np.concatenate(a), *parts)
    if max_samples is not None:
        x = tf.nest.map_structure(lambda a: a[:max_samples], x)
    return tf.data.Dataset.from_tensor_slices(x).batch(batch_size)


def record_activations(model, data, strategy, groups=None, batch_size: int = 256,
                       max_samples: Optional[int] = None, ignored_layers=(), apoz=True):
    """`kprune.scoring.recording.record_activations` on a ``tf.distribute`` strategy.

    Each global batch is split across the replicas by
    ``strategy.experimental_distribute_dataset``; every replica runs the
    weight-sharing recording view on its shard and reduces it inside the graph
    to per-position sums and per-channel zero counts; these (and the sample
    counts) are summed across replicas with ``strategy.reduce(SUM)`` and
    accumulated in float64. The statistics equal the single-device pass up to
    float32 summation order.

    Args:
        model: a Functional/Sequential model (ideally built in the scope).
        data: numpy inputs, ``(x, y)``, a batched ``tf.data.Dataset``, a
            ``keras.utils.PyDataset`` or `kprune.data.Data` (labels ignored).
        strategy: a ``tf.distribute.Strategy``; None falls back to the
            single-device `kprune.scoring.recording.record_activations`.
        groups: dependency groups (default: ``kprune.dependency_groups(model)``).
        batch_size: global batch size for numpy inputs.
        max_samples: stop after this many samples.
        apoz: also count zeros per channel (APoZ statistics).

    Returns:
        `kprune.scoring.recording.ActivationStats`.

    Example:
        >>> stats = record_activations(model, x_calib, tf.distribute.MirroredStrategy())
        >>> stats.mean_power(stats.groups[0], p=1)
    """
    import tensorflow as tf

    from kprune.scoring.recording import record_activations as single_device
    from kprune.scoring.recording.calibration import reducing_model
    from kprune.scoring.recording.view import RecordingView

    if engine(strategy) is None:
        kwargs = {} if apoz else {"apoz": False}
        return single_device(model, data, groups=groups, batch_size=batch_size,
                             max_samples=max_samples, ignored_layers=ignored_layers, **kwargs)
    check_strategy(strategy)
    if groups is None:
        from kprune.core.dependency import dependency_groups

        groups = dependency_groups(model, ignored_layers)
    view = RecordingView(model, groups)
    stats = view.new_stats()
    with strategy.scope():
        reducer = reducing_model(view, apoz) if not apoz else reducing_model(view)
    dist = strategy.experimental_distribute_dataset(
        _input_dataset(data, batch_size, max_samples))
    sum_ = tf.distribute.ReduceOp.SUM

    def replica_step(x):
        flat = reducer(x, training=False)
        flat = flat if isinstance(flat, (list, tuple)) else [flat]
        n = tf.shape(tf.nest.flatten(x)[0])[0]
        return [tf.cast(t, tf.float64) for t in flat] + [tf.cast(n, tf.float64)]

    @tf.function(reduce_retracing=True)
    def step(x):
        per_replica = strategy.run(replica_step, args=(x,))
        return [strategy.reduce(sum_, t, axis=None) for t in per_replica]

    seen = 0
    for x in dist:
        out = [t.numpy() for t in step(x)]
        n = int(round(out[-1]))
        reduced = out[:-1]
        per_tensor = 2 if apoz else 1
        for gi, slot in view.slots.items():
            for (out_index, _), ps in zip(slot, stats.points[gi]):
                k = per_tensor * (out_index - view.num_outputs)
                ps.add(reduced[k], reduced[k + 1] if apoz else None, n)
        seen += n
    if seen == 0:
        raise ValueError("record_activations got no samples from `data`")
    return stats
