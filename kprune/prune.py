"""`kprune.prune`: one call from a trained model to a smaller plain Keras model."""

from kprune.compat.tf_keras_bridge import is_tf_keras
from kprune.core.graph import measured_input_shapes
from kprune.data import sample_input_shapes
from kprune.methods import get_method
from kprune.methods.callbacks import CallbackList, LambdaRoundCallback
from kprune.methods.checks import check_callable, check_path
from kprune.methods.config import RunConfig, prepare_data
from kprune.methods.device_budget import conversion_session
from kprune.methods.run import Run
from kprune.reporting.result import PruneResult


def prune(model, method="iap", train_data=None, val_data=None, epochs=1, rounds=10,
          target=None, out_dir=None, fit_fn=None, tensorboard_dir=None, strategy=None,
          on_round=None, callbacks=None, **options):
    """Prune `model` with an iterative structured method and retrain it.

    Args:
        model: a (trained) Functional or Sequential Keras model. It is not
            modified unless ``pretrain_epochs`` > 0 (then it is trained in place).
            A tf_keras (Keras 2) model is pruned as its Keras 3 copy (see
            `kprune.compat`) and ``result.model`` is a tf_keras model again,
            compiled like the original; ``fit_fn`` then receives Keras 3 models.
        method: ``'iap'`` (default), ``'ilp'``, ``'aiap'``, ``'complexity'``,
            or any name in ``kprune.methods.METHODS``.
        train_data: ``(x, y)`` numpy arrays, a batched ``tf.data.Dataset`` of
            ``(x, y)``, a ``keras.utils.PyDataset`` or a
            ``torch.utils.data.DataLoader``. Retraining and the
            calibration slice for activation scores come from it.
        val_data: same kinds; the metric (``metric=``, default top-1
            accuracy) used for every decision. Multi-output labels: a list
            or a dict {output name: labels}. Default: a
            seeded ``validation_split`` of numpy ``train_data``.
        epochs: retraining epochs per round.
        rounds: ILP/IAP: number of rounds; AIAP: maximum retraining rounds.
        target: ``0.01`` / ``{'accuracy_loss': 0.01}`` (default: at most 1 point
            of validation top-1 lost), ``{'metric_loss': d}`` /
            ``{'metric_loss_relative': f}`` (the metric worse by at most d in
            its units / a fraction f of its baseline value; the default for
            a metric outside [0, 1] is ``metric_loss_relative`` 0.01), ``{'params_reduction': 0.8}``,
            ``{'macs_reduction': 0.5}``, or ``'none'`` (ILP/IAP: run every round).
        out_dir: checkpoint directory; each round is saved atomically and a
            second call with the same model, data and arguments resumes after
            the last completed round.
        fit_fn: ``fit_fn(model, train_data, epochs)`` training `model` in place,
            instead of ``model.fit`` with the compiled optimizer/loss/metrics.
        tensorboard_dir: write TensorBoard summaries of every round there
            (accuracy, parameters, MACs, arena estimate, per-layer widths;
            see `kprune.reporting.tensorboard.RoundLogger`).
        strategy: a ``tf.distribute.Strategy`` (e.g. ``MirroredStrategy``):
            the run happens in ``strategy.scope()``, so every rebuilt model
            and optimizer is created under it and retraining is distributed;
            activation statistics are gathered across replicas. A `model`
            built outside the scope is copied into it first. On the JAX
            backend: a ``keras.distribution.Distribution`` such as
            ``keras.distribution.DataParallel()`` (the same, over the
            devices JAX sees).
        on_round: ``on_round(entry, model)`` called after every recorded
            round (a history entry as in `PruneResult.history`).
        callbacks: a list of `kprune.RoundCallback` (``on_run_begin``,
            ``on_round_begin``, ``on_round_end``, ``on_run_end``).
        **options: the common `kprune.methods.options.RunOptions` (every
            method: ``seed``, ``batch_size``, ``min_channels``,
            ``ignored_layers``, ``pretrain_epochs``, ``finetune_epochs``,
            ``calibration_samples``, ``bn_recalibration``, ``lr_schedule``,
            ``distill``, ``target_arena_bytes``, ``target_latency_ms``,
            ``latency_fn``, ``latency_quantization``, ``validation_split``,
            ``deterministic``, ``verbose``, ``metric``, ``metric_direction``:
            the validation measure every decision uses, default top-1
            accuracy, required for multi-output models; see
            `kprune.methods.metric`) and the method's own record
            (``kprune.methods.registry.get_method(method).options``): ILP / IAP
            `IterativeOptions` (``rate``, ``allocation``, ``patience``), AIAP
            `AIAPOptions` (``step``, ``max_retries``, ``max_round_reduction``,
            ``tolerance``, ``share_power``), both with the scoring options
            (``criterion``, ``p``, ``aggregate``, ``max_round_fraction``,
            ``round_to``, ``max_fraction``, ``retrain``, ``rewind_epoch``,
            ``rewind_weights``, ``recording``, ``complexity_aware``);
            complexity `ComplexityOptions` (``mode``, ``step_fraction``,
            ``target_params``, ``target_macs``, ``target_memory_bytes``,
            ``memory_dtype``). An option the method does not take is a
            TypeError naming the methods that take it.

    Returns:
        `kprune.PruneResult` with ``.model``, ``.history`` and ``.summary()``.

    Raises:
        TypeError: an option of the wrong type or unknown to the method.
        ValueError: data that does not fit the model, an uncompiled model
            without `fit_fn`, unknown method or option values; every check
            runs before any training, and the message names the argument.

    Example:
        >>> result = kprune.prune(model, "iap", train_data=(x, y),
        ...                       val_data=(xv, yv), epochs=2, rounds=5)
        >>> print(result.summary())
        >>> result.model.save("pruned.keras")
    """
    if is_tf_keras(model):  # tf_keras in, tf_keras out: pruned as a Keras 3 copy
        from kprune.compat.tf_keras_bridge import from_tf_keras, to_tf_keras

        result = prune(from_tf_keras(model), method, train_data, val_data, epochs, rounds,
                       target, out_dir, fit_fn, tensorboard_dir, strategy, on_round,
                       callbacks, **options)
        result.model = to_tf_keras(result.model)
        return result

    fn = get_method(method)
    # A model whose inputs have unknown dimensions (a text model's sequence
    # length) is measured (MACs, activation memory, MAC targets) at the
    # shape of its training data's first batch.
    with measured_input_shapes(_shapes_to_measure(model, train_data)):
        return _prune(model, method, fn, train_data, val_data, epochs, rounds, target,
                      out_dir, fit_fn, tensorboard_dir, strategy, on_round, callbacks, options)


def _shapes_to_measure(model, train_data):
    inputs = getattr(model, "inputs", None) or []
    if not any(None in tuple(t.shape)[1:] for t in inputs):
        return None
    return sample_input_shapes(train_data)


def _prune(model, method, fn, train_data, val_data, epochs, rounds, target, out_dir, fit_fn,
           tensorboard_dir, strategy, on_round, callbacks, options):
    from kprune.compat.keras_private import op_determinism, quiet_retracing
    from kprune.scoring import distribute

    distribute.check_strategy(strategy)
    out_dir, tensorboard_dir = check_path("out_dir", out_dir), check_path(
        "tensorboard_dir", tensorboard_dir)
    check_callable("on_round", on_round, "on_round(entry, model)")
    config = RunConfig.build(model, method, epochs, rounds, target, options, fit_fn)
    data = prepare_data(model, config, train_data, val_data)
    cbs = list(callbacks or ())
    logger = None
    if tensorboard_dir:
        from kprune.reporting.tensorboard import RoundLogger

        logger = RoundLogger(tensorboard_dir)
        cbs.append(logger)
    if on_round is not None:
        cbs.append(LambdaRoundCallback(on_round))
    callback_list = CallbackList(cbs)
    try:
        with op_determinism(config.deterministic), quiet_retracing(), \
                distribute.scope(strategy), conversion_session():
            model = distribute.to_strategy(model, strategy)
            run = Run(model, config, data, out_dir=out_dir, strategy=strategy,
                      callbacks=callback_list)
            if run.start():
                run.finish(run.record.reason)
            else:
                fn(run)
            record = run.record
            return PruneResult(run.final_model(), [e.to_dict() for e in record.history],
                               record.best_round, method, run.report_target(), record.reason,
                               run.target_reached(), config.all_options(run.metric),
                               record.out_dir)
    finally:
        if logger is not None:
            logger.close()
