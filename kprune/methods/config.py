"""The validated, typed configuration of one `kprune.prune` run.

`RunConfig.build` reads `kprune.prune`'s arguments once, before any training:
every option is checked (type, range, layer names exist, combinations that
cannot work) and the result is typed (`RunOptions`, `Target`, a
`kprune.scoring.Criterion`). `prepare_data` then checks the data (shapes,
labels over the whole data, finite inputs, finite cardinality) and builds the
training / validation / calibration sources. Every check raises with a
message that names the argument (or layer) and says what to pass instead, so a
mistake costs seconds, not a retraining run.

Example:
    >>> config = RunConfig.build(model, "iap", epochs=1, rounds=5,
    ...                          options={"ignored_layers": "conv1"})
    >>> config.options.ignored_layers
    ('conv1',)
    >>> config.target
    Target(kind='accuracy_loss', value=0.01)
"""

import dataclasses
import numbers
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import keras

from kprune import data as data_lib
from kprune.core.graph import Graph, functional_of
from kprune.methods.registry import MethodDefaults, method_options, owners_of
from kprune.methods.trainer import compile_config_of
from kprune.scoring.criteria import Criterion, get_criterion


def check_model(model, what="model"):
    """A built Functional or Sequential Keras 3 model, or a clear error."""
    if not isinstance(model, keras.Model):
        kind = type(model).__module__.split(".")[0]
        hint = (" (a tf_keras / Keras 2 model: convert it with "
                "kprune.compat.from_tf_keras, or save and load it with Keras 3)"
                if kind in ("tf_keras", "keras") else "")
        raise TypeError(f"{what} must be a keras.Model, got {type(model).__name__}{hint}")
    functional_of(model)  # subclassed / unbuilt models: ValueError with the fix
    if not model.outputs:
        raise ValueError(f"{what} '{model.name}' has no outputs; build it with "
                         "keras.Model(inputs, outputs)")


def check_int(name, value, minimum, allow_none=False, fix=""):
    """`value` as an int >= `minimum` (bools and floats refused)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} "
                        f"({type(value).__name__}){fix}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}{fix}")
    return int(value)


def check_fraction(name, value, low_open=True, high_closed=False, fix=""):
    """`value` as a float in (0, 1) (or (0, 1] with `high_closed`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){fix}")
    v = float(value)
    ok = (v > 0 if low_open else v >= 0) and (v <= 1 if high_closed else v < 1)
    if not ok:
        interval = ("(" if low_open else "[") + "0, 1" + ("]" if high_closed else ")")
        raise ValueError(f"{name} must be in {interval}, got {value}{fix}")
    return v


def layer_names(model, names, arg):
    """`names` (a name or a list of names) checked against the model's layers.

    A bare string is one name, not a list of characters. Each name must be a
    layer of `model` (a nested layer may be given by its path ``'sub/conv'``).
    """
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    try:
        names = list(names)
    except TypeError:
        raise TypeError(f"{arg} must be a layer name or a list of layer names, "
                        f"got {names!r}") from None
    graph = Graph.from_model(model)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{arg} must hold layer names (strings), got {n!r}")
        try:
            graph.find_layer(n)
        except ValueError as e:
            raise ValueError(f"{arg}: {e}") from None
    return names


def check_prune_arguments(model, epochs, rounds, options) -> Dict:
    """Validate `kprune.prune` arguments; returns `options` normalized.

    Checks the model kind, `epochs` / `rounds` and every option kprune reads
    whose value can be wrong on its own (integers, fractions, layer names).
    Options of other kinds are left to the method.
    """
    check_model(model)
    if len(model.outputs) > 1:
        raise ValueError(
            f"model '{model.name}' has {len(model.outputs)} outputs; kprune.prune decides on "
            "the top-1 accuracy of one output, so prune a single-output model (e.g. "
            "keras.Model(model.inputs, model.outputs[0])) and reattach the other heads "
            "afterwards, or use kprune.remove_channels, which handles any number of outputs")
    check_int("epochs", epochs, 1,
              fix="; it is the number of retraining epochs per round (complexity: training "
                  "epochs of the pruned model), so at least 1")
    check_int("rounds", rounds, 1, fix="; pass the number of pruning rounds, e.g. rounds=5")
    opts = dict(options)
    for key, minimum in (("batch_size", 1), ("calibration_samples", 1), ("min_channels", 1),
                         ("pretrain_epochs", 0), ("patience", 0), ("max_retries", 0),
                         ("rewind_epoch", 1), ("finetune_epochs", 0)):
        if key in opts:
            opts[key] = check_int(key, opts[key], minimum)
    if opts.get("round_to") is not None:
        opts["round_to"] = check_int("round_to", opts["round_to"], 1)
    if opts.get("seed") is not None:
        opts["seed"] = check_int("seed", opts["seed"], 0, fix="; or seed=None for no seeding")
    if "rate" in opts:
        opts["rate"] = check_fraction("rate", opts["rate"],
                                      fix="; the fraction of each group removed per round")
    for key, fix in (("max_round_fraction", "; None for no per-round cap"),
                     ("max_round_reduction", "; None for the default 0.5, 1.0 for no cap")):
        if opts.get(key) is not None:
            opts[key] = check_fraction(key, opts[key], high_closed=True, fix=fix)
    if "validation_split" in opts:
        opts["validation_split"] = check_fraction("validation_split", opts["validation_split"])
    if opts.get("p") is not None:
        p = opts["p"]
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p > 0:
            raise ValueError(f"p must be a positive number (the activation power), got {p!r}")
    if "ignored_layers" in opts:
        opts["ignored_layers"] = layer_names(model, opts["ignored_layers"], "ignored_layers")
    mf = opts.get("max_fraction")
    if isinstance(mf, dict):
        layer_names(model, list(mf), "max_fraction")
        opts["max_fraction"] = {k: check_fraction(f"max_fraction['{k}']", v, low_open=False,
                                                  high_closed=True) for k, v in mf.items()}
    elif mf is not None:
        opts["max_fraction"] = check_fraction("max_fraction", mf, low_open=False,
                                              high_closed=True,
                                              fix="; or a dict {layer name: fraction}")
    return opts


# -- targets -------------------------------------------------------------------------

#: Target kinds: an accuracy loss to stay within, a size reduction to reach,
#: or a device budget to fit (TFLite-Micro arena bytes of the int8 model,
#: measured latency in milliseconds).
TARGET_KINDS = ("accuracy_loss", "params_reduction", "macs_reduction", "arena_bytes",
                "latency_ms")
BUDGET_KINDS = ("arena_bytes", "latency_ms")


class Target(NamedTuple):
    """What a run aims at: ``kind`` in `TARGET_KINDS` and its ``value``.

    Example:
        >>> parse_target({"params_reduction": 0.8})
        Target(kind='params_reduction', value=0.8)
    """

    kind: str
    value: float

    @property
    def is_accuracy(self) -> bool:
        return self.kind == "accuracy_loss"

    @property
    def is_budget(self) -> bool:
        """A device budget (arena bytes / latency), not a fraction."""
        return self.kind in BUDGET_KINDS

    def to_dict(self) -> Dict[str, float]:
        return {self.kind: self.value}


def parse_target(target, default=("accuracy_loss", 0.01),
                 number_means="accuracy_loss") -> Optional[Target]:
    """None | float | 'kind' | ('kind', value) | {'kind': value} -> `Target` or None.

    A bare number is `number_means` (the accuracy loss for ILP/IAP/AIAP; the
    fraction of the chosen complexity to remove for method='complexity');
    ``'none'`` means no target (ILP/IAP: run every round).

    Example:
        >>> parse_target(0.02)
        Target(kind='accuracy_loss', value=0.02)
    """
    if target is None:
        return None if default is None else Target(*default)
    if isinstance(target, str) and target == "none":
        return None
    if isinstance(target, numbers.Real) and not isinstance(target, bool):
        kind, value = "accuracy_loss", target
    elif isinstance(target, str):
        kind, value = target, {"accuracy_loss": 0.01}.get(target)
        if value is None:
            raise ValueError(f"target {target!r} needs a value, e.g. target=({target!r}, 0.5)")
    elif isinstance(target, dict) and len(target) == 1:
        (kind, value), = target.items()
    elif isinstance(target, (tuple, list)) and len(target) == 2:
        kind, value = target
    else:
        raise ValueError(f"cannot read target={target!r}; use e.g. 0.01, "
                         "('params_reduction', 0.8) or {'macs_reduction': 0.5}")
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r} in target={target!r}; use one of "
                         f"{TARGET_KINDS}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"target={target!r}: the {kind} value must be a number, got {value!r}")
    value = float(value)
    if kind in BUDGET_KINDS:
        if not (0 < value < float("inf")):
            raise ValueError(f"target={target!r}: {kind} must be a positive number "
                             f"({'bytes' if kind == 'arena_bytes' else 'milliseconds'}), "
                             f"got {value}")
        return Target(kind, value)
    if not (0 <= value < 1):
        what = (number_means if isinstance(target, numbers.Real)
                and number_means != "accuracy_loss" else kind)
        raise ValueError(f"target={target!r} ({what}) must be in [0, 1), got {value}"
                         + ("; removing everything is impossible"
                            if value >= 1 and what != "accuracy_loss" else ""))
    return Target(kind, value)


# -- options ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The options every method understands (`kprune.prune`'s ``**options``),
    validated and normalized by `RunConfig.build`."""

    criterion: Any = None           # method default (ilp: 'l1', iap/aiap: 'taylor'); a
                                    # name, a kprune.scoring.Criterion or fn(model, group[, stats])
    p: Optional[float] = None       # power of the activation criterion
    aggregate: Any = "sum"          # member aggregation: sum | mean | max | callable
    rate: float = 0.1               # ILP/IAP: per-round fraction of alive units to remove
    allocation: Optional[str] = None  # ILP/IAP: 'layer' (paper) | 'global' (method default)
    max_round_fraction: Optional[float] = None  # cap on a group's units one round may remove
    round_to: Optional[int] = None  # keep channel counts multiples of N
    min_channels: int = 1
    max_fraction: Any = None        # float, or {layer name: fraction} of the original width
    ignored_layers: Tuple[str, ...] = ()
    seed: Optional[int] = 0
    batch_size: int = 32
    retrain: str = "lr_rewind"      # 'lr_rewind' | 'weight_rewind'
    rewind_epoch: int = 1           # weight rewinding: weights after this pretraining epoch
    rewind_weights: Any = None      # or: list of arrays / model of the original architecture
    pretrain_epochs: int = 0        # train the baseline first
    calibration_samples: int = 2000
    bn_recalibration: bool = True   # re-estimate BatchNorm statistics after each retraining
    recording: str = "calibration"  # 'calibration' pass | 'fit' (training passes)
    complexity_aware: Optional[str] = None  # None | 'params' | 'flops' | 'memory' | 'latency'
    target_arena_bytes: Optional[int] = None  # TFLite-Micro arena budget of the int8 model
    target_latency_ms: Optional[float] = None  # measured latency budget
    latency_fn: Any = None          # f(tflite_bytes) -> seconds; default LiteRT, 1 thread
    latency_quantization: Optional[str] = "int8"  # conversion whose latency counts
    patience: int = 0               # ILP/IAP: stop after this many consecutive rounds that
                                    # break the target (0: run every round)
    lr_schedule: Optional[str] = None  # None/'constant' | 'cosine' within each retraining
    distill: Any = None             # None | weight | {'weight': w, 'temperature': T}
    finetune_epochs: int = 0        # final fine-tuning of the returned model (in the budget)
    step: Optional[float] = None    # AIAP threshold step (None: auto)
    max_retries: int = 3            # AIAP retries (step halvings) at one round
    max_round_reduction: Optional[float] = None  # AIAP: at most this fraction of the
                                    # params (MACs) per round (None: 0.5; 1.0: no cap)
    tolerance: float = 0.0          # AIAP reduction targets: allowed overshoot
    share_power: float = 0.5        # AIAP: group thresholds ~ (share of params/MACs) ** this
                                    # (1.0: proportional, the paper's; 0: one threshold)
    validation_split: float = 0.1   # when val_data is None (numpy train data only)
    deterministic: bool = True      # tf op determinism (for the run only) when seed is set
    verbose: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """{option: value}, without the (array-valued) ``rewind_weights``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "rewind_weights"}


#: Options every method understands, with their defaults.
DEFAULT_OPTIONS = {f.name: f.default for f in dataclasses.fields(RunOptions)}

_CHOICES = {
    "retrain": ("lr_rewind", "weight_rewind"),
    "recording": ("calibration", "fit"),
    "complexity_aware": (None, "params", "flops", "memory", "latency"),
    "latency_quantization": (None, "int8", "float32"),
    "allocation": ("layer", "global"),
    "lr_schedule": (None, "constant", "cosine"),
}
_CHOICE_HELP = {
    "retrain": "'lr_rewind' (fresh optimizer every round) or 'weight_rewind'",
    "recording": "'calibration' (a pass over calibration data) or 'fit' (training passes)",
    "complexity_aware": "None, 'params', 'flops', 'memory' or 'latency'",
    "latency_quantization": "'int8' or None / 'float32'",
    "allocation": "'layer' (the paper's rate per group) or 'global' (one ranking over all groups)",
    "lr_schedule": "None / 'constant' or 'cosine'",
}


def check_choice(name, value):
    """`value` if it is one of option `name`'s choices, else ValueError listing them."""
    if value not in _CHOICES[name]:
        raise ValueError(f"{name} must be {_CHOICE_HELP[name]}, got {value!r}")
    return value


def parse_distill(value):
    """distill= None | weight | {'weight': w, 'temperature': T} -> None or (w, T).

    Example:
        >>> parse_distill(0.5)
        (0.5, 4.0)
    """
    if value is None or value is False:
        return None
    if value is True:
        value = 0.5
    if isinstance(value, numbers.Real):
        w, t = float(value), 4.0
    elif isinstance(value, dict) and set(value) <= {"weight", "temperature"}:
        w, t = float(value.get("weight", 0.5)), float(value.get("temperature", 4.0))
    else:
        raise ValueError(f"distill={value!r}: use a weight in (0, 1] or "
                         "{'weight': 0.5, 'temperature': 4.0}")
    if not (0 < w <= 1) or not t > 0:
        raise ValueError(f"distill={value!r}: weight must be in (0, 1] and temperature > 0 "
                         "(e.g. distill={'weight': 0.5, 'temperature': 4.0})")
    return (w, t)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs to know, checked once (see `RunConfig.build`)."""

    method: str
    epochs: int
    rounds: int
    target: Optional[Target]
    options: RunOptions
    criterion: Criterion
    method_options: Dict[str, Any]
    fit_fn: Optional[Callable] = None
    distill: Optional[Tuple[float, float]] = None
    compile_config: Optional[Dict] = None

    @property
    def deterministic(self) -> bool:
        return bool(self.options.deterministic) and self.options.seed is not None

    @classmethod
    def build(cls, model, method: str, epochs=1, rounds=10, target=None, options=None,
              fit_fn=None, defaults: Optional[MethodDefaults] = None) -> "RunConfig":
        """Check `kprune.prune`'s arguments and return the typed configuration.

        Raises TypeError for options of the wrong type or unknown to `method`,
        ValueError for values out of range, layer names the model lacks and
        combinations that cannot work; each message names the argument and
        the fix.

        Example:
            >>> RunConfig.build(model, "ilp", epochs=1, rounds=3).criterion
            L1Norm(aggregate='sum')
        """
        defaults = defaults or MethodDefaults()
        options = dict(options or {})
        own = method_options(method)
        known = {**DEFAULT_OPTIONS, **own}
        unknown = sorted(set(options) - set(known))
        if unknown:
            elsewhere = {k: owners_of(k) for k in unknown if owners_of(k)}
            hint = "".join(f"; {k!r} is an option of method {' / '.join(map(repr, v))}"
                           for k, v in elsewhere.items())
            raise TypeError(f"unknown option(s) {unknown} for kprune.prune(method="
                            f"{method!r}){hint}; options of {method!r}: {sorted(known)}")
        opts = check_prune_arguments(model, epochs, rounds, options)
        common = {k: v for k, v in opts.items() if k in DEFAULT_OPTIONS}
        mine = {**own, **{k: v for k, v in opts.items() if k in own}}
        if fit_fn is not None and not callable(fit_fn):
            raise TypeError(f"fit_fn must be a callable fit_fn(model, data, epochs), got "
                            f"{fit_fn!r}")
        compile_config = compile_config_of(model)
        if compile_config is None and fit_fn is None:
            raise ValueError(
                f"model '{model.name}' is not compiled and no fit_fn was given: "
                "compile it (optimizer, loss, metrics) or pass fit_fn(model, data, epochs)")
        criterion = common.get("criterion") or defaults.criterion
        if not common.get("criterion") and criterion == "taylor" and \
                getattr(model, "loss", None) is None:
            # Taylor needs the loss; an uncompiled model (fit_fn) gets the paper's score.
            criterion = "mean_activation"
        crit = get_criterion(criterion, p=common.get("p"),
                             aggregate=common.get("aggregate", "sum"))
        if crit.needs == "gradients" and getattr(model, "loss", None) is None:
            raise ValueError(f"criterion={criterion!r} needs the model's loss: compile the "
                             "model (loss=...) or use another criterion (e.g. 'l1')")
        common["criterion"] = crit
        common["allocation"] = common.get("allocation") or defaults.allocation
        common["ignored_layers"] = tuple(common.get("ignored_layers") or ())
        options = RunOptions(**common)
        for name in _CHOICES:
            check_choice(name, getattr(options, name))
        if isinstance(options.verbose, bool) or not isinstance(options.verbose, numbers.Integral):
            raise TypeError(f"verbose must be 0, 1 or 2, got {options.verbose!r}")
        for name in ("bn_recalibration", "deterministic"):
            if not isinstance(getattr(options, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(options, name)!r}")
        if options.step is not None:
            check_positive("step", options.step, fix="; or None for the automatic step")
        sp = options.share_power
        if isinstance(sp, bool) or not isinstance(sp, numbers.Real) or not 0 <= sp < float("inf"):
            raise ValueError(f"share_power must be a number >= 0 (AIAP's group thresholds "
                             f"follow share ** share_power: 1.0 proportional to the group's "
                             f"share of the parameters, 0.5 the default, 0 one threshold for "
                             f"all groups), got {sp!r}")
        if isinstance(options.tolerance, bool) or not isinstance(options.tolerance, numbers.Real) \
                or options.tolerance < 0:
            raise ValueError(f"tolerance must be a number >= 0 (the allowed overshoot of a "
                             f"reduction target), got {options.tolerance!r}")
        distill = parse_distill(options.distill)
        if (distill or options.lr_schedule == "cosine") and fit_fn is not None:
            raise ValueError("distill= and lr_schedule= need kprune's own training loop; "
                             "they cannot be combined with fit_fn")
        if fit_fn is not None and options.recording == "fit":
            raise ValueError("recording='fit' needs kprune's own training loop; "
                             "it cannot be combined with fit_fn")
        if options.retrain == "weight_rewind" and options.rewind_weights is None and \
                options.pretrain_epochs < options.rewind_epoch:
            raise ValueError(
                "retrain='weight_rewind' needs early-epoch weights: set pretrain_epochs "
                f">= rewind_epoch (now {options.pretrain_epochs} < {options.rewind_epoch}), "
                "or pass rewind_weights= (a list of arrays or a model of the original "
                "architecture)")
        if options.target_arena_bytes is not None:
            check_int("target_arena_bytes", options.target_arena_bytes, 1,
                      fix="; the TFLite-Micro arena budget in bytes, e.g. 32768")
        if options.target_latency_ms is not None:
            check_positive("target_latency_ms", options.target_latency_ms,
                           fix="; the latency budget in milliseconds, e.g. 2.5")
        if options.latency_fn is not None and not callable(options.latency_fn):
            raise TypeError(f"latency_fn must be a callable f(tflite_bytes) -> seconds, got "
                            f"{options.latency_fn!r}")
        parsed = parse_target(target, defaults.target, defaults.number_means)
        budgets = [(k, getattr(options, f"target_{k}")) for k in BUDGET_KINDS
                   if getattr(options, f"target_{k}") is not None]
        if budgets and defaults.budget_targets:
            if len(budgets) > 1:
                raise ValueError("give one device budget: target_arena_bytes= or "
                                 "target_latency_ms=, not both")
            if target is not None:
                raise ValueError(f"give either target={target!r} or target_{budgets[0][0]}=, "
                                 "not both (a device budget is the run's target)")
            parsed = Target(*budgets[0])
        if options.complexity_aware == "latency" and defaults.budget_targets and \
                (parsed is None or parsed.kind != "latency_ms"):
            raise ValueError("complexity_aware='latency' weighs layers by their measured "
                             "latency: give the budget too, target_latency_ms=<ms>")
        return cls(method=method, epochs=int(epochs), rounds=int(rounds),
                   target=parsed,
                   options=options, criterion=crit, method_options=mine, fit_fn=fit_fn,
                   distill=distill, compile_config=compile_config)

    def stable_options(self) -> Dict[str, Any]:
        """Options as they identify the run (for checkpoint fingerprints)."""
        d = self.options.to_dict()
        d["criterion"] = self.criterion.get_config()
        d.update({f"method.{k}": v for k, v in self.method_options.items()})
        return d


def check_positive(name, value, fix=""):
    """`value` as a positive finite float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r}{fix}")
    if not (float(value) > 0 and float(value) < float("inf")):
        raise ValueError(f"{name} must be a positive number, got {value!r}{fix}")
    return float(value)


# -- data ------------------------------------------------------------------------------

@dataclasses.dataclass
class RunData:
    """The run's data: training, validation (for every decision) and the
    calibration slice (scores, BatchNorm re-estimation)."""

    train: data_lib.Data
    val: data_lib.Data
    calibration: data_lib.Data


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
    if config.distill and train.kind != "numpy":
        raise ValueError("distill= needs numpy (x, y) train_data (the teacher's outputs "
                         "are computed once per training sample)")
    calibration = data_lib.subset(train, int(opts.calibration_samples), opts.seed or 0)
    return RunData(train, val, calibration)
