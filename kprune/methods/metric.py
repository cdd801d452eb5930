"""The measure every decision of a pruning run is taken on: ``metric=``.

`kprune.prune` decides (accept / reject a round, AIAP rollback, the best
round, patience) on one number computed on the validation data. By default
it is the top-1 accuracy of a single-output classifier; ``metric=`` makes it
anything else:

* ``'accuracy'`` (default) or ``'<output>_accuracy'``: kprune's top-1
  accuracy (sparse or one-hot labels; a single sigmoid unit thresholded at
  0.5) of the model's only output, or of the named output. A single-output
  model compiled with a regression loss (MSE, MAE, Huber, ...) defaults to
  ``'loss'`` instead (lower is better), since top-1 means nothing for it;
* a name of the compiled model's evaluation results, as ``model.evaluate``
  reports them: ``'loss'`` (the compiled loss over all outputs),
  ``'<output>_loss'``, ``'mae'``, ``'<output>_mae'``, ...;
* a Keras metric or loss name that is not compiled (``'mae'``, ``'auc'``,
  ``'<output>_mse'``), a ``keras.metrics.Metric`` or ``keras.losses.Loss``
  instance or class (computed on the model's only output), or a one-entry
  dict ``{output name: any of those}`` naming the output;
* ``fn(model, data) -> float``: `data` is the validation data in the kind it
  was passed (``(x, y)`` numpy arrays, a ``tf.data.Dataset`` or a
  ``keras.utils.PyDataset``); it may combine outputs (e.g. a weighted sum of
  two heads' errors, a detection mAP, a perplexity).

The direction (``metric_direction='max'`` when higher is better, ``'min'``
when lower is) is inferred for Keras' metrics and losses by name (accuracy,
AUC, precision, recall, IoU, F1, R2, cosine similarity: max; loss, errors,
crossentropies, hinge, divergences, perplexity: min) and must be given for a
callable or an unknown name. A multi-output model needs ``metric=``.

History entries hold the value as ``'val_<name>'`` (``'val_accuracy'``,
``'val_mae'``, ``'val_cls_accuracy'``, ``'val_<fn name>'``).

Example:
    >>> metric = parse_metric("mae", None, model)
    >>> metric.key, metric.higher_is_better
    ('val_mae', False)
"""

import math
import numbers
import re
from typing import Optional

import numpy as np

from kprune.data import accuracy_and_count, predictions, top1_counts

#: name words that say higher is better / lower is better
_MAX_WORDS = ("accuracy", "acc", "auc", "precision", "recall", "iou", "f1", "fbeta", "r2",
              "cosine_similarity", "similarity", "map", "dice", "psnr", "ssim", "bleu")
_MIN_WORDS = ("loss", "error", "mae", "mse", "rmse", "msle", "mape", "crossentropy",
              "hinge", "divergence", "kld", "kl", "poisson", "logcosh", "cosh", "huber",
              "perplexity", "ppl")
#: name words of metrics with values in [0, 1] (an absolute loss target is meaningful)
_BOUNDED_WORDS = ("accuracy", "acc", "auc", "precision", "recall", "iou", "f1", "fbeta",
                  "dice", "map")

DIRECTIONS = ("max", "min")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _words(name: str):
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def infer_direction(name: str) -> Optional[str]:
    """'max' / 'min' from a metric or loss name, or None when unknown.

    Example:
        >>> infer_direction("output_1_accuracy"), infer_direction("mean_absolute_error")
        ('max', 'min')
    """
    words = _words(name)
    if "loss" in words or "perplexity" in words:
        return "min"
    if any(w in words for w in _MAX_WORDS) or "similarity" in name.lower():
        return "max"
    if any(w in words for w in _MIN_WORDS) or "crossentropy" in name.lower():
        return "min"
    return None


def _bounded(name: str) -> bool:
    return any(w in _BOUNDED_WORDS for w in _words(name))


class Metric:
    """A bound validation measure: ``name`` (history key ``'val_<name>'``),
    ``higher_is_better``, ``bounded`` (values in [0, 1], so an absolute
    ``accuracy_loss`` target is meaningful) and ``evaluate(model, data)`` ->
    ``(value, samples or None)``."""

    kind = "metric"

    def __init__(self, name: str, higher_is_better: bool, bounded: bool = False):
        self.name, self.higher_is_better, self.bounded = name, bool(higher_is_better), bounded

    @property
    def key(self) -> str:
        """The history-entry field of the value (``'val_<name>'``)."""
        return f"val_{self.name}"

    @property
    def direction(self) -> str:
        return "max" if self.higher_is_better else "min"

    @property
    def is_top1(self) -> bool:
        """kprune's top-1 accuracy (a binomial proportion)."""
        return False

    def bind(self, model, val, compile_config) -> "Metric":
        """The metric resolved against the model and its validation data."""
        return self

    def evaluate(self, model, data):
        raise NotImplementedError

    def describe(self):
        """A JSON-able identity (for checkpoint fingerprints)."""
        return {"kind": self.kind, "name": self.name, "direction": self.direction}

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, {self.direction!r})"


# -- output and label selection ------------------------------------------------------

def _plain_output_names(model):
    names = getattr(model, "output_names", None)
    if names and len(names) == len(model.outputs):
        return list(names)
    return [f"output_{i}" for i in range(len(model.outputs))]


def select_output(pred, index: int):
    if isinstance(pred, dict):
        return list(pred.values())[index]
    if isinstance(pred, (list, tuple)):
        return pred[index]
    return pred


def select_labels(y, index: int, names):
    """The labels of output `index` from ``y`` (an array, a list/tuple per
    output or a dict keyed by output name)."""
    if isinstance(y, dict):
        return y[names[index]] if names[index] in y else list(y.values())[index]
    if isinstance(y, (list, tuple)):
        return y[index]
    return y


# -- the kinds of metric ---------------------------------------------------------------

class TopOne(Metric):
    """kprune's top-1 accuracy of one output (the default metric)."""

    kind = "top1"

    def __init__(self, name="accuracy", output: int = 0):
        super().__init__(name, True, True)
        self.output = output

    @property
    def is_top1(self) -> bool:
        return True

    def evaluate(self, model, data):
        if self.output == 0 and len(model.outputs) == 1:
            return accuracy_and_count(model, data)
        names = _plain_output_names(model)
        correct, total = 0, 0
        for p, y in predictions(model, data):
            p = np.asarray(select_output(p, self.output))
            if not np.all(np.isfinite(p)):
                return float("nan"), total + len(p)
            c, n = top1_counts(p, select_labels(y, self.output, names))
            correct, total = correct + c, total + n
        return correct / max(total, 1), total

    def describe(self):
        return {**super().describe(), "output": self.output}


class Compiled(Metric):
    """A result of ``model.evaluate`` (the model compiled like the user's)."""

    kind = "compiled"

    def __init__(self, name, higher_is_better, compile_config):
        super().__init__(name, higher_is_better, _bounded(name))
        self.compile_config = compile_config

    def evaluate(self, model, data):
        if not getattr(model, "compiled", False) or getattr(model, "loss", None) is None:
            model.compile_from_config(self.compile_config)
        if data.kind == "numpy":
            res = model.evaluate(data.x, data.y, batch_size=256, verbose=0, return_dict=True)
            n = len(data)
        else:
            res = model.evaluate(data.source, verbose=0, return_dict=True)
            n = None
        if self.name not in res:
            raise ValueError(f"metric={self.name!r}: model.evaluate of the pruned model "
                             f"reports {sorted(res)}, not {self.name!r}; pass a "
                             "keras.metrics instance or fn(model, data) instead")
        return float(res[self.name]), n


class Standalone(Metric):
    """A Keras metric (or loss, averaged over samples) on one output,
    computed outside the model's compile state."""

    kind = "keras"

    def __init__(self, obj, output: int, name: str, higher_is_better, is_loss=False):
        super().__init__(name, higher_is_better, _bounded(_snake(type(obj).__name__))
                         or _bounded(name))
        self.obj, self.output, self.is_loss = obj, output, is_loss

    def _fresh(self):
        o = self.obj
        try:
            return type(o).from_config(o.get_config())
        except Exception:  # noqa: BLE001 - a metric without a config: reset its state
            if hasattr(o, "reset_state"):
                o.reset_state()
            return o

    def evaluate(self, model, data):
        names = _plain_output_names(model)
        m = self._fresh()
        total, acc = 0, 0.0
        for p, y in predictions(model, data):
            p = np.asarray(select_output(p, self.output))
            y = np.asarray(select_labels(y, self.output, names))
            if not np.all(np.isfinite(p)):
                return float("nan"), total + len(p)
            if self.is_loss:
                acc += float(m(y, p)) * len(p)
            else:
                m.update_state(y, p)
            total += len(p)
        value = acc / max(total, 1) if self.is_loss else float(m.result())
        return value, total

    def describe(self):
        from kprune.methods.fingerprint import stable

        return {**super().describe(), "output": self.output, "object": stable(self.obj)}


class UserFunction(Metric):
    """``fn(model, data) -> float`` on the validation data as the user passed it."""

    kind = "callable"

    def __init__(self, fn, higher_is_better, name=None):
        name = name or getattr(fn, "__name__", "") or "metric"
        if not name.isidentifier() or name.startswith("<"):
            name = "metric"
        super().__init__(name, higher_is_better, False)
        self.fn = fn

    def evaluate(self, model, data):
        user = (data.x, data.y) if data.kind == "numpy" else data.source
        value = self.fn(model, user)
        return _as_number(value, self.fn), (len(data) if data.kind == "numpy" else None)

    def describe(self):
        from kprune.methods.fingerprint import stable

        return {**super().describe(), "fn": stable(self.fn)}


class _Unresolved(Metric):
    """A metric name resolved once the validation data is known (`bind`)."""

    kind = "name"

    def __init__(self, spec, direction, output=None):
        super().__init__(str(spec), direction != "min", _bounded(str(spec)))
        self.spec, self.given_direction, self.output = spec, direction, output

    def bind(self, model, val, compile_config) -> Metric:
        return _resolve_name(self.spec, self.given_direction, model, val, compile_config,
                             self.output)

    def describe(self):
        return {"kind": self.kind, "name": self.name, "direction": self.given_direction,
                "output": self.output}


def _as_number(value, fn):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"metric: {_fn_name(fn)} returned a bool ({value!r}); return the "
                        "metric as a float (e.g. float(mae))")
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001
        arr = None
    if arr is not None and arr.size == 1 and np.issubdtype(arr.dtype, np.number) \
            and not np.issubdtype(arr.dtype, np.complexfloating):
        return float(arr.reshape(()))
    raise TypeError(f"metric: {_fn_name(fn)} must return one number (a float), got "
                    f"{type(value).__name__} {value!r:.80}; return e.g. float(value)")


def _fn_name(fn):
    return f"fn {getattr(fn, '__qualname__', repr(fn))}(model, data)"


# -- parsing ---------------------------------------------------------------------------

def _check_direction(direction):
    if direction is None or direction in DIRECTIONS:
        return direction
    raise ValueError(f"metric_direction={direction!r}: use 'max' (higher is better), 'min' "
                     "(lower is better) or None (inferred from the metric's name)")


def _direction_for(name, given, what):
    d = given or infer_direction(name)
    if d is None:
        raise ValueError(f"metric={what}: cannot tell whether higher or lower is better "
                         f"for {name!r}; pass metric_direction='max' (higher is better) or "
                         "'min' (lower is better)")
    return d


def _keras_metric_classes():
    import keras

    return keras.metrics.Metric, keras.losses.Loss


def _output_index(model, name, where):
    names = _plain_output_names(model)
    if name not in names:
        raise ValueError(f"metric={where}: the model has no output {name!r}; its outputs "
                         f"are {names}")
    return names.index(name)


def _multi_output_error(model, what):
    names = _plain_output_names(model)
    return ValueError(
        f"metric={what}: model '{model.name}' has {len(names)} outputs {names}, so the "
        f"metric must name one or combine them: e.g. metric='{names[0]}_accuracy', "
        f"metric='loss' (the compiled loss over all outputs), metric={{'{names[-1]}': "
        "'mae'}, or metric=fn(model, data) -> float with metric_direction='max' | 'min'")


#: Keras loss names (snake case, as functions, classes or strings name them)
#: that make a model a regressor: its default metric is then its loss.
_REGRESSION_LOSSES = ("mse", "mae", "mape", "msle", "mean_squared_error",
                      "mean_absolute_error", "mean_absolute_percentage_error",
                      "mean_squared_logarithmic_error", "huber", "log_cosh", "logcosh",
                      "poisson", "cosine_similarity")


def regression_loss_name(model) -> Optional[str]:
    """The name of `model`'s compiled loss when it is a regression loss (one
    output compiled with MSE, MAE, Huber, ...), else None.

    Example:
        >>> model.compile("adam", "mse"); regression_loss_name(model)
        'mse'
    """
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    elif isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if loss is None or isinstance(loss, (dict, list, tuple)):
        return None
    if isinstance(loss, str):
        name = loss
    else:  # a function, a Loss instance (LossFunctionWrapper keeps its fn) or class
        fn = getattr(loss, "fn", None)
        name = getattr(fn, "__name__", None) or getattr(loss, "__name__", None) \
            or type(loss).__name__
    name = _snake(name).lower()
    return name if name in _REGRESSION_LOSSES else None


def parse_metric(metric, direction, model) -> Metric:
    """Check ``metric=`` / ``metric_direction=`` against `model` (types,
    output names, direction) before any data work; names of compiled results
    are resolved later by `Metric.bind` (they need one evaluation). Raises
    TypeError / ValueError naming ``metric`` and the fix.

    Example:
        >>> parse_metric(None, None, classifier)
        TopOne('accuracy', 'max')
    """
    Met, Loss = _keras_metric_classes()
    direction = _check_direction(direction)
    multi = len(model.outputs) > 1
    output = None
    what = repr(metric) if not callable(metric) or isinstance(metric, (Met, Loss)) \
        else getattr(metric, "__qualname__", "fn")
    if isinstance(metric, dict):
        if len(metric) != 1 or not isinstance(next(iter(metric)), str):
            raise ValueError(f"metric={metric!r}: a dict names one output, "
                             "{output name: metric}, e.g. {'reg': 'mae'}")
        (out_name, metric), = metric.items()
        output = _output_index(model, out_name, what)
        if isinstance(metric, dict) or (callable(metric) and not isinstance(
                metric, (Met, Loss)) and not isinstance(metric, type)):
            raise TypeError(f"metric={what}: the value for output {out_name!r} must be a "
                            "metric name, a keras.metrics / keras.losses instance or class; "
                            "a fn(model, data) sees every output: pass it without the dict")
    if metric is None:
        if multi:
            raise _multi_output_error(model, "None")
        regression = regression_loss_name(model)
        if regression is not None:
            # top-1 accuracy means nothing for a regressor: decide on its loss
            if direction == "max":
                raise ValueError(
                    f"metric_direction='max' contradicts the default metric of model "
                    f"'{model.name}' (its compiled regression loss {regression!r}, lower "
                    "is better): drop metric_direction or pass metric=")
            return _Unresolved("loss", "min", None)
        if direction == "min":
            raise ValueError("metric_direction='min' contradicts the default metric (top-1 "
                             "accuracy, higher is better): drop metric_direction or pass "
                             "metric=")
        return TopOne()
    if isinstance(metric, bool) or isinstance(metric, numbers.Number):
        raise TypeError(f"metric={metric!r} must be a metric name (e.g. 'mae', 'loss'), a "
                        "keras.metrics.Metric (instance or class), a keras.losses.Loss or "
                        "fn(model, data) -> float")
    if isinstance(metric, type):
        if not issubclass(metric, (Met, Loss)):
            raise TypeError(f"metric={metric.__name__}: a class must be a keras.metrics."
                            "Metric or keras.losses.Loss subclass")
        try:
            metric = metric()
        except TypeError as e:
            raise TypeError(f"metric={metric.__name__}: the class cannot be built without "
                            f"arguments ({e}); pass an instance instead") from None
    if isinstance(metric, (Met, Loss)):
        if output is None:
            if multi:
                raise _multi_output_error(model, what)
            output = 0
        is_loss = isinstance(metric, Loss)
        cls_name = _snake(type(metric).__name__)
        d = direction or ("min" if is_loss else infer_direction(cls_name)
                          or infer_direction(getattr(metric, "name", "") or ""))
        d = _direction_for(cls_name, d, what)
        name = getattr(metric, "name", None) or cls_name
        if multi:
            name = f"{_plain_output_names(model)[output]}_{name}"
        return Standalone(metric, output, _identifier(name), d == "max", is_loss)
    if isinstance(metric, str):
        if not metric.strip():
            raise ValueError("metric='': pass a metric name such as 'accuracy', 'mae' or "
                             "'loss'")
        if metric == "accuracy" and multi and output is None:
            raise _multi_output_error(model, repr(metric))
        d = direction or infer_direction(metric)
        return _Unresolved(metric, d, output)
    if callable(metric):
        if direction is None:
            raise ValueError(f"metric={what}: a function's direction cannot be inferred; "
                             "pass metric_direction='max' (higher is better, e.g. accuracy, "
                             "mAP) or 'min' (lower is better, e.g. an error or a loss)")
        return UserFunction(metric, direction == "max")
    raise TypeError(f"metric={what} ({type(metric).__name__}) must be a metric name (e.g. "
                    "'mae', 'loss', 'output_1_accuracy'), a keras.metrics.Metric or "
                    "keras.losses.Loss (instance or class), {output name: metric}, or "
                    "fn(model, data) -> float")


def _identifier(name):
    return re.sub(r"\W+", "_", str(name)).strip("_") or "metric"


def compiled_names(model, val, compile_config):
    """The names ``model.evaluate`` reports for the compiled model on one
    batch of `val` (empty when it is not compiled)."""
    from kprune.data import first_batch

    if compile_config is None or not getattr(model, "compiled", False):
        return []
    x, y = first_batch(val)
    try:
        res = model.evaluate(x, y, verbose=0, return_dict=True)
    except Exception:  # noqa: BLE001 - labels the compiled loss cannot read: no names
        return []
    return sorted(res)


def _resolve_name(spec, direction, model, val, compile_config, output):
    import keras

    names = _plain_output_names(model)
    multi = len(names) > 1
    if output is not None:  # {output: 'name'}
        if spec == "accuracy":
            return TopOne(f"{names[output]}_accuracy" if multi else "accuracy", output)
        full = f"{names[output]}_{spec}" if multi else spec
    else:
        full = spec
        if spec == "accuracy":
            return TopOne()
        for i, n in enumerate(names):
            if multi and spec == f"{n}_accuracy":
                return TopOne(spec, i)
    compiled = compiled_names(model, val, compile_config)
    if full in compiled:
        d = _direction_for(full, direction, repr(spec))
        return Compiled(full, d == "max", compile_config)
    # A Keras metric / loss by name, on the only output or the named one.
    base, idx = spec, output
    if idx is None:
        for i, n in enumerate(names):
            if multi and spec.startswith(n + "_"):
                base, idx = spec[len(n) + 1:], i
                break
    if idx is None and not multi:
        idx = 0
    obj = None
    if idx is not None:
        for getter in (keras.metrics.get, keras.losses.get):
            try:
                obj = getter(base)
            except (ValueError, TypeError):
                continue
            if obj is not None:
                break
    if obj is not None:
        is_loss = isinstance(obj, keras.losses.Loss)
        if not isinstance(obj, (keras.metrics.Metric, keras.losses.Loss)):
            obj = keras.metrics.MeanMetricWrapper(obj, name=base)  # a metric function
        d = _direction_for(base, direction or infer_direction(_snake(type(obj).__name__)),
                           repr(spec))
        return Standalone(obj, idx, _identifier(full), d == "max", is_loss)
    if multi and idx is None and output is None:
        hint = (f"; the compiled results are {compiled}" if compiled else
                "; the model is not compiled with metrics")
        raise ValueError(f"metric={spec!r} is neither a compiled result of model "
                         f"'{model.name}' nor '<output>_<keras metric>' for its outputs "
                         f"{names}{hint}; e.g. metric='{names[0]}_accuracy' or "
                         f"{{'{names[-1]}': 'mae'}}")
    known = f"compiled results: {compiled}" if compiled else "the model reports no compiled results"
    raise ValueError(f"metric={spec!r} is not a Keras metric or loss name nor a compiled "
                     f"result of model '{model.name}' ({known}); pass e.g. 'accuracy', "
                     "'mae', 'loss', a keras.metrics.Metric, or fn(model, data) -> float")


def check_value(metric: Metric, value: float, where="the unpruned model"):
    """A baseline value that is not finite is a ValueError naming ``metric``."""
    if not math.isfinite(value):
        raise ValueError(f"metric={metric.name!r} is {value} on {where} over val_data; the "
                         "metric must be a finite number for the baseline: check the metric "
                         "(fn(model, data) must return a finite float) and the model's "
                         "outputs on the validation inputs")
    return value


__all__ = ["Metric", "TopOne", "Compiled", "Standalone", "UserFunction", "parse_metric",
           "infer_direction", "check_value", "DIRECTIONS"]
