"""Everything that differs between the Keras backends (TensorFlow, JAX, PyTorch).

Keras 3 runs one model on TensorFlow, JAX or PyTorch (``KERAS_BACKEND`` or
``~/.keras/keras.json``, fixed when Keras is first imported). Almost all of
kprune works on Keras objects and numpy arrays and so runs on every backend
unchanged; the few places that need the backend's own engine come here, and
this is the only module of kprune that imports ``jax`` or ``torch``
(``tests/test_layering.py`` checks it):

- `gradient_products`: per-weight ``w * dL/dw`` over a batch, from the
  backend's own autodiff (``tf.GradientTape`` in a ``tf.function``,
  ``jax.grad`` of a stateless call under ``jax.jit``, ``torch.autograd``).
  The Taylor criterion is built on it.
- `BatchFunction`: a ``tf.function`` traced once for every batch size (the
  last, smaller batch of a pass reuses the graph).
- `forward`: a compiled forward pass returning numpy outputs (BatchNorm
  re-estimation runs the training-mode pass through it).
- `data_parallel`: the backend's own data parallelism behind ``strategy=``
  (``tf.distribute`` strategies on TensorFlow, ``keras.distribution`` on JAX).
- `is_torch_loader` / `torch_batches`: a ``torch.utils.data.DataLoader`` as
  training data.

Example:
    >>> from kprune.compat import backend
    >>> backend.name()
    'jax'
    >>> fn = backend.gradient_products(model, model.trainable_weights,
    ...                                lambda x, y, pred: loss(y, pred))
    >>> products = fn(x_batch, y_batch)     # numpy float64, one per weight
"""

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf  # a dependency of kprune on every backend (export, tf.data)

BACKENDS = ("tensorflow", "jax", "torch")


def name() -> str:
    """The running Keras backend: ``'tensorflow'``, ``'jax'`` or ``'torch'``."""
    return keras.backend.backend()


def check_supported():
    """Raises RuntimeError on a Keras backend kprune does not run on (numpy, openvino)."""
    if name() not in BACKENDS:
        raise RuntimeError(
            f"kprune runs on the Keras backends {', '.join(BACKENDS)}; this process uses "
            f"{name()!r}. Set KERAS_BACKEND=tensorflow (or jax, torch) before importing keras.")


def to_numpy(t) -> np.ndarray:
    """A backend tensor (or anything array-like) as a numpy array."""
    return np.asarray(keras.ops.convert_to_numpy(t))


def _flat(x):
    return keras.tree.flatten(x)


def _batch_size(y):
    return keras.ops.cast(keras.ops.shape(_flat(y)[0])[0], "float32")


# -- one trace per pass (TensorFlow) ----------------------------------------------

class BatchFunction:
    """`fn` (TensorFlow ops over batches) as a ``tf.function`` traced **once
    for every batch size**: the first call traces it with the batch axis of
    every argument left open (``None``), so the last, smaller batch of a pass
    reuses that graph instead of tracing a second one (a plain
    ``tf.function`` traces per new shape; ``reduce_retracing`` still traces
    twice). Arguments whose structure or dtype differ from the first call's
    fall back to the plain ``tf.function``. Each batch runs the same ops on
    the same values either way.

    Example:
        >>> step = BatchFunction(lambda x: tf.reduce_sum(model(x), 0))
        >>> [step(x[i:i + 256]) for i in range(0, len(x), 256)]   # one trace
    """

    def __init__(self, fn):
        self._function = tf.function(fn, reduce_retracing=True)
        self._concrete = None
        self._structure = None
        self.traces = 0   # graphs traced so far (one for a whole pass)

    @staticmethod
    def _spec(a):
        a = a if isinstance(a, tf.Tensor) else np.asarray(a)
        shape = list(a.shape)
        return tf.TensorSpec([None] + shape[1:] if shape else [], tf.as_dtype(a.dtype))

    def __call__(self, *args):
        specs = tf.nest.map_structure(self._spec, args)
        if self._concrete is None:
            self._structure = specs
            self._concrete = self._function.get_concrete_function(*specs)
            self.traces += 1
        try:
            tf.nest.assert_same_structure(specs, self._structure)
            same = all(a.dtype == b.dtype and a.shape.rank == b.shape.rank and
                       a.shape[1:] == b.shape[1:] for a, b in
                       zip(tf.nest.flatten(specs), tf.nest.flatten(self._structure)))
        except (TypeError, ValueError):
            same = False
        if not same:
            return self._function(*args)
        return self._concrete(*args)


# -- gradients -------------------------------------------------------------------

def gradient_products(model, variables: Sequence, loss_fn: Callable,
                      strategy=None) -> Callable:
    """A function ``fn(x, y) -> [numpy float64 w * dL/dw for w in variables]``.

    ``L = loss_fn(x, y, model(x, training=False)) * batch size`` (`loss_fn`
    returns the batch-mean loss as a scalar and uses ``keras.ops`` only, so
    it runs on every backend). `variables` are trainable weights of `model`;
    a weight the loss does not depend on gets zeros. The gradient comes from
    the running backend's autodiff, compiled once per input signature:

    - TensorFlow: ``tf.GradientTape`` inside a ``tf.function``; with a
      ``tf.distribute`` `strategy` of several replicas each replica computes
      the whole batch and the products are averaged (equal to one device's).
    - JAX: ``jax.grad`` of a stateless call (`keras.StatelessScope`) under
      ``jax.jit``; metric and other state updates inside the loss are dropped.
    - PyTorch: ``torch.autograd.grad`` on the variables' parameters.

    Example:
        >>> fn = gradient_products(model, [model.layers[1].kernel],
        ...                        lambda x, y, p: keras.ops.mean(loss(y, p)))
        >>> fn(x[:32], y[:32])[0].shape == model.layers[1].kernel.shape
        True
    """
    variables = list(variables)
    backend = name()
    if backend == "tensorflow":
        return _tf_products(model, variables, loss_fn, strategy)
    if strategy is not None and backend != "jax":
        raise ValueError(f"strategy= is not supported on the {backend} backend")
    if backend == "jax":
        return _jax_products(model, variables, loss_fn)
    if backend == "torch":
        return _torch_products(model, variables, loss_fn)
    check_supported()


def _tf_products(model, variables, loss_fn, strategy):
    def replica(x, y):
        with tf.GradientTape() as tape:
            pred = model(x, training=False)
            value = loss_fn(x, y, pred) * _batch_size(y)
        grads = tape.gradient(value, variables)
        return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(v) * g
                for v, g in zip(variables, grads)]

    if strategy is not None and getattr(strategy, "num_replicas_in_sync", 1) > 1:
        @tf.function(reduce_retracing=True)
        def products(x, y):
            per = strategy.run(replica, args=(x, y))
            return [strategy.reduce(tf.distribute.ReduceOp.MEAN, p, axis=None) for p in per]
    else:
        products = BatchFunction(replica)  # one trace for a whole pass

    def fn(x, y):
        return [p.numpy().astype(np.float64) for p in products(x, y)]

    return fn


def _jax_products(model, variables, loss_fn):
    import jax

    trainable = list(model.trainable_variables)
    others = list(model.non_trainable_variables)
    pos = {id(v): i for i, v in enumerate(trainable)}
    missing = [v.path for v in variables if id(v) not in pos]
    if missing:
        raise ValueError(f"gradient_products: {missing} are not trainable weights of "
                         f"model '{model.name}'")
    wanted = [pos[id(v)] for v in variables]

    def value(train_values, other_values, x, y):
        mapping = list(zip(trainable, train_values)) + list(zip(others, other_values))
        with keras.StatelessScope(state_mapping=mapping):
            pred = model(x, training=False)
            return loss_fn(x, y, pred) * _batch_size(y)

    grad = jax.grad(value)

    @jax.jit
    def products(train_values, other_values, x, y):
        grads = grad(train_values, other_values, x, y)
        return [train_values[i] * grads[i] for i in wanted]

    def fn(x, y):
        out = products([v.value for v in trainable], [v.value for v in others],
                       keras.tree.map_structure(np.asarray, x),
                       keras.tree.map_structure(np.asarray, y))
        return [np.asarray(p, np.float64) for p in out]

    return fn


def _torch_products(model, variables, loss_fn):
    import torch

    def fn(x, y):
        params = [v.value for v in variables]
        with torch.enable_grad():
            x_t = keras.tree.map_structure(keras.ops.convert_to_tensor, x)
            y_t = keras.tree.map_structure(keras.ops.convert_to_tensor, y)
            pred = model(x_t, training=False)
            value = loss_fn(x_t, y_t, pred) * _batch_size(y_t)
            grads = torch.autograd.grad(value, params, allow_unused=True)
        out = []
        for p, g in zip(params, grads):
            prod = torch.zeros_like(p) if g is None else p.detach() * g
            out.append(prod.detach().cpu().numpy().astype(np.float64))
        return out

    return fn


# -- forward passes ---------------------------------------------------------------

def forward(model, training: bool = False) -> Callable:
    """A function ``fn(x) -> [numpy output, ...]``: `model` called on a batch,
    compiled by the backend (``tf.function`` / ``jax.jit`` of a stateless
    call / eager PyTorch without autograd). With ``training=True`` layers
    such as BatchNormalization use batch statistics; their state updates
    are dropped on JAX and may be applied on TensorFlow and PyTorch, so a
    caller that needs the old state saves and restores it.

    Example:
        >>> outs = forward(model)(x[:64])     # list of numpy arrays
    """
    backend = name()
    if backend == "tensorflow":
        call = BatchFunction(lambda x: model(x, training=training))  # one trace a pass
    elif backend == "jax":
        import jax

        def stateless(tv, ntv, x):
            return model.stateless_call(tv, ntv, x, training=training)[0]

        compiled = jax.jit(stateless)

        def call(x):
            return compiled([v.value for v in model.trainable_variables],
                            [v.value for v in model.non_trainable_variables],
                            keras.tree.map_structure(np.asarray, x))
    elif backend == "torch":
        import torch

        def call(x):
            with torch.no_grad():
                return model(keras.tree.map_structure(keras.ops.convert_to_tensor, x),
                             training=training)
    else:
        check_supported()

    def fn(x):
        out = call(x)
        return [to_numpy(t) for t in (out if isinstance(out, (list, tuple)) else [out])]

    return fn


# -- data parallelism ---------------------------------------------------------------

def is_distribution(strategy) -> bool:
    """True for a ``keras.distribution`` distribution (``DataParallel``,
    ``ModelParallel``; their base class is not public API)."""
    dist = getattr(keras, "distribution", None)
    kinds = tuple(getattr(dist, n) for n in ("DataParallel", "ModelParallel")
                  if hasattr(dist, n))
    return bool(kinds) and isinstance(strategy, kinds)


def check_strategy(strategy):
    """Raises TypeError / ValueError unless `strategy` fits the backend: None,
    a ``tf.distribute.Strategy`` on TensorFlow, or a
    ``keras.distribution.Distribution`` (``DataParallel``) on JAX."""
    if strategy is None:
        return
    backend = name()
    if is_distribution(strategy):
        if backend != "jax":
            raise ValueError(
                f"strategy={type(strategy).__name__} (keras.distribution) runs on the JAX "
                f"backend only; this process uses {backend!r} (on TensorFlow pass a "
                "tf.distribute.Strategy, e.g. tf.distribute.MirroredStrategy())")
        return
    if isinstance(strategy, tf.distribute.Strategy):
        if backend != "tensorflow":
            raise ValueError(
                f"strategy={type(strategy).__name__} (tf.distribute) needs the TensorFlow "
                f"backend; this process uses {backend!r}"
                + (" (pass keras.distribution.DataParallel() instead)"
                   if backend == "jax" else " (strategy= is not supported on PyTorch)"))
        return
    raise TypeError(
        "strategy must be a tf.distribute.Strategy (e.g. tf.distribute.MirroredStrategy()) "
        "on TensorFlow or a keras.distribution.DataParallel on JAX, got "
        f"{type(strategy).__name__}")


def laid_out(variable, distribution) -> bool:
    """True when `variable`'s value lives on every device of a
    ``keras.distribution`` `distribution` (it was created in its scope)."""
    devices = getattr(getattr(distribution, "device_mesh", None), "devices", None)
    sharding = getattr(getattr(variable, "value", None), "sharding", None)
    if devices is None or sharding is None:
        return False
    # The mesh names its devices 'cpu:0', 'gpu:1', ... (strings).
    held = {f"{d.platform}:{d.id}" for d in sharding.device_set}
    return held == {str(d).lower() for d in np.asarray(devices).reshape(-1).tolist()}


# -- PyTorch data -------------------------------------------------------------------

def is_torch_loader(data) -> bool:
    """True for a ``torch.utils.data.DataLoader`` (without importing torch
    when it is not loaded)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return isinstance(data, torch.utils.data.DataLoader)


def numpy_structure(batch):
    """A batch of torch tensors (nested lists / tuples / dicts) as numpy arrays."""
    def conv(t):
        if hasattr(t, "detach"):
            return t.detach().cpu().numpy()
        return np.asarray(t)
    return keras.tree.map_structure(conv, batch)

