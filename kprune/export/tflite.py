"""Keras model -> LiteRT (TFLite) flatbuffer, for phones and microcontrollers.

The model is converted with a fixed batch-1 input signature by default, so the
graph carries no dynamic-shape ops (SHAPE, PACK, STRIDED_SLICE) that
TFLite-Micro does not need and cannot always run. Four quantization modes:

* ``None`` - float32 weights and activations;
* ``'dynamic'`` - int8 weights, float activations (dynamic-range quantization);
* ``'float16'`` - float16 weights, float32 compute;
* ``'int8'`` - full-integer: int8 weights, activations, input and output, as
  TFLite-Micro needs; calibrated on ``representative_data``.

On the JAX and PyTorch backends the conversion runs in a Python child
process whose Keras uses TensorFlow, on the same weights (saved as
``.keras``); the flatbuffer is the one the TensorFlow backend would give.
One child serves every conversion (started at the first, closed at the end
of a `tensorflow_child` block, by `close_tensorflow_child` or at exit).

Only TFLite builtin ops are allowed (no Flex/Select TF ops: a microcontroller
cannot run them); an op without a builtin kernel raises `ConversionError`
naming the Keras layer that produced it.

Example:
    >>> flat = kprune.export.to_tflite(pruned, quantization="int8",
    ...                                representative_data=x_train[:200],
    ...                                path="pruned_int8.tflite")
"""

import os
import re
import warnings
from typing import List, Optional, Union

import numpy as np

from kprune.atomic import atomic_write_bytes
from kprune.compat.keras_private import interpreter_op_names, set_per_channel_quantization
from kprune.compat.tf_keras_bridge import require_model

QUANTIZATIONS = (None, "dynamic", "float16", "int8")
#: The name used for each quantization mode in reports and JSON.
MODE_NAMES = {None: "float32", "dynamic": "dynamic", "float16": "float16", "int8": "int8"}
#: Calibration uses at most this many representative samples.
MAX_CALIBRATION_SAMPLES = 500


class ConversionError(ValueError):
    """A model (or one of its layers/ops) cannot be converted to TFLite."""


def normalize_quantization(quantization) -> Optional[str]:
    """Maps None/'none'/'float32' to None and validates the other modes."""
    if quantization is None:
        return None
    if not isinstance(quantization, str):
        raise ValueError(f"quantization must be None, 'dynamic', 'float16' or 'int8', "
                         f"got {quantization!r}")
    q = quantization.lower()
    if q in ("none", "float32", "fp32"):
        return None
    if q not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}: use None (float32), "
                         f"'dynamic', 'float16' or 'int8'")
    return q


def to_tflite(model, quantization: Optional[str] = None, representative_data=None,
              batch_size: Optional[int] = 1, path: Optional[str] = None,
              per_channel: bool = True, input_shape=None) -> bytes:
    """Converts a Keras model to a TFLite flatbuffer.

    Args:
        model: a Keras 3 model (Functional, Sequential or a built subclass)
            whose inputs have fully known shapes apart from the batch axis,
            or a tf_keras model, such as the quantization-aware model from
            `kprune.export.quantize_aware` (converted as it is: its fake-quant
            ranges give the int8 scales; `representative_data` is still
            needed for 'int8' and calibrates any op QAT did not cover).
        quantization: None (float32), 'dynamic', 'float16' or 'int8'.
        representative_data: calibration inputs for 'int8': an array shaped
            like a batch of the model's input, ``(N,) + input_shape[1:]``
            (a list of arrays for a multi-input model); at most 500 samples
            are used. Optional for a quantization-aware model (its
            fake-quant nodes carry the ranges). Ignored by the other modes.
        batch_size: the fixed batch size of the signature (default 1); None
            keeps a dynamic batch axis (adds shape ops to the graph).
        path: also write the flatbuffer to this file when given.
        per_channel: for 'int8' only. True (default): Conv2D, DepthwiseConv2D
            and Dense weights get one scale per output channel, TFLite's
            default. False: one scale per weight tensor, for accelerators and
            older toolchains whose int8 kernels are per-tensor only. Per-tensor
            can lose accuracy where channel ranges differ a lot (depthwise
            convolutions after BatchNormalization folding); QAT with
            ``quantize_aware(model, per_channel=False)`` recovers it. A
            quantization-aware model keeps the weight scales it was trained
            with: per-tensor needs ``quantize_aware(model, per_channel=False)``
            (``per_channel=False`` on a per-channel QAT model is an error).
        input_shape: for a model whose inputs have unknown dimensions (a
            sequence length of None): the shape to convert at, batch axis
            excluded (a tuple for every input of its rank, a list in input
            order or a dict by input name; see `with_input_shape`).

    Returns:
        The flatbuffer as bytes.

    Raises:
        ValueError: bad quantization mode, missing or mis-shaped
            representative data, unknown input dimensions.
        ConversionError: an op has no TFLite builtin kernel (the message
            names the layer and the op) or the converter failed otherwise.

    Example:
        >>> flat = to_tflite(model)                                  # float32
        >>> flat8 = to_tflite(model, "int8", representative_data=x[:100])
        >>> len(flat8) < len(flat)
        True
        >>> per_tensor = to_tflite(model, "int8", representative_data=x[:100],
        ...                        per_channel=False)
    """
    import tensorflow as tf

    from kprune.runtime.capture import capture_fds

    require_model(model)
    if input_shape is not None:
        from kprune.export.fixed_shape import with_input_shape
        model = with_input_shape(model, input_shape)
    q = normalize_quantization(quantization)
    if not isinstance(per_channel, bool):
        raise ValueError(f"per_channel must be True (one weight scale per output channel) or "
                         f"False (one per tensor), got {per_channel!r}")
    if not per_channel and q != "int8":
        raise ValueError(f"per_channel=False applies to quantization='int8' only (got "
                         f"quantization={quantization!r}): pass quantization='int8' with "
                         f"representative_data, or leave per_channel=True")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    shapes = _input_shapes(model)
    calibration = None
    if q == "int8" and not (representative_data is None and _is_qat(model)):
        # A QAT model carries its own ranges; calibration is then optional.
        calibration = _check_representative(representative_data, shapes, model)
    if not per_channel and _is_qat(model, any_layers=True):
        from kprune.export.qat import per_channel_weights
        if per_channel_weights(model):
            raise ValueError(
                f"per_channel=False: quantization-aware model '{model.name}' was trained "
                f"with per-channel weight scales, which the converter keeps; make it with "
                f"quantize_aware(model, per_channel=False) for per-tensor int8")
    from kprune.compat import backend
    from kprune.compat.tf_keras_bridge import is_tf_keras

    if backend.name() != "tensorflow" and not is_tf_keras(model):
        flat = _convert_in_tensorflow_child(model, q, calibration, batch_size, per_channel)
        if path is not None:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            atomic_write_bytes(path, flat)
        return flat
    fixed = _fixed_batch_model(unrolled(model), batch_size, shapes)

    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if q is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if q == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if q == "int8":
        batch = batch_size or 1

        names = [t.name for t in fixed.inputs]

        def representative_dataset():
            n = calibration[0].shape[0]
            for start in range(0, n - batch + 1, batch):
                samples = [c[start:start + batch] for c in calibration]
                # Several inputs: keyed by signature name, since the flatbuffer's
                # input order need not follow the Keras model's.
                yield samples if len(samples) == 1 else dict(zip(names, samples))

        if calibration is not None:
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        # The converter's own (private, stable since TF 2.4) switch to per-tensor scales.
        set_per_channel_quantization(converter, per_channel)
    try:
        with capture_fds() as cap, warnings.catch_warnings():
            # Harmless: int8 input statistics come from the representative data.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            # The converter's own calibrator still uses tf.lite.Interpreter.
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
            flat = converter.convert()
    except Exception as err:  # the converter raises several unrelated types
        raise _conversion_error(err, model, q, cap.text) from err
    flat = bytes(flat)
    if path is not None:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        atomic_write_bytes(path, flat)
    return flat


def _convert_in_tensorflow_child(model, q, calibration, batch_size, per_channel) -> bytes:
    """`to_tflite` for a model on the JAX or PyTorch backend: the same
    weights, saved as ``.keras``, converted by a Python child whose Keras
    runs on TensorFlow (`kprune.export._tf_child`; one persistent child
    serves every conversion: `kprune.export.tf_child`)."""
    import json
    import tempfile

    from kprune.export import tf_child as _tf_child

    with tempfile.TemporaryDirectory(prefix="kprune_tflite_") as work:
        model.save(os.path.join(work, "model.keras"))
        if calibration is not None:
            np.savez(os.path.join(work, "calibration.npz"),
                     **{f"a{i}": np.asarray(c) for i, c in enumerate(calibration)})
        with open(os.path.join(work, "args.json"), "w") as f:
            json.dump({"quantization": q, "batch_size": batch_size,
                       "per_channel": per_channel}, f)
        status, log = _tf_child.convert(work)
        err_path = os.path.join(work, "error.json")
        if os.path.exists(err_path):
            with open(err_path) as f:
                err = json.load(f)
            if err["type"] == "ValueError":
                raise ValueError(err["message"])
            raise ConversionError(err["message"])
        if status != 0 or not os.path.exists(os.path.join(work, "model.tflite")):
            raise ConversionError(
                f"TFLite conversion of model '{model.name}' in the TensorFlow child process "
                f"failed (exit {status}): {log[-2000:]}")
        with open(os.path.join(work, "model.tflite"), "rb") as f:
            return f.read()


def tensorflow_child():
    """A context manager: conversions from the JAX or PyTorch backend inside
    the block share one persistent TensorFlow child process, closed at the
    end of the block (unless one was already running when the block began).
    Outside any block the child started by the first conversion stays up
    until `close_tensorflow_child` or interpreter exit. `kprune.prune` runs
    inside one, so a device-budget search starts TensorFlow once, not once
    per estimate. On the TensorFlow backend nothing is started.

    Example:
        >>> with kprune.export.tensorflow_child():
        ...     flats = [to_tflite(m, "int8", representative_data=x) for m in models]
    """
    from kprune.export import tf_child as _tf_child

    return _tf_child.session()


def close_tensorflow_child():
    """Stops the persistent TensorFlow child of `to_tflite` (JAX / PyTorch
    backends) now; the next conversion starts a new one.

    Example:
        >>> kprune.export.close_tensorflow_child()
    """
    from kprune.export import tf_child as _tf_child

    _tf_child.close()


def synthetic_calibration(model, n: int = 8, seed: int = 0):
    """`n` seeded uniform [0, 1) inputs shaped like `model`'s inputs: int8
    calibration data when no real data is at hand (the flatbuffer's structure,
    its TFLite-Micro arena and its latency do not depend on the values; its
    accuracy does, so calibrate on real data for accuracy). One array for a
    single-input model, else a list in input order.

    Example:
        >>> x = synthetic_calibration(kprune.zoo.lenet5())
        >>> x.shape
        (8, 28, 28, 1)
        >>> flat = to_tflite(model, "int8", representative_data=x)
    """
    rng = np.random.default_rng(seed)
    data = [rng.random((int(n),) + tuple(int(d) for d in s[1:]), dtype=np.float32)
            for s in _input_shapes(model)]
    return data[0] if len(data) == 1 else data


def _is_qat(model, any_layers: bool = False) -> bool:
    """A tfmot quantize-wrapped model (with `any_layers` False: none kept in float)."""
    from kprune.compat.tf_keras_bridge import is_tf_keras

    if not is_tf_keras(model):
        return False
    from kprune.export.qat import is_quantize_aware, kept_float
    # Layers kept in float during QAT need calibration like post-training int8.
    return is_quantize_aware(model) and (any_layers or not kept_float(model))


def _input_shapes(model) -> List[tuple]:
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(f"model '{model.name}' has no defined inputs (a subclassed "
                         f"model?): wrap it as inp = keras.Input(shape=...); "
                         f"keras.Model(inp, model(inp)) and convert that")
    shapes = []
    for tensor in inputs:
        shape = tuple(tensor.shape)
        unknown = [i for i, d in enumerate(shape[1:], start=1) if d is None]
        if unknown:
            raise ValueError(
                f"input '{tensor.name}' of model '{model.name}' has shape {shape} with "
                f"unknown dimension(s) at axis {unknown}; TFLite export needs a fixed "
                f"shape: pass input_shape= (e.g. to_tflite(model, input_shape=(128,)), "
                f"or kprune.export.with_input_shape(model, ...) first), or rebuild the "
                f"model on keras.Input(shape=...) with every dimension given")
        shapes.append(shape)
    return shapes


_RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN")


def _set_unroll(config) -> bool:
    """Sets unroll=True on every LSTM / GRU / SimpleRNN entry of a
    serialized (nested) config; True when one changed."""
    changed = False
    if isinstance(config, dict):
        if config.get("class_name") in _RNN_CLASSES and isinstance(
                config.get("config"), dict) and not config["config"].get("unroll"):
            config["config"]["unroll"] = True
            changed = True
        for value in config.values():
            changed = _set_unroll(value) or changed
    elif isinstance(config, list):
        for value in config:
            changed = _set_unroll(value) or changed
    return changed


def _unknown_time_steps(model) -> bool:
    """True when a recurrent (or Bidirectional) layer of `model` reads a
    sequence whose number of time steps is unknown (it cannot be unrolled)."""
    import keras

    from kprune.compat.keras_private import all_layers, inbound_argument_tensors
    for layer in all_layers(model):
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            for tensors in inbound_argument_tensors(layer):
                if tensors and len(tensors[0].shape) > 1 and tensors[0].shape[1] is None:
                    return True
    return False


def unrolled(model):
    """`model` with its recurrent layers (LSTM, GRU, SimpleRNN, also inside
    Bidirectional and nested models) unrolled over their fixed number of time
    steps, weights copied; the model itself when it has none or a time axis
    is unknown. The converter's int8 calibration crashes on the while loop of
    a rolled RNN, and an unrolled one runs on TFLite-Micro (no WHILE op);
    `to_tflite` converts through it.

    Example:
        >>> flat = unrolled(gru_model)
        >>> flat.get_layer("gru").unroll
        True
    """
    import keras

    from kprune.compat.keras_private import all_layers, model_classes
    from kprune.compat.tf_keras_bridge import is_tf_keras
    if is_tf_keras(model):
        return model
    rolled = any(isinstance(l, keras.layers.RNN) and type(l).__name__ in _RNN_CLASSES
                 and not l.unroll for l in all_layers(model))
    if not rolled or _unknown_time_steps(model):
        return model
    serialized = keras.saving.serialize_keras_object(model)
    serialized.pop("compile_config", None)
    if not _set_unroll(serialized):
        return model
    try:
        with keras.saving.custom_object_scope(model_classes(model)):
            new = keras.saving.deserialize_keras_object(serialized, safe_mode=False)
    except ValueError:  # Keras refuses to unroll this configuration: convert it rolled
        return model
    new.set_weights(model.get_weights())
    return new


def _fixed_batch_model(model, batch_size, shapes):
    """The model called on new inputs with a fixed batch axis (weights shared)."""
    from kprune.compat.tf_keras_bridge import is_tf_keras
    if is_tf_keras(model):  # tf_keras (e.g. a QAT model): rebuilt with tf_keras
        import tf_keras as keras
    else:
        import keras

    if batch_size is None or all(s[0] == batch_size for s in shapes):
        return model
    new_inputs = [keras.Input(batch_shape=(batch_size,) + s[1:], dtype=t.dtype,
                              name=_clean_name(t.name))
                  for s, t in zip(shapes, model.inputs)]
    outputs = model(new_inputs[0] if len(new_inputs) == 1 else new_inputs)
    return keras.Model(new_inputs, outputs, name=f"{model.name}_batch{batch_size}")


def _clean_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name.split(":")[0]) or "input"


def _check_representative(data, shapes, model) -> List[np.ndarray]:
    expected = " and ".join(f"(N,) + {tuple(s[1:])}" for s in shapes)
    if data is None:
        raise ValueError(
            f"quantization='int8' needs representative_data to calibrate activation "
            f"ranges: pass about 100-500 real input samples shaped {expected} "
            f"(for example x_train[:200])")
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(shapes):
        raise ValueError(f"representative_data has {len(arrays)} arrays but model "
                         f"'{model.name}' has {len(shapes)} inputs")
    out = []
    for i, (arr, shape) in enumerate(zip(arrays, shapes)):
        # integer inputs (token ids for an Embedding) keep their type
        dtype = str(getattr(model.inputs[i], "dtype", "float32"))
        dtype = dtype if dtype.startswith(("int", "uint")) else np.float32
        try:
            arr = np.asarray(arr, dtype=dtype)
        except (TypeError, ValueError) as err:
            raise ValueError(f"representative_data[{i}] is not numeric array data: {err}") from err
        if arr.ndim != len(shape) or tuple(arr.shape[1:]) != tuple(shape[1:]):
            raise ValueError(
                f"representative_data shape {arr.shape} does not match input "
                f"'{model.inputs[i].name}' of model '{model.name}': expected "
                f"(N,) + {tuple(shape[1:])}, a batch of samples")
        if arr.shape[0] == 0:
            raise ValueError("representative_data is empty: pass at least one sample")
        if not np.all(np.isfinite(arr)):
            raise ValueError("representative_data contains NaN or infinite values")
        out.append(arr[:MAX_CALIBRATION_SAMPLES])
    return out


_UNSUPPORTED_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")
_QUANT_UNSUPPORTED = re.compile(r"Quantization not yet supported for op: '?([\w.]+)'?")
_LOC_PATH = re.compile(r'fused\["(\w+):", "([^"@]+)')


def _layer_names(model) -> dict:
    """name -> class name of every layer, nested models included."""
    names = {}
    stack = [model]
    while stack:
        m = stack.pop()
        for layer in getattr(m, "layers", []):
            names.setdefault(layer.name, type(layer).__name__)
            if getattr(layer, "layers", None):
                stack.append(layer)
    return names


def _layer_for_op(op: str, text: str, names: dict) -> Optional[str]:
    """The deepest Keras layer in the name scope of the failing op."""
    for op_name, scope in _LOC_PATH.findall(text):
        if op_name.lower() != op.lower():
            continue
        for segment in reversed(scope.split("/")):
            for candidate in (segment, re.sub(r"_\d+$", "", segment)):
                if candidate in names and not candidate.startswith("functional"):
                    return candidate
    return None


def _conversion_error(err, model, q, captured: str) -> Exception:
    text = f"{err}\n{captured}"
    names = _layer_names(model)
    ops = list(dict.fromkeys(_UNSUPPORTED_OP.findall(text)))
    if ops:
        parts = []
        for op in ops:
            layer = _layer_for_op(op, text, names)
            where = (f"layer '{layer}' ({names[layer]})" if layer
                     else f"model '{model.name}'")
            parts.append(f"{where} uses TensorFlow op '{op}'")
        return ConversionError(
            f"cannot convert model '{model.name}' to TFLite builtins: "
            + "; ".join(parts)
            + ". No TFLite builtin kernel exists for it (and TFLite-Micro cannot run "
              "Flex ops); replace the layer with one built from supported ops "
              "(Conv/Dense/pooling/element-wise) or remove it before export.")
    qops = list(dict.fromkeys(_QUANT_UNSUPPORTED.findall(text)))
    if qops:
        return ConversionError(
            f"cannot quantize model '{model.name}' to {MODE_NAMES[q]}: no quantized "
            f"kernel for op(s) {', '.join(qops)}; use quantization='dynamic' or "
            f"'float16', or replace the layers that produce these ops.")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConversionError(
        f"TFLite conversion of model '{model.name}' ({MODE_NAMES[q]}) failed: "
        f"{type(err).__name__}: {first}")


def tflite_ops(tflite_bytes: bytes) -> List[str]:
    """The sorted set of builtin op names in a flatbuffer (e.g. ['CONV_2D', ...]).

    Example:
        >>> tflite_ops(to_tflite(model))
        ['CONV_2D', 'FULLY_CONNECTED', 'MAX_POOL_2D', 'RESHAPE', 'SOFTMAX']
    """
    from ai_edge_litert.interpreter import Interpreter

    from kprune.runtime.capture import capture_fds

    with capture_fds():
        interpreter = Interpreter(model_content=bytes(tflite_bytes))
    return interpreter_op_names(interpreter)


def is_tflite(data) -> bool:
    """True when `data` (bytes) carries the TFLite flatbuffer identifier 'TFL3'."""
    return isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[4:8]) == b"TFL3"


def load_tflite(path: Union[str, os.PathLike]) -> bytes:
    """Reads a .tflite file and checks its flatbuffer identifier."""
    with open(path, "rb") as f:
        data = f.read()
    if not is_tflite(data):
        raise ValueError(f"'{path}' is not a TFLite flatbuffer (no 'TFL3' identifier)")
    return data


__all__ = ["ConversionError", "MODE_NAMES", "QUANTIZATIONS", "is_tflite", "load_tflite", "unrolled",
           "normalize_quantization", "synthetic_calibration", "to_tflite", "tflite_ops"]
