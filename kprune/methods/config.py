"""The validated, typed configuration of one `kprune.prune` run.

`RunConfig.build` reads `kprune.prune`'s arguments once, before any data
work or training: the options split into the common `RunOptions` and the
method's own record (`kprune.methods.registry.Method.options`); an option
that neither declares is a TypeError naming the methods that take it; each
record checks itself (type, range, layer names exist, combinations that
cannot work). `prepare_data` then checks the data (shapes, labels over the
whole data, finite inputs, finite cardinality) and builds the training /
validation / calibration sources. Every message names the argument (or
layer) and says what to pass instead.

Example:
    >>> config = RunConfig.build(model, "iap", epochs=1, rounds=5,
    ...                          options={"ignored_layers": "conv1"})
    >>> config.options.ignored_layers
    ('conv1',)
    >>> config.method_options.rate, config.target
    (0.1, Target(kind='accuracy_loss', value=0.01))
"""

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

from kprune import data as data_lib
from kprune.methods.checks import check_callable, check_int, check_model
from kprune.methods.goal import BUDGET_KINDS, Target, parse_target
from kprune.methods.options import MethodOptions, OptionContext, RunOptions, parse_distill
from kprune.methods.registry import get_method, owners_of
from kprune.methods.trainer import compile_config_of


def unknown_options_error(method: str, unknown, own_names) -> TypeError:
    """The TypeError for options `method` does not take, naming their owners."""
    hints = []
    for k in unknown:
        owners = owners_of(k)
        if owners:
            hints.append(f"; {k!r} is an option of method{'s' if len(owners) > 1 else ''} "
                         f"{' / '.join(map(repr, owners))}")
    known = sorted(set(RunOptions.names()) | set(own_names))
    return TypeError(f"unknown option(s) {sorted(unknown)} for kprune.prune(method="
                     f"{method!r}){''.join(hints)}; options of {method!r}: {known}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs to know, checked once (see `RunConfig.build`)."""

    method: str
    epochs: int
    rounds: int
    target: Optional[Target]
    options: RunOptions
    method_options: MethodOptions
    fit_fn: Optional[Callable] = None
    distill: Optional[Tuple[float, float]] = None
    compile_config: Optional[Dict] = None

    @property
    def deterministic(self) -> bool:
        return bool(self.options.deterministic) and self.options.seed is not None

    @property
    def criterion(self):
        """The scoring methods' `kprune.scoring.Criterion` (None for others)."""
        return getattr(self.method_options, "criterion", None)

    @classmethod
    def build(cls, model, method: str, epochs=1, rounds=10, target=None, options=None,
              fit_fn=None) -> "RunConfig":
        """Check `kprune.prune`'s arguments and return the typed configuration.

        Raises TypeError for options of the wrong type or not taken by
        `method`, ValueError for values out of range, layer names the model
        lacks and combinations that cannot work; each message names the
        argument and the fix.

        Example:
            >>> RunConfig.build(model, "ilp", epochs=1, rounds=3).criterion
            L1Norm(aggregate='sum')
        """
        record = get_method(method)
        defaults = record.defaults
        given = dict(options or {})
        own = record.options.names()
        unknown = set(given) - set(RunOptions.names()) - set(own)
        if unknown:
            raise unknown_options_error(method, unknown, own)
        check_model(model)
        check_int("epochs", epochs, 1,
                  fix="; it is the number of retraining epochs per round (complexity: "
                      "training epochs of the pruned model), so at least 1")
        check_int("rounds", rounds, 1, fix="; pass the number of pruning rounds, e.g. rounds=5")
        check_callable("fit_fn", fit_fn, "fit_fn(model, data, epochs)")
        common = RunOptions(**{k: v for k, v in given.items() if k in RunOptions.names()})
        common = common.validate(OptionContext(model, None, None, fit_fn))
        compile_config = compile_config_of(model)
        if compile_config is None and fit_fn is None:
            raise ValueError(
                f"model '{model.name}' is not compiled and no fit_fn was given: "
                "compile it (optimizer, loss, metrics) or pass fit_fn(model, data, epochs)")
        distill = parse_distill(common.distill)
        if (distill or common.lr_schedule == "cosine") and fit_fn is not None:
            raise ValueError("distill= and lr_schedule= need kprune's own training loop; "
                             "they cannot be combined with fit_fn")
        parsed = parse_target(target, defaults.target, defaults.number_means)
        parsed = metric_target(common.metric, parsed, target)
        if distill and len(model.outputs) > 1:
            raise ValueError("distill= distils a single-output classifier; model "
                             f"'{model.name}' has {len(model.outputs)} outputs: drop distill")
        budgets = [(k, getattr(common, f"target_{k}")) for k in BUDGET_KINDS
                   if getattr(common, f"target_{k}") is not None]
        if budgets and defaults.budget_targets:
            if len(budgets) > 1:
                raise ValueError("give one device budget: target_arena_bytes= or "
                                 "target_latency_ms=, not both")
            if target is not None:
                raise ValueError(f"give either target={target!r} or target_{budgets[0][0]}=, "
                                 "not both (a device budget is the run's target)")
            parsed = Target(*budgets[0])
        mine = record.options(**{k: v for k, v in given.items() if k in own})
        mine = mine.validate(OptionContext(model, common, parsed, fit_fn))
        if not isinstance(mine, record.options):
            raise TypeError(f"{record.options.__name__}.validate must return the checked "
                            f"record, got {mine!r}")
        if getattr(mine, "complexity_aware", None) == "latency" and \
                (parsed is None or parsed.kind != "latency_ms"):
            raise ValueError("complexity_aware='latency' weighs layers by their measured "
                             "latency: give the budget too, target_latency_ms=<ms>")
        latency = (common.target_latency_ms is not None or getattr(mine, "mode", None) == "latency"
                   or getattr(mine, "latency_steps", False))
        if not latency and (common.latency_fn is not None
                            or "latency_quantization" in given):
            arg = "latency_fn" if common.latency_fn is not None else "latency_quantization"
            raise ValueError(f"{arg}= prices a latency budget or measures the latency "
                             f"staircase: give target_latency_ms=<ms> or latency_steps=True "
                             f"too, or drop {arg}")
        return cls(method=method, epochs=int(epochs), rounds=int(rounds), target=parsed,
                   options=common, method_options=mine, fit_fn=fit_fn, distill=distill,
                   compile_config=compile_config)

    def stable_options(self) -> Dict[str, Any]:
        """Options as they identify the run (for checkpoint fingerprints)."""
        d = self.options.to_dict()
        if self.options.metric is not None:
            d["metric"] = self.options.metric.describe()
        mine = self.method_options.to_dict()
        if self.criterion is not None:
            mine["criterion"] = self.criterion.get_config()
        d.update({f"method.{k}": v for k, v in mine.items()})
        return d

    def all_options(self, metric=None) -> Dict[str, Any]:
        """{option: value} of the common and the method's options (`metric`:
        the run's bound `kprune.methods.metric.Metric`, shown by name and
        direction)."""
        d = {**self.options.to_dict(), **self.method_options.to_dict()}
        if metric is not None:
            d["metric"], d["metric_direction"] = metric.name, metric.direction
        return d


def metric_target(metric, parsed: Optional[Target], given) -> Optional[Target]:
    """The quality target for `metric`: ``accuracy_loss`` (and a bare number)
    is an absolute loss, meaningful for metrics in [0, 1] (accuracy, AUC,
    IoU, ...). For another metric (an error, a loss, a callable) the default
    target is ``metric_loss_relative`` 0.01 (at most 1% worse than the
    baseline) and an explicit ``accuracy_loss`` is ambiguous: a ValueError
    asking for ``metric_loss`` (absolute, in the metric's units) or
    ``metric_loss_relative`` (a fraction of the baseline's value)."""
    if parsed is None or parsed.kind != "accuracy_loss" or metric is None or metric.bounded:
        return parsed
    if given is None:
        return Target("metric_loss_relative", parsed.value)
    raise ValueError(
        f"target={given!r} is ambiguous for metric={metric.name!r} (not a [0, 1] accuracy: "
        f"{'higher' if metric.higher_is_better else 'lower'} is better, in its own units): "
        f"pass target={{'metric_loss': {parsed.value:g}}} (the metric may get worse by "
        f"{parsed.value:g} in its units) or target={{'metric_loss_relative': "
        f"{parsed.value:g}}} (by {100 * parsed.value:g}% of the baseline's value)")


# -- data ------------------------------------------------------------------------------

@dataclasses.dataclass
class RunData:
    """The run's data: training, validation (for every decision) and the
    calibration slice (scores, BatchNorm re-estimation)."""

    train: data_lib.Data
    val: data_lib.Data
    calibration: data_lib.Data
    metric: Any = None  # the bound `kprune.methods.metric.Metric` every decision uses


def prepare_data(model, config: RunConfig, train_data, val_data) -> RunData:
    """Check `train_data` / `val_data` against `model` over the whole data and
    build the `RunData` (a seeded validation split when `val_data` is None).

    Raises ValueError naming ``train_data`` / ``val_data`` and the fix: empty
    data, shapes the model does not take, labels outside the model's classes
    or in the wrong format for the loss, NaN/inf inputs, infinite datasets.
    """
    opts = config.options
    bs = int(opts.batch_size)
    train = data_lib.as_data(train_data, bs, "train_data")
    if train is None:
        raise ValueError("train_data is required: pass (x, y) numpy arrays, a batched "
                         "tf.data.Dataset of (x, y) or a keras.utils.PyDataset")
    val = data_lib.as_data(val_data, bs, "val_data")
    data_lib.check_data(model, train, "train_data")
    if val is None:
        train, val = data_lib.split_validation(train, opts.validation_split, opts.seed or 0)
    data_lib.check_data(model, val, "val_data")
    for data, what in ((train, "train_data"), (val, "val_data")):
        data_lib.check_label_format(model, data, config.compile_config, what)
    if config.distill:  # labels the teacher's targets can join, before any training
        from kprune.methods.distillation import check_distill_data

        check_distill_data(train, int(model.outputs[0].shape[-1]), "train_data")
    calibration = data_lib.subset(train, int(opts.calibration_samples), opts.seed or 0)
    metric = opts.metric.bind(model, val, config.compile_config) if opts.metric else None
    return RunData(train, val, calibration, metric)
