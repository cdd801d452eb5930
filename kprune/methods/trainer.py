"""Retraining, evaluation and distillation of a pruning run: `Trainer`.

Every round retrains a freshly compiled copy of the pruned model (a new
optimizer from the user's compile configuration: learning-rate rewinding), or
the user's ``fit_fn``; NaN losses and weights are detected; BatchNorm moving
statistics are re-estimated after training; with ``distill=`` the unpruned
model's outputs are the soft targets (once per sample for numpy data, per
batch for streams: `kprune.methods.distillation`).

Example:
    >>> trainer = Trainer(config, run_data)
    >>> outcome = trainer.retrain(model, epochs=1, round_index=3)
    >>> trainer.evaluate(model)
    0.91
"""

import copy
import dataclasses
import math
import time
import warnings
from typing import Any, Callable, Optional

import keras
import numpy as np

from kprune.compat import backend
from kprune.compat.keras_private import build_for_training, inbound_node_count
from kprune.data import Data, evaluate_accuracy, iterate_inputs
from kprune.methods.distillation import (DistillStream, distill_targets, distillation_loss,  # noqa: F401
                                         from_logits as _from_logits)
from kprune.methods.phases import timed


def compile_config_of(model):
    """The model's compile configuration (loss, metrics, optimizer config), or
    None when it is not compiled. Raises ValueError when it was compiled with
    something that cannot be serialized (pass `fit_fn` instead)."""
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        return None
    try:
        cfg = model.get_compile_config()
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"the compile configuration of model '{model.name}' cannot be "
            f"serialized ({e}); pass fit_fn= to train it yourself") from e
    if not cfg:
        raise ValueError(
            f"model '{model.name}' has no serializable compile configuration; "
            "pass fit_fn= to train it yourself")
    for key in ("loss", "metrics", "optimizer"):
        if cfg.get(key) is None:
            continue
        try:  # kprune recompiles every round from this config: it must load back
            keras.saving.deserialize_keras_object(cfg[key]) if key != "metrics" else [
                keras.metrics.get(m) for m in keras.tree.flatten(cfg[key])
                if m is not None]
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"model '{model.name}' was compiled with a {key} that kprune cannot "
                f"re-create for retraining ({str(e).splitlines()[0] if str(e) else e}); "
                "register it with @keras.saving.register_keras_serializable(), or pass "
                "fit_fn=(model, data, epochs) to train it yourself") from e
    return cfg


def recompile(model, compile_config):
    """Compile `model` from `compile_config`: a fresh optimizer of the same
    config (iterations 0, so a learning-rate schedule starts over)."""
    model.compile_from_config(compile_config)
    return model


class _StepClock(keras.callbacks.Callback):
    """Times the train steps of each ``fit`` call; `tracing_s` estimates what
    tracing cost: per call, the first step's time above the median of the
    others (the first step of a fresh model traces its train function)."""

    def __init__(self):
        super().__init__()
        self.tracing_s = 0.0
        self._steps, self._t0 = [], None

    def on_train_begin(self, logs=None):
        self._steps = []

    def on_train_batch_begin(self, batch, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._t0 is not None:
            self._steps.append(time.perf_counter() - self._t0)

    def on_train_end(self, logs=None):
        if len(self._steps) >= 2:
            self.tracing_s += max(0.0, self._steps[0] - float(np.median(self._steps[1:])))


class _NaNStop(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.hit = False

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.hit = True
            self.model.stop_training = True


@dataclasses.dataclass
class FitOutcome:
    """What one retraining run produced."""

    epochs: int
    nan: bool
    losses: list
    stats: Any = None  # ActivationStats when recorded during fit
    #: seconds of the training time spent tracing the train step (estimated:
    #: each fit's first step minus the median of its other steps)
    tracing_s: float = 0.0


def weights_finite(model) -> bool:
    """True when every weight of `model` is finite."""
    return all(np.all(np.isfinite(w)) for w in model.get_weights())


def _with_cosine(compile_config, steps):
    cfg = copy.deepcopy(compile_config)
    opt = cfg["optimizer"]
    conf = opt["config"] if isinstance(opt, dict) else None
    if conf is None or "learning_rate" not in conf:
        raise ValueError("lr_schedule='cosine' needs a compiled optimizer with a "
                         "learning_rate (compile the model with e.g. Adam(1e-3))")
    lr = conf["learning_rate"]
    if isinstance(lr, dict):  # already a schedule: its initial rate
        lr = lr.get("config", {}).get("initial_learning_rate", 1e-3)
    conf["learning_rate"] = keras.optimizers.schedules.serialize(
        keras.optimizers.schedules.CosineDecay(float(lr), max(1, int(steps))))
    return cfg


def fit_once(model, data: Data, epochs: int, compile_config=None,
             fit_fn: Optional[Callable] = None, callbacks=(), verbose=0,
             record_groups=None, shuffle=True, lr_schedule=None, distill=None,
             teacher_outputs=None, teacher=None, shuffle_seed=None) -> FitOutcome:
    """Train `model` in place for `epochs` with a fresh optimizer.

    With `fit_fn`, calls ``fit_fn(model, data, epochs)`` where data is what the
    user passed (numpy tuple, Dataset or PyDataset) and expects the model to be
    trained in place. Otherwise recompiles from `compile_config` (fresh
    optimizer: learning-rate rewinding) and calls `model.fit`. With
    `record_groups`, trains through a `RecordingModel` and returns the
    post-activation statistics of the last epoch's training passes.

    With `distill` ``(weight, temperature)``, trains on `distillation_loss`
    against the teacher's outputs: `teacher_outputs` (one row per numpy
    sample) or, for numpy data without them and for streams, `teacher` (the
    unpruned model; a stream gets its outputs per batch, `DistillStream`).

    Numpy data is shuffled by kprune (`_fit_arrays`), from `shuffle_seed`
    when given: the same batches on every backend.

    Detects a NaN/inf loss or non-finite weights (``outcome.nan``).

    Example:
        >>> out = fit_once(model, as_data((x, y)), 2, compile_config_of(model))
        >>> out.nan
        False
    """
    if epochs <= 0:
        return FitOutcome(0, not weights_finite(model), [])
    if fit_fn is not None:
        user = (data.x, data.y) if data.kind == "numpy" else data.source
        with warnings.catch_warnings():
            fit_fn(model, user, epochs)
        return FitOutcome(epochs, not weights_finite(model), [])
    if compile_config is None:
        raise ValueError(
            f"model '{model.name}' is not compiled: compile it (optimizer, loss, "
            "metrics) or pass fit_fn= to train it yourself")
    nan_cb, clock = _NaNStop(), _StepClock()
    cbs = [nan_cb, clock] + list(callbacks)
    target = model
    rec_cb = None
    if record_groups is not None:
        from kprune.scoring.recording import RecordingCallback, RecordingModel

        target = RecordingModel(model, groups=record_groups)
        rec_cb = RecordingCallback(target)
        cbs.append(rec_cb)
    cfg = compile_config
    if lr_schedule == "cosine":
        if data.kind == "numpy":
            per_epoch = math.ceil(len(data) / data.batch_size)
        else:
            try:
                per_epoch = len(data.source)
            except TypeError:
                n = int(data.source.cardinality()) if hasattr(data.source, "cardinality") else -1
                if n < 0:
                    raise ValueError("lr_schedule='cosine' needs data of known length "
                                     "(numpy arrays, a PyDataset or a finite Dataset)")
                per_epoch = n
        cfg = _with_cosine(compile_config, per_epoch * epochs)
    y = data.y if data.kind == "numpy" else None
    source = data.source
    if distill is not None:
        if data.kind == "numpy":
            if teacher_outputs is None:
                if teacher is None:
                    raise ValueError("distill= needs teacher_outputs= or teacher=")
                teacher_outputs = teacher.predict(data.x, batch_size=1024, verbose=0)
            y = distill_targets(data.y, teacher_outputs)
        else:  # a stream: the teacher's outputs per batch, while training
            if teacher is None:
                raise ValueError("distill= on a stream needs teacher= (the unpruned model)")
            source = DistillStream(data, teacher)
        recompile(target, cfg)  # a fresh optimizer from the configuration
        target.compile(optimizer=target.optimizer,
                       loss=distillation_loss(distill[0], distill[1], _from_logits(cfg)))
    else:
        recompile(target, cfg)
    if data.kind == "numpy":
        # fit's variables made now: its train step is traced once, not twice
        build_for_training(target, keras.tree.map_structure(lambda a: a[:1], data.x),
                           None if y is None else keras.tree.map_structure(lambda a: a[:1], y))
        losses = _fit_arrays(target, data.x, y, data.batch_size, epochs, shuffle, verbose, cbs,
                             shuffle_seed)
    else:
        # Datasets bring their own order (Keras ignores shuffle for them).
        hist = target.fit(source, epochs=epochs, verbose=verbose, callbacks=cbs,
                          shuffle=False)
        losses = [float(v) for v in hist.history.get("loss", [])]
    nan = nan_cb.hit or any(not math.isfinite(v) for v in losses) or not weights_finite(model)
    if target is not model or cfg is not compile_config or distill is not None:
        recompile(model, compile_config)
    return FitOutcome(epochs, nan, losses, rec_cb.result if rec_cb else None,
                      tracing_s=clock.tracing_s)


def _fit_arrays(model, x, y, batch_size, epochs, shuffle, verbose, callbacks,
                shuffle_seed=None):
    """`model.fit` on numpy arrays, shuffled by kprune instead of the backend.

    Keras shuffles numpy data with each backend's own generator
    (``tf.random.shuffle``, numpy, ``torch.randperm``), so one seed gives
    three batch orders and three retrained models. Here every epoch's order
    is a permutation from a numpy generator of its own seeded by
    `shuffle_seed` (a run's seed and round; numpy's global generator without
    one), the same on every backend and whatever else drew random numbers
    in between (a strategy's setup); the data is then fit in that order, one
    epoch per call (the train function is traced once and kept between the
    calls; the optimizer's state carries over). Returns the per-epoch losses.
    """
    first = keras.tree.flatten(x)[0]
    n = int(np.shape(first)[0])
    losses = []
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else np.random
    for epoch in range(epochs):
        if shuffle:
            order = rng.permutation(n)
            xe, ye = keras.tree.map_structure(lambda a: np.asarray(a)[order], (x, y),
                                              none_is_leaf=False)
        else:
            xe, ye = x, y
        hist = model.fit(xe, ye, batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch,
                         shuffle=False, verbose=verbose, callbacks=callbacks)
        losses += [float(v) for v in hist.history.get("loss", [])]
        if getattr(model, "stop_training", False):
            break
    return losses


def batchnorm_layers(model):
    """The BatchNormalization layers of a (top-level) functional model."""
    return [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]


def recalibrate_batchnorm(model, data, batch_size=256, max_samples=None):
    """Re-estimate every BatchNormalization layer's moving mean and variance
    from `data` (**kprune decision**, applied after each retraining round).

    A few retraining epochs after pruning leave the moving statistics partly
    those of the unpruned network (momentum 0.99 keeps 46% of the old value
    after 78 steps), which can cost many points of inference accuracy. This
    runs training-mode forward passes (batch statistics, as during training)
    through a weight-sharing view of the BN inputs, accumulates per-channel
    sums and squares in float64 and sets the moving statistics to the exact
    population mean and variance over `data`. Returns the number of layers set.

    Example:
        >>> recalibrate_batchnorm(model, x_train[:2000])
        7
    """
    bns = [l for l in batchnorm_layers(model) if inbound_node_count(l) == 1]
    if not bns:
        return 0
    view = keras.Model(model.inputs, [bn.input for bn in bns])
    saved = [(backend.to_numpy(bn.moving_mean), backend.to_numpy(bn.moving_variance))
             for bn in bns]

    def _axes(bn, rank):
        keep = [a % rank for a in (bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis])]
        return [a for a in range(rank) if a not in keep]

    run = backend.forward(view, training=True)  # traced once for the whole pass

    def step(x):
        res = []
        for bn, t in zip(bns, run(x)):
            t = t.astype(np.float64)
            axes = tuple(_axes(bn, t.ndim))
            s = t.sum(axes)
            res.append((s, np.square(t).sum(axes), t.size // s.size))
        return res

    sums = [None] * len(bns)
    seen = 0
    for x in iterate_inputs(data, batch_size):
        n = int(np.shape(keras.tree.flatten(x)[0])[0])
        if max_samples is not None and seen >= max_samples:
            break
        for i, (s, sq, cnt) in enumerate(step(x)):
            cnt = float(cnt)
            if sums[i] is None:
                sums[i] = [s, sq, cnt]
            else:
                sums[i][0] += s
                sums[i][1] += sq
                sums[i][2] += cnt
        seen += n
    if seen == 0:
        return 0
    for bn, (s, sq, cnt), (old_m, old_v) in zip(bns, sums, saved):
        mean = s / cnt
        var = np.maximum(sq / cnt - mean ** 2, 0.0)
        bn.moving_mean.assign(mean.reshape(old_m.shape).astype(old_m.dtype))
        bn.moving_variance.assign(var.reshape(old_v.shape).astype(old_v.dtype))
    return len(bns)


class Trainer:
    """Retraining and evaluation for one run (see the module docstring).

    Args:
        config: the run's `kprune.methods.config.RunConfig`.
        data: its `kprune.methods.config.RunData`.
    """

    def __init__(self, config, data):
        self.config = config
        self.data = data
        self.teacher = None  # the model whose outputs are the distillation targets
        self._teacher_outputs = None
        self._shuffle_seed = None  # set by `seed`
        self.phases = None  # a `kprune.methods.phases.Phases` (set by the run)

    @property
    def compile_config(self):
        return self.config.compile_config

    def seed(self, round_index: int):
        """Seed Python, numpy and TensorFlow for `round_index` (when the run
        has a seed), and the shuffling of numpy training data."""
        seed = self.config.options.seed
        if seed is not None:
            self._shuffle_seed = int(seed) * 1000 + int(round_index)
            keras.utils.set_random_seed(self._shuffle_seed)

    def fit(self, model, epochs: int, record_groups=None, callbacks=()) -> "FitOutcome":
        """Train `model` in place for `epochs` (fresh optimizer, the run's
        learning-rate schedule and distillation)."""
        distill = self.config.distill if self.teacher is not None else None
        if distill and self.data.train.kind == "numpy" and self._teacher_outputs is None:
            # numpy data: the teacher's outputs once per sample, for every round
            self._teacher_outputs = self.teacher.predict(self.data.train.x,
                                                         batch_size=1024, verbose=0)
        return fit_once(model, self.data.train, epochs, self.compile_config,
                        self.config.fit_fn, callbacks=callbacks,
                        verbose=self.config.options.verbose, record_groups=record_groups,
                        lr_schedule=self.config.options.lr_schedule, distill=distill,
                        teacher_outputs=self._teacher_outputs if distill else None,
                        teacher=self.teacher if distill else None,
                        shuffle_seed=self._shuffle_seed)

    def retrain(self, model, epochs: int, round_index: int, record_groups=None) -> "FitOutcome":
        """Seeded retraining of a pruned model, then BatchNorm re-estimation;
        timed in `phases` as ``training`` (less its estimated ``tracing``)
        and ``bn_recalibration``."""
        self.seed(round_index)
        with timed(self.phases, "training"):
            out = self.fit(model, epochs, record_groups=record_groups)
        if self.phases is not None and out.tracing_s > 0:
            self.phases.add("training", -out.tracing_s)
            self.phases.add("tracing", out.tracing_s)
        if not out.nan and self.config.options.bn_recalibration:
            self.seed(round_index)
            if batchnorm_layers(model):  # a model without BatchNorm has no such phase
                with timed(self.phases, "bn_recalibration"):
                    recalibrate_batchnorm(model, self.data.calibration)
        return out

    def evaluate(self, model) -> float:
        """Top-1 accuracy on the validation data (NaN for non-finite outputs)."""
        return evaluate_accuracy(model, self.data.val)

    def recompile(self, model):
        """Compile `model` like the user's model (when it was compiled)."""
        if self.compile_config is not None:
            recompile(model, self.compile_config)
        return model

    def ensure_loss(self, model):
        """Compile `model` when it has no loss yet (gradient criteria need it)."""
        if self.compile_config is not None and getattr(model, "loss", None) is None:
            recompile(model, self.compile_config)
        return model
