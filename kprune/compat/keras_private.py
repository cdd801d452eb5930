"""The one place kprune touches TensorFlow / Keras private API.

Everything here has a public fallback, so a TensorFlow or Keras release that
moves a private symbol degrades a feature instead of breaking kprune.
"""

import contextlib


def _determinism_module():
    try:
        from tensorflow.python.framework import config as tf_config
    except ImportError:  # pragma: no cover - private path moved
        return None
    if hasattr(tf_config, "is_op_determinism_enabled") and hasattr(
            tf_config, "disable_op_determinism"):
        return tf_config
    return None  # pragma: no cover


@contextlib.contextmanager
def op_determinism(enabled: bool = True):
    """Turn TensorFlow op determinism on for the ``with`` block only.

    ``tf.config.experimental.enable_op_determinism`` is process-wide and has
    no public off switch; a pruning run must not leave it on for the user's
    own training afterwards, so the previous state is restored on exit.

    Example:
        >>> with op_determinism():
        ...     model.fit(x, y)          # deterministic kernels
        >>> model.fit(x, y)              # back to the user's setting
    """
    if not enabled:
        yield
        return
    import tensorflow as tf

    mod = _determinism_module()
    was = mod.is_op_determinism_enabled() if mod is not None else None
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if mod is not None and not was:
            mod.disable_op_determinism()


def model_classes(model):
    """{name: class} of the model's own (non-Keras) layer classes, nested
    models included, so that custom layers that were never registered still
    deserialize: the user's classes are already imported in this process."""
    classes = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        cls = type(layer)
        if cls.__module__.startswith("keras."):
            continue
        classes[cls.__name__] = cls
        import keras

        classes[keras.saving.get_registered_name(cls)] = cls
    return classes


def has_lambda(model) -> bool:
    """True when `model` (or a nested model) holds a ``keras.layers.Lambda``."""
    import keras

    return any(isinstance(layer, keras.layers.Lambda)
               for layer in model._flatten_layers(include_self=False, recursive=True))


class _DropRetracing:
    """logging filter: drops TensorFlow's "triggered tf.function retracing" warning."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def quiet_retracing():
    """Silence TensorFlow's retracing warning for the ``with`` block only.

    Every pruning round builds a new (smaller) model, whose first
    ``predict`` traces a new function by design; TensorFlow then warns about
    "excessive retracing" once per round. The user's own code after the block
    keeps the warning.

    Example:
        >>> with quiet_retracing():
        ...     for m in pruned_models:
        ...         m.predict(x)
    """
    import tensorflow as tf

    logger = tf.get_logger()
    f = _DropRetracing()
    logger.addFilter(f)
    try:
        yield
    finally:
        logger.removeFilter(f)


# -- functional graph internals (Keras 3 and tf_keras models alike) --------------

def all_layers(model, include_self=False):
    """Every layer of `model` (a model or any layer that tracks others),
    nested layers included, in order."""
    return list(model._flatten_layers(include_self=include_self, recursive=True))


def functional_inputs(fn):
    """The flat list of a functional model's input KerasTensors."""
    import keras

    return keras.tree.flatten(fn._inputs_struct)


def functional_outputs(fn):
    """The flat list of a functional model's output KerasTensors."""
    import keras

    return keras.tree.flatten(fn._outputs_struct)


def nodes_by_depth(fn):
    """{depth: [node]} of a functional model (deepest = closest to the inputs)."""
    return fn._nodes_by_depth


def keras_history(tensor):
    """The (operation/layer, node index, tensor index) record of a KerasTensor."""
    return tensor._keras_history


def history_operation(tensor):
    """The operation (Keras 3) or layer (tf_keras) that produced `tensor`."""
    history = tensor._keras_history
    return getattr(history, "operation", None) or history.layer


def inbound_argument_tensors(layer):
    """The KerasTensors of each call of `layer` in its graphs, one list per call."""
    return [list(node.arguments.keras_tensors) for node in layer._inbound_nodes]


def inbound_node_count(layer) -> int:
    """How many times `layer` is called in the graphs it belongs to."""
    return len(layer._inbound_nodes)


def first_output_shapes(layer):
    """Output shapes of the layer's first call, or None when it was never called."""
    nodes = getattr(layer, "_outbound_nodes", None)
    if not nodes:
        return None
    return [list(t.shape) for t in nodes[0].outputs]


def keras_ops_modules():
    """(keras.ops nn module, keras.ops numpy module) whose operation classes
    appear as nodes of functional graphs built with ``keras.ops`` calls."""
    from keras.src.ops import nn, numpy

    return nn, numpy


def keras_ops_core_module():
    """The keras.ops core module (`Cast`, `Slice`, ...): its operation
    classes appear as nodes of functional graphs too."""
    from keras.src.ops import core

    return core


def convnext_layers():
    """(LayerScale, StochasticDepth) of keras.applications' ConvNeXt, or None."""
    try:
        from keras.src.applications import convnext
    except ImportError:  # pragma: no cover - older Keras
        return None
    if not hasattr(convnext, "LayerScale") or not hasattr(convnext, "StochasticDepth"):
        return None  # pragma: no cover
    return convnext.LayerScale, convnext.StochasticDepth


def tf_keras_tensor_class():
    """tf_keras' KerasTensor class (symbolic tensors of tf_keras graphs)."""
    from tf_keras.src.engine.keras_tensor import KerasTensor

    return KerasTensor


# -- LiteRT ------------------------------------------------------------------------

def interpreter_op_names(interpreter):
    """Sorted names of the operators in a LiteRT interpreter's graph."""
    return sorted({d["op_name"] for d in interpreter._get_ops_details()})


def set_per_channel_quantization(converter, per_channel: bool):
    """Per-channel (default) or per-tensor int8 weight scales for a
    ``tf.lite.TFLiteConverter`` (its only switch is private)."""
    converter._experimental_disable_per_channel = not per_channel


# -- composite layers and functional subclasses (kprune.core.composite) ---------

def node_fill_in(node, scope):
    """(args, kwargs) of a functional node's call with each KerasTensor
    replaced by ``scope[id(tensor)]``."""
    return node.arguments.fill_in(scope)


def traced_output_spec(op, args, kwargs):
    """The output KerasTensor(s) of calling `op` on KerasTensor arguments,
    found by running the call symbolically (no node is added to `op`, and
    unlike ``op.compute_output_spec`` no layer's declared partial output
    shape leaves a dimension unknown)."""
    from keras.src import backend as keras_backend

    return keras_backend.compute_output_spec(lambda *a, **k: op(*a, **k), *args, **kwargs)


def call_fn(layer):
    """The layer's own ``call`` (bound), skipping ``__call__``'s bookkeeping."""
    return layer.call


def argument_slots(node, names):
    """{argument name: index of its tensor among the node's flattened input
    tensors} for the call arguments `names` (the call's parameters in
    order), for those passed a single KerasTensor; lists of tensors (an
    RNN's `initial_state`) map to a list of indices.

    Example:
        >>> argument_slots(mha_node, ("query", "value", "key"))
        {'query': 0, 'value': 1}
    """
    arguments = node.arguments
    flat = list(arguments.keras_tensors)
    args, kwargs = tuple(arguments.args), dict(arguments.kwargs)

    claimed = set()

    def index_of(t):  # the same tensor may be passed twice: mha(x, x)
        hits = [i for i, kt in enumerate(flat) if kt is t]
        for i in hits:
            if i not in claimed:
                claimed.add(i)
                return i
        return hits[0] if hits else None

    slots = {}
    for position, name in enumerate(names):
        value = args[position] if position < len(args) else kwargs.get(name)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            idx = [index_of(v) for v in value]
            if idx and all(i is not None for i in idx):
                slots[name] = idx
            continue
        i = index_of(value)
        if i is not None:
            slots[name] = i
    return slots


def build_for_training(model, x_batch, y_batch) -> bool:
    """Create, from one batch, the variables ``model.fit`` would otherwise
    create inside its first traced step (compiled metrics, loss trackers,
    optimizer slots). TensorFlow traces a ``tf.function`` whose first trace
    created variables a second time, so a model fitted once per pruning round
    paid two traces of its train step per round; built beforehand it pays one.
    Nothing is computed on the batch (shapes and dtypes only). Returns True
    when the private ``Model._symbolic_build`` did it; the public fallback
    builds only the optimizer (the step is then traced twice, as before).

    Example:
        >>> build_for_training(model, x[:1], y[:1])
        True
    """
    build = getattr(model, "_symbolic_build", None)
    if build is not None:
        try:
            build(data_batch=(x_batch, y_batch))
            return True
        except Exception:  # noqa: BLE001 - a Keras that changed it: the public path
            pass
    opt = getattr(model, "optimizer", None)
    if opt is not None and not getattr(opt, "built", True):
        opt.build(model.trainable_variables)
    return False
