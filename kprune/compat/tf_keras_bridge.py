"""Keras 3 <-> tf_keras (Keras 2) bridge.

tensorflow-model-optimization (QAT) only accepts tf_keras models, and many
TensorFlow users still have tf_keras models (``.h5`` files, TF <= 2.15 code).
A Keras 3 model's JSON does not load in tf_keras (``InputLayer``
``batch_shape``, dtype-policy dicts, new config keys), so the bridge rebuilds
the model layer by layer: each layer's config is translated to the other
library's constructor, the functional graph is replayed node by node (nested
models and shared layers included: a layer called twice becomes one layer
called twice), and the weights are copied.

* Keras layers: same class name in the other library, translated config.
* Keras 3 operations in a functional graph (``x * keras.ops.sigmoid(x)``)
  become tf_keras ``Lambda`` layers calling the same Keras 3 operation (exact
  on the TensorFlow backend) and turn back into the operation on the way back.
* tf_keras ``TFOpLambda`` layers (``tf.nn.relu(x)``, ``x + y``) become the
  matching ``keras.ops`` call where one exists, else a Keras 3 ``Lambda``.

Neither ``tf_keras`` nor tensorflow-model-optimization is imported by
``import kprune``; tf_keras is imported on the first conversion.

Example:
    >>> import keras, kprune
    >>> m3 = kprune.zoo.lenet5()
    >>> m2 = kprune.compat.to_tf_keras(m3)           # a tf_keras.Model
    >>> back = kprune.compat.from_tf_keras(m2)       # a keras.Model again
    >>> kprune.compat.is_tf_keras(m2), kprune.compat.is_tf_keras(back)
    (True, False)
"""

import inspect
import sys
from typing import Dict, List

import numpy as np

from kprune.compat.keras_private import history_operation, nodes_by_depth, tf_keras_tensor_class

__all__ = ["UnsupportedLayerError", "compile_like", "from_tf_keras", "is_tf_keras",
           "to_tf_keras"]


class UnsupportedLayerError(ValueError):
    """A layer (or config option) has no equivalent in the other Keras."""


# Keyword arguments every tf_keras / Keras 3 base Layer accepts.
_TFK_BASE_KWARGS = {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape",
                    "batch_input_shape", "batch_size", "weights", "activity_regularizer",
                    "autocast", "implementation"}
_K3_BASE_KWARGS = {"name", "trainable", "dtype", "autocast", "input_dim", "input_shape",
                   "activity_regularizer"}
# Values that mean "option unused", so a key the other library lacks can go.
_NEUTRAL = (None, False, 0, {}, [], "")


def is_tf_keras(obj) -> bool:
    """True for a tf_keras (Keras 2) layer or model; never imports tf_keras."""
    return any(c.__module__.split(".")[0] == "tf_keras" for c in type(obj).__mro__)


def _is_keras3(obj) -> bool:
    return any(c.__module__.split(".")[0] == "keras" for c in type(obj).__mro__)


def _tf_keras():
    try:
        import tf_keras
    except ImportError as err:  # pragma: no cover - tf_keras is a dependency
        raise ImportError("kprune.compat needs tf_keras: "
                          "pip install 'tf_keras>=2.21,<2.22'") from err
    return tf_keras


# --------------------------------------------------------------------- configs
def _plain_object(value):
    """A Keras 3 / tf_keras serialized object -> {'class_name', 'config'}."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        config = value["config"]
        if isinstance(config, dict):
            config = {k: _plain_object(v) for k, v in config.items()}
        return {"class_name": value["class_name"], "config": config}
    return value


def _dtype_name(value):
    if isinstance(value, dict):  # Keras 3 DTypePolicy / FloatDTypePolicy dict
        cfg = value.get("config", {})
        return cfg.get("name", "float32")
    return value


def _defaults(cls) -> dict:
    out = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        try:
            params = inspect.signature(init).parameters if init else {}
        except (TypeError, ValueError):
            continue
        out.update({k: p.default for k, p in params.items() if p.default is not p.empty})
    return out


def _accepted(cls) -> set:
    """Constructor keywords of `cls` (and of the parents its **kwargs reach)."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            continue
        names.update(p for p in params if p not in ("self", "args", "kwargs"))
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return names  # this __init__ does not forward to its parents'
        if klass.__module__.startswith(("keras.src.layers.layer", "keras.src.ops.operation",
                                        "tf_keras.src.engine.base_layer")):
            break
    return names | {"__base__"}


# (class name, to tf_keras?) -> {source key: target key}
_RENAMES = {
    ("LeakyReLU", True): {"negative_slope": "alpha"},
    ("LeakyReLU", False): {"alpha": "negative_slope"},
}


def _untrack(value):
    """tf.Module wrappers (ListWrapper, _DictWrapper) -> plain lists/dicts."""
    if isinstance(value, dict) or type(value).__name__ == "_DictWrapper":
        return {k: _untrack(v) for k, v in value.items()}
    if isinstance(value, list) or type(value).__name__ == "ListWrapper":
        return [_untrack(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_untrack(v) for v in value)
    return value


def _translate_config(layer, target_cls, to_tfk: bool) -> dict:
    config = _untrack(dict(layer.get_config()))
    if not to_tfk and target_cls.__name__ == "BatchNormalization":
        axis = config.get("axis")
        if isinstance(axis, list) and len(axis) == 1:  # tf_keras keeps [axis]
            config["axis"] = axis[0]
    config["dtype"] = _dtype_name(config.get("dtype"))
    if config["dtype"] is None:
        config.pop("dtype")
    for drop in ("batch_input_shape", "batch_shape", "input_shape"):
        config.pop(drop, None)
    for old, new in _RENAMES.get((target_cls.__name__, to_tfk), {}).items():
        if old in config:
            config[new] = config.pop(old)
    accepted = _accepted(target_cls)
    if "__base__" in accepted:  # **kwargs reach the base Layer
        accepted |= _TFK_BASE_KWARGS if to_tfk else _K3_BASE_KWARGS
    out = {}
    target = "tf_keras" if to_tfk else "Keras 3"
    defaults = _defaults(type(layer))
    for key, value in config.items():
        if key not in accepted:
            if key in defaults and _same(defaults[key], value):
                continue
            if key.endswith("_initializer"):
                continue  # unused by the target class; the weights are copied anyway
            if value in _NEUTRAL if not isinstance(value, (list, dict, np.ndarray)) else not value:
                continue
            raise UnsupportedLayerError(
                f"layer '{layer.name}' ({type(layer).__name__}) sets {key}={value!r}, which "
                f"{target}'s {target_cls.__name__} does not support: rebuild the layer "
                f"without it before converting")
        kind = key.rsplit("_", 1)[-1]
        if kind in ("initializer", "regularizer", "constraint") and isinstance(value, dict):
            value = _translate_object(layer, key, value, kind, to_tfk)
        elif key == "activation":
            value = _plain_object(value)
            if isinstance(value, dict) and value.get("class_name") == "QuantizeAwareActivation":
                value = value["config"]["activation"]  # tfmot's wrapper of the activation
        out[key] = value
    return out


def _what(obj) -> str:
    kind = "model" if hasattr(obj, "layers") else "layer"
    return f"{kind} '{obj.name}' ({type(obj).__name__})"


def _same(a, b) -> bool:
    try:
        return bool(a == b) or (isinstance(a, (list, tuple)) and list(a) == list(b))
    except Exception:  # arrays and other odd values
        return False


def _translate_object(layer, key, value, kind, to_tfk, module=None):
    """A serialized initializer/regularizer/constraint -> an instance in the target."""
    lib = _tf_keras() if to_tfk else __import__("keras")
    module = module or getattr(lib, kind + "s")
    name = value.get("class_name")
    cls = getattr(module, name, None)
    if cls is None:
        raise UnsupportedLayerError(
            f"{_what(layer)}: {key} is {name}, which has no "
            f"{'tf_keras' if to_tfk else 'Keras 3'} equivalent: use a built-in {kind}")
    config = _untrack(dict(value.get("config") or {}))
    if config.get("reduction") == "auto":  # tf_keras' default, Keras 3 lacks it
        config.pop("reduction")
    config.pop("fn", None)  # a loss wrapper's function: implied by the class
    lr = config.get("learning_rate")
    if isinstance(lr, dict) and "class_name" in lr:
        config["learning_rate"] = _translate_object(layer, key + ".learning_rate", lr,
                                                    "schedule", to_tfk,
                                                    lib.optimizers.schedules)
    accepted = _accepted(cls)
    for k in list(config):
        if k not in accepted:
            if config[k] in _NEUTRAL if not isinstance(config[k], (list, dict)) else not config[k]:
                del config[k]
            else:
                raise UnsupportedLayerError(
                    f"{_what(layer)}: {key} {name} sets {k}={config[k]!r}, which "
                    f"{'tf_keras' if to_tfk else 'Keras 3'} does not support")
    return cls(**config)


# ------------------------------------------------------- layer construction
class _Converter:
    """One conversion: caches converted layers (shared layers stay shared)."""

    def __init__(self, to_tfk: bool):
        self.to_tfk = to_tfk
        self.tfk = _tf_keras()
        import keras
        self.keras = keras
        self.layers: Dict[int, object] = {}
        self.pairs: List[tuple] = []  # (source layer, converted layer) for weights

    @property
    def target(self):
        return self.tfk if self.to_tfk else self.keras

    def layer(self, layer):
        key = id(layer)
        if key in self.layers:
            return self.layers[key]
        if self._is_model(layer):
            new = self.model(layer)
        else:
            new = self._new_layer(layer)
            if type(layer).__name__ not in ("QuantizeWrapper", "QuantizeWrapperV2"):
                self.pairs.append((layer, new))
        self.layers[key] = new
        return new

    def _is_model(self, layer):
        src = self.keras if self.to_tfk else self.tfk
        return isinstance(layer, src.Model)

    def _new_layer(self, layer):
        name = type(layer).__name__
        source_ok = _is_keras3(layer) if self.to_tfk else is_tf_keras(layer)
        if self.to_tfk and not isinstance(layer, self.keras.layers.Layer):
            return _op_lambda(self.tfk, layer)
        if not self.to_tfk and name == "Lambda" and hasattr(layer, "_kprune_op"):
            op, rebuild = layer._kprune_op, layer._kprune_rebuild

            def call_op(inputs):
                args, kwargs = rebuild(inputs)
                return op(*args, **kwargs)

            return call_op
        if not self.to_tfk and name in ("TFOpLambda", "SlicingOpLambda"):
            return _tf_op_to_keras3(self.keras, layer)
        if not self.to_tfk and name == "QuantizeLayer":
            return lambda x, **kwargs: x  # tfmot input fake-quant: the float model skips it
        if not self.to_tfk and name in ("QuantizeWrapper", "QuantizeWrapperV2"):
            inner = layer.layer  # the float layer tfmot wrapped (its trained weights)
            new = self._new_layer(inner)
            wrapped = _WrappedWeights(layer)
            wrapped.target = new
            self.pairs.append((wrapped, new))
            return new
        cls = getattr(self.target.layers, name, None)
        builtin = type(layer).__module__.startswith(("keras.", "tf_keras."))
        if cls is None or not source_ok or not builtin:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' ({type(layer).__module__}.{name}) has no "
                f"{'tf_keras' if self.to_tfk else 'Keras 3'} equivalent: the bridge converts "
                f"the built-in Keras layers kprune supports; replace this layer (or, for a "
                f"custom layer, write it for both libraries) before converting")
        if name == "Lambda":
            raise UnsupportedLayerError(
                f"layer '{layer.name}' is a Lambda layer: its Python function cannot be "
                f"translated between Keras versions; replace it with built-in layers")
        config = _translate_config(layer, cls, self.to_tfk)
        try:
            return cls.from_config(config)
        except Exception as err:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' ({name}) could not be rebuilt in "
                f"{'tf_keras' if self.to_tfk else 'Keras 3'} from config {config}: {err}") from err

    # ------------------------------------------------------------------ models
    def model(self, model):
        if type(model).__name__ == "Sequential":
            return self._sequential(model)
        inputs = getattr(model, "inputs", None)
        if not inputs or not hasattr(model, "_nodes_by_depth"):
            raise UnsupportedLayerError(
                f"model '{model.name}' ({type(model).__name__}) is not a built Functional or "
                f"Sequential model (a subclassed model?): only graph models can be converted; "
                f"build it with keras.Input(...) and keras.Model(inputs, outputs)")
        new_inputs = [self._input(t) for t in inputs]
        outputs = self._replay(model, new_inputs)
        new = self.target.Model(new_inputs if len(new_inputs) > 1 else new_inputs[0],
                                outputs, name=model.name)
        return new

    def _input(self, tensor):
        shape = tuple(tensor.shape)
        name = history_operation(tensor).name
        dtype = tensor.dtype if self.to_tfk else tensor.dtype.name
        return self.target.Input(batch_shape=shape, dtype=dtype, name=name)

    def _sequential(self, model):
        if not model.built or not getattr(model, "inputs", None):
            raise UnsupportedLayerError(
                f"Sequential model '{model.name}' is not built: give it a keras.Input "
                f"(or call model.build(input_shape)) before converting")
        layers = [self._input(model.inputs[0])]
        layers += [self.layer(l) for l in model.layers]
        return self.target.Sequential(layers, name=model.name)

    def _replay(self, model, new_inputs):
        tensors = {id(x): y for x, y in zip(model.inputs, new_inputs)}
        by_depth = nodes_by_depth(model)
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                op = node.operation if self.to_tfk else node.layer
                if op is None or node.is_input:
                    continue
                ins = node.input_tensors if self.to_tfk else node.keras_inputs
                if any(id(x) not in tensors for x in ins):
                    continue
                if self.to_tfk:
                    args, kwargs = node.arguments.fill_in(tensors)
                    outs_ref = node.outputs
                else:
                    args, kwargs = _fill_tfk(self.tfk, node.call_args, node.call_kwargs, tensors)
                    outs_ref = _flatten(node.outputs)
                new_op = self.layer(op)
                outputs = new_op(*args, **kwargs)
                for x, y in zip(outs_ref, _flatten(outputs)):
                    tensors[id(x)] = y
        outs = [tensors[id(x)] for x in model.outputs]
        return outs if len(outs) > 1 else outs[0]

    def copy_weights(self):
        for src, dst in self.pairs:
            if not hasattr(dst, "get_weights") or not hasattr(src, "get_weights"):
                continue  # a Keras 3 operation or tf op: no weights
            values = src.get_weights()
            shapes = [w.shape for w in dst.get_weights()]
            if [tuple(v.shape) for v in values] != [tuple(s) for s in shapes]:
                raise UnsupportedLayerError(
                    f"layer '{src.name}' ({type(src).__name__}): weight shapes "
                    f"{[tuple(v.shape) for v in values]} do not match the converted layer's "
                    f"{[tuple(s) for s in shapes]}")
            if values:
                dst.set_weights(values)


class _WrappedWeights:
    """The float weights of a tfmot QuantizeWrapper (the wrapper owns its inner
    layer's kernel; quantizer min/max variables are left out), matched by name
    to the converted layer's weights."""

    def __init__(self, wrapper):
        self.wrapper = wrapper
        self.name = wrapper.layer.name
        self.target = None

    def get_weights(self):
        def short(w):
            return w.name.split("/")[-1].split(":")[0]
        by_name = {}
        for w in self.wrapper.weights:
            by_name.setdefault(short(w), w)
        return [np.asarray(by_name[short(w)]) for w in self.target.weights if short(w) in by_name]


def _flatten(value):
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(_flatten(v))
        return out
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _flatten(value[k])]
    return [value]


def _fill_tfk(tfk, args, kwargs, tensors):
    import tensorflow as tf
    KerasTensor = tf_keras_tensor_class()

    def sub(x):
        return tensors[id(x)] if isinstance(x, KerasTensor) else x

    return tf.nest.map_structure(sub, args), tf.nest.map_structure(sub, kwargs)


def _op_lambda(tfk, op):
    """A callable standing for Keras 3 operation `op` in a tf_keras graph: a
    tf_keras Lambda over the call's tensors (its constants captured) that
    runs `op` itself (exact on the TensorFlow backend). The Lambda keeps
    `op` and the argument structure so `from_tf_keras` restores the op."""
    state = {}

    def unpack(inputs):
        args, kwargs = state["args"](inputs)
        return op(*args, **kwargs)

    class Caller:
        """Calls the Lambda on the tensors of (args, kwargs), constants captured."""

        def __init__(self):
            self.layer = tfk.layers.Lambda(unpack, name=_unique(op.name))
            self.layer._kprune_op = op

        def __call__(self, *args, **kwargs):
            import tensorflow as tf
            flat = tf.nest.flatten((args, kwargs))
            idx = [i for i, v in enumerate(flat) if tf.is_tensor(v) or hasattr(v, "_keras_history")]
            structure = (args, kwargs)

            def rebuild(inputs):
                inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
                values = list(flat)
                for i, t in zip(idx, inputs):
                    values[i] = t
                return tf.nest.pack_sequence_as(structure, values)

            state["args"] = rebuild
            self.layer._kprune_rebuild = rebuild
            tensors = [flat[i] for i in idx]
            return self.layer(tensors if len(tensors) > 1 else tensors[0])

        def get_weights(self):
            return []

    return Caller()


_NAMES: Dict[str, int] = {}


def _unique(name):
    _NAMES[name] = _NAMES.get(name, 0) + 1
    return name if _NAMES[name] == 1 else f"{name}_{_NAMES[name]}"


# tf_keras TFOpLambda symbol -> keras.ops function name.
_TF_SYMBOLS = {
    "__operators__.add": "add", "math.add": "add", "__operators__.sub": "subtract",
    "math.subtract": "subtract", "__operators__.mul": "multiply", "math.multiply": "multiply",
    "__operators__.truediv": "true_divide", "math.truediv": "true_divide",
    "math.divide": "divide", "math.maximum": "maximum", "math.minimum": "minimum",
    "math.abs": "abs", "math.negative": "negative", "__operators__.neg": "negative",
    "math.exp": "exp", "math.log": "log", "math.sqrt": "sqrt", "math.square": "square",
    "math.sign": "sign", "math.reciprocal": "reciprocal", "math.pow": "power",
    "nn.relu": "relu", "nn.relu6": "relu6", "math.sigmoid": "sigmoid", "nn.sigmoid": "sigmoid",
    "math.tanh": "tanh", "nn.tanh": "tanh", "nn.silu": "silu", "nn.swish": "silu",
    "nn.gelu": "gelu", "math.softplus": "softplus", "nn.softplus": "softplus",
    "nn.elu": "elu", "nn.selu": "selu", "nn.softmax": "softmax",
    "clip_by_value": "clip", "reshape": "reshape", "concat": "concatenate",
}


def _tf_op_to_keras3(keras, layer):
    """A tf_keras TFOpLambda -> a callable building the Keras 3 equivalent."""
    symbol = getattr(layer, "symbol", "")
    fname = _TF_SYMBOLS.get(symbol)
    if fname is None:
        raise UnsupportedLayerError(
            f"layer '{layer.name}' is the TensorFlow op tf.{symbol} (a TFOpLambda) with no "
            f"Keras 3 equivalent known to kprune.compat: replace it with a Keras layer")
    fn = getattr(keras.ops, fname)

    def call(*args, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k != "name"}
        if fname == "clip":
            x, lo, hi = (list(args) + [kwargs.pop("clip_value_min", None),
                                       kwargs.pop("clip_value_max", None)])[:3]
            return fn(x, lo, hi)
        if fname == "concatenate":
            return fn(args[0], axis=kwargs.get("axis", args[1] if len(args) > 1 else 0))
        if fname == "reshape":
            shape = kwargs.get("shape", args[1] if len(args) > 1 else None)
            return fn(args[0], shape)
        if fname == "softmax":
            return fn(args[0], axis=kwargs.get("axis", -1))
        kwargs.pop("features", None)
        return fn(*args, **{k: v for k, v in kwargs.items() if k in ("axis",)})

    return call


# ------------------------------------------------------------------- compile
def _compile_objects(source, to_tfk):
    """The compile() arguments of `source`, rebuilt in the target library
    (loss, metrics, loss weights and a fresh optimizer of the same class and
    config), or None when `source` is not compiled."""
    if not getattr(source, "optimizer", None) or not getattr(source, "compiled", True):
        return None
    try:
        config = source.get_compile_config()
    except Exception:  # noqa: BLE001 - not compiled / custom objects
        return None
    if not config or config.get("loss") is None and config.get("optimizer") is None:
        return None
    lib = _tf_keras() if to_tfk else __import__("keras")

    def obj(value, module, what):
        if isinstance(value, str) or value is None:
            return value
        if isinstance(value, (list, tuple)):
            return [obj(v, module, what) for v in value]
        if isinstance(value, dict) and "class_name" in value:
            return _translate_object(source, what, value, what, to_tfk, module)
        if isinstance(value, dict):
            return {k: obj(v, module, what) for k, v in value.items()}
        return value

    kwargs = {
        "optimizer": obj(config.get("optimizer"), lib.optimizers, "optimizer"),
        "loss": obj(config.get("loss"), lib.losses, "loss"),
        "metrics": obj(config.get("metrics"), lib.metrics, "metrics"),
        "loss_weights": _untrack(config.get("loss_weights")),
        "weighted_metrics": obj(config.get("weighted_metrics"), lib.metrics, "metrics"),
    }
    return {k: v for k, v in kwargs.items() if v is not None}


def compile_like(target, source) -> bool:
    """Compiles `target` like `source` (loss, metrics, a fresh optimizer of
    the same class and config) across Keras versions; a warning and False
    when `source` is compiled with something the other Keras lacks.

    Example:
        >>> compile_like(to_tf_keras(model), model)
        True
    """
    import warnings
    try:
        kwargs = _compile_objects(source, to_tfk=is_tf_keras(target))
    except Exception as err:  # noqa: BLE001 - custom losses/metrics/optimizers
        warnings.warn(f"model '{source.name}' could not be compiled the same way in the other "
                      f"Keras ({err}); '{target.name}' is returned uncompiled: call compile() "
                      f"on it")
        return False
    if kwargs is None:
        return False
    target.compile(**kwargs)
    return True


# ------------------------------------------------------------------ public API
def require_model(model, what: str = "model", allow_tf_keras: bool = True):
    """`model` when it is a Keras 3 model (or a tf_keras one, with
    `allow_tf_keras`); otherwise a TypeError naming `what` and the fix."""
    import keras

    if isinstance(model, keras.Model) or (allow_tf_keras and is_tf_keras(model)
                                          and hasattr(model, "layers")):
        return model
    if is_tf_keras(model) or _is_keras3(model):
        hint = (" (a tf_keras / Keras 2 model: convert it with kprune.compat.from_tf_keras, "
                "or save and load it with Keras 3)" if is_tf_keras(model) else
                " (a layer, not a model: wrap it with keras.Model(inputs, layer(inputs)))")
    elif isinstance(model, (str, bytes, bytearray)) or hasattr(model, "__fspath__"):
        hint = (" (a file path? load it first: keras.saving.load_model(path))"
                if not isinstance(model, (bytes, bytearray)) else
                " (TFLite bytes? pass the Keras model they were converted from)")
    else:
        hint = ""
    raise TypeError(f"{what} must be a keras.Model, got {type(model).__name__}{hint}")


def keras3_of(model):
    """`model` itself for a Keras 3 model, its Keras 3 copy for a tf_keras one
    (how kprune's entry points accept tf_keras models); anything else is a
    TypeError (`require_model`)."""
    require_model(model)
    return from_tf_keras(model) if is_tf_keras(model) else model



def to_tf_keras(model, compile: bool = True):
    """Rebuilds a Keras 3 model in tf_keras (Keras 2), weights included.

    Args:
        model: a built Keras 3 Functional or Sequential model; nested models
            and shared layers are kept as such.
        compile: when `model` is compiled, compile the copy the same way
            (loss, metrics, a fresh optimizer of the same class and config).

    Returns:
        A ``tf_keras.Model`` whose outputs equal the original's (float32
        round-off: within 1e-5).

    Raises:
        TypeError: `model` is not a Keras 3 model (a tf_keras model is
            returned by `from_tf_keras`'s inverse: pass it unchanged).
        UnsupportedLayerError: a layer (named in the message) has no tf_keras
            equivalent, or the model is subclassed / not built.

    Example:
        >>> m2 = kprune.compat.to_tf_keras(kprune.zoo.lenet5())
        >>> type(m2).__module__.startswith("tf_keras")
        True
    """
    import keras
    if is_tf_keras(model):
        raise TypeError(f"to_tf_keras expects a Keras 3 model, got the tf_keras model "
                        f"'{model.name}': it is already tf_keras")
    if not isinstance(model, keras.Model):
        raise TypeError(f"to_tf_keras expects a keras.Model, got {type(model).__name__}")
    return _convert(model, to_tfk=True, compile=compile)


def from_tf_keras(model, compile: bool = True):
    """Rebuilds a tf_keras (Keras 2) model in Keras 3, weights included.

    Args:
        model: a built tf_keras Functional or Sequential model (e.g. loaded
            from an ``.h5`` file with ``tf_keras.models.load_model``).
        compile: when `model` is compiled, compile the copy the same way.

    Returns:
        A ``keras.Model`` whose outputs equal the original's within 1e-5.
        A tfmot quantization-aware model gives its float model: the quantize
        wrappers are dropped and the wrapped layers keep their QAT-trained
        weights (fake quantization is not applied).

    Raises:
        TypeError: `model` is not a tf_keras model.
        UnsupportedLayerError: a layer (named in the message) has no Keras 3
            equivalent, or the model is subclassed / not built.

    Example:
        >>> import tf_keras
        >>> m2 = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)])
        >>> kprune.compat.from_tf_keras(m2).layers[-1].units
        2
    """
    if not is_tf_keras(model):
        raise TypeError(f"from_tf_keras expects a tf_keras model, got "
                        f"{type(model).__module__}.{type(model).__name__}")
    tfk = sys.modules.get("tf_keras") or _tf_keras()
    if not isinstance(model, tfk.Model):
        raise TypeError(f"from_tf_keras expects a tf_keras.Model, got {type(model).__name__}")
    return _convert(model, to_tfk=False, compile=compile)


def _convert(model, to_tfk: bool, compile: bool):
    """The model rebuilt in the other Keras, weights copied, compiled alike."""
    conv = _Converter(to_tfk=to_tfk)
    new = conv.model(model)
    conv.copy_weights()
    if compile:
        compile_like(new, model)
    return new
