"""`kprune.prune`: one call from a trained model to a smaller plain Keras model."""

from kprune.core.tf_keras import is_tf_keras
from kprune.methods import get_method
from kprune.methods.callbacks import CallbackList, LambdaRoundCallback
from kprune.methods.config import RunConfig, prepare_data
from kprune.methods.registry import method_defaults
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
            ``(x, y)`` or a ``keras.utils.PyDataset``. Retraining and the
            calibration slice for activation scores come from it.
        val_data: same kinds; accuracy used for every decision. Default: a
            seeded ``validation_split`` of numpy ``train_data``.
        epochs: retraining epochs per round.
        rounds: ILP/IAP: number of rounds; AIAP: maximum retraining rounds.
        target: ``0.01`` / ``{'accuracy_loss': 0.01}`` (default: at most 1 point
            of validation top-1 lost), ``{'params_reduction': 0.8}``,
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
            built outside the scope is copied into it first.
        on_round: ``on_round(entry, model)`` called after every recorded
            round (a history entry as in `PruneResult.history`).
        callbacks: a list of `kprune.RoundCallback` (``on_run_begin``,
            ``on_round_begin``, ``on_round_end``, ``on_run_end``).
        **options: see `kprune.methods.config.RunOptions` (every method) and
            ``kprune.methods.registry.method_options(method)`` (that method
            only, e.g. ``mode`` / ``target_arena_bytes`` for
            ``'complexity'``): ``rate``, ``criterion`` ('l1', 'l2',
            'mean_activation', 'attention', 'apoz', 'taylor', a
            `kprune.scoring.Criterion` or a callable), ``p``, ``aggregate``,
            ``allocation``, ``round_to``, ``min_channels``, ``max_fraction``,
            ``ignored_layers``, ``seed``, ``retrain`` ('lr_rewind' |
            'weight_rewind'), ``rewind_epoch``, ``pretrain_epochs``,
            ``batch_size``, ``calibration_samples``, ``recording``
            ('calibration' | 'fit'), ``complexity_aware``, ``distill``,
            ``lr_schedule``, ``finetune_epochs``, ``step``, ``max_retries``,
            ``max_round_reduction``, ``share_power``, ``tolerance``, ``verbose``.

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
    from kprune.core._keras_compat import op_determinism, quiet_retracing
    from kprune.scoring import distribute

    if is_tf_keras(model):  # tf_keras in, tf_keras out: pruned as a Keras 3 copy
        from kprune.core.tf_keras import from_tf_keras, to_tf_keras

        result = prune(from_tf_keras(model), method, train_data, val_data, epochs, rounds,
                       target, out_dir, fit_fn, tensorboard_dir, strategy, on_round,
                       callbacks, **options)
        result.model = to_tf_keras(result.model)
        return result

    fn = get_method(method)
    distribute.check_strategy(strategy)
    config = RunConfig.build(model, method, epochs, rounds, target, options, fit_fn,
                             method_defaults(method))
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
                distribute.scope(strategy):
            model = distribute.to_strategy(model, strategy)
            run = Run(model, config, data, out_dir=out_dir, strategy=strategy,
                      callbacks=callback_list)
            if run.start():
                run.finish(run.state.reason)
            else:
                fn(run)
            return PruneResult(run.final_model(), [e.to_dict() for e in run.history],
                               run.best_round, method, run.report_target(), run.state.reason,
                               run.target_reached(), config.options.to_dict(), run.out_dir)
    finally:
        if logger is not None:
            logger.close()
