"""Keras 3 on every backend: TensorFlow, JAX and PyTorch give the same results.

The in-process tests run under whatever backend this pytest process uses
(``KERAS_BACKEND``; CI runs a subset under JAX as well). The cross-backend
tests start one interpreter per backend (tests/backend_worker.py; JAX with
two logical CPU devices) and compare what they wrote: Taylor products, the
channels deterministic IAP and ILP runs remove, the widths a complexity run
reaches, surgery against the masked reference,
a model pruned on JAX loaded on TensorFlow, a JAX-trained model on
TFLite-Micro, and ``keras.distribution.DataParallel`` behind ``strategy=``.
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kprune.compat import backend

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_worker.py")
HAVE = {"tensorflow": True, "jax": importlib.util.find_spec("jax") is not None,
        "torch": importlib.util.find_spec("torch") is not None}


# -- in this process's backend ---------------------------------------------------------

def test_gradient_products_match_finite_differences():
    """w * dL/dw from the backend's autodiff equals a central difference."""
    rng = np.random.default_rng(0)
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2, activation="tanh", name="d")(inp))
    kernel = rng.normal(size=(3, 2)).astype("float32")
    bias = rng.normal(size=(2,)).astype("float32")
    model.set_weights([kernel, bias])
    x = rng.normal(size=(5, 3)).astype("float32")
    y = rng.normal(size=(5, 2)).astype("float32")

    def loss(xb, yb, pred):
        return keras.ops.mean(keras.ops.square(pred - yb))

    products = backend.gradient_products(model, model.trainable_weights, loss)(x, y)

    def total(k):  # the loss times the batch size, in float64 numpy
        return np.mean((np.tanh(x.astype(np.float64) @ k + bias) - y) ** 2) * len(x)

    eps = 1e-4
    numeric = np.zeros((3, 2))
    for i in range(3):
        for j in range(2):
            up, down = kernel.astype(np.float64).copy(), kernel.astype(np.float64).copy()
            up[i, j] += eps
            down[i, j] -= eps
            numeric[i, j] = (total(up) - total(down)) / (2 * eps)
    assert products[0].shape == (3, 2) and products[0].dtype == np.float64
    np.testing.assert_allclose(products[0], kernel * numeric, rtol=1e-3, atol=1e-5)
    assert np.abs(products[1]).sum() > 0


def test_forward_returns_numpy_outputs():
    inp = keras.Input((4,))
    model = keras.Model(inp, [keras.layers.Dense(3)(inp), keras.layers.Dense(2)(inp)])
    x = np.ones((2, 4), "float32")
    outs = backend.forward(model)(x)
    assert [o.shape for o in outs] == [(2, 3), (2, 2)]
    np.testing.assert_allclose(outs[0], backend.to_numpy(model(x)[0]), rtol=1e-6)


def test_strategy_of_the_wrong_engine_is_refused():
    import tensorflow as tf

    from kprune.scoring import distribute

    with pytest.raises(TypeError, match="strategy must be a tf.distribute.Strategy"):
        distribute.check_strategy("mirrored")
    if backend.name() == "tensorflow":
        with pytest.raises(ValueError, match=r"keras.distribution\) runs on the JAX backend only"):
            distribute.check_strategy(keras.distribution.DataParallel())
        assert distribute.check_strategy(tf.distribute.get_strategy()) is not None
    else:
        with pytest.raises(ValueError, match="needs the TensorFlow backend"):
            distribute.check_strategy(tf.distribute.get_strategy())


def test_unsupported_backend_is_named(monkeypatch):
    monkeypatch.setattr(backend, "name", lambda: "numpy")
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        backend.check_supported()


def test_torch_dataloader_is_a_data_kind():
    torch = pytest.importorskip("torch")
    from kprune.data import as_data, first_batch, iterate_batches

    x = np.arange(40, dtype="float32").reshape(10, 4)
    y = np.arange(10) % 3
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=4)
    data = as_data(loader)
    assert data.kind == "loader"
    bx, by = first_batch(data)
    assert isinstance(bx, np.ndarray) and bx.shape == (4, 4)
    got = list(iterate_batches(data))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), y)


# -- across backends (one interpreter each) -------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if backend.name() != "tensorflow":  # once per suite, from the TensorFlow run
        pytest.skip("the cross-backend runs start from the TensorFlow suite")
    missing = [b for b in ("jax", "torch") if not HAVE[b]]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (pip install -e '.[backends]')")
    root = tmp_path_factory.mktemp("backends")
    env = dict(os.environ)
    env.pop("KERAS_BACKEND", None)

    def start(name, *extra):
        out = root / name
        return out, subprocess.Popen([sys.executable, WORKER, name, str(out), *extra],
                                     env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def finish(out, proc):
        log, _ = proc.communicate(timeout=1200)
        assert proc.returncode == 0, log[-4000:]
        with open(out / "result.json") as f:
            result = json.load(f)
        return out, result

    jax_p, torch_p = start("jax"), start("torch")
    results = {"jax": finish(*jax_p)}
    tf_p = start("tensorflow", str(results["jax"][0]))
    results["torch"] = finish(*torch_p)
    results["tensorflow"] = finish(*tf_p)
    return results


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_taylor_products_equal_on_every_backend(runs):
    ref = _npz(runs["tensorflow"][0] / "products.npz")
    assert any(k.startswith("s") for k in ref) and any(k.startswith("p") for k in ref)
    for name in ("jax", "torch"):
        got = _npz(runs[name][0] / "products.npz")
        assert sorted(got) == sorted(ref)
        for k in ref:
            scale = np.abs(ref[k]).max()
            assert scale > 0, k
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-3, atol=1e-4 * scale,
                                       err_msg=f"{name}: {k}")


@pytest.mark.parametrize("method", ["iap", "ilp"])
def test_same_seed_removes_the_same_channels_on_every_backend(runs, method):
    suffix = "" if method == "iap" else f"_{method}"
    widths = runs["tensorflow"][1][f"widths{suffix}"]
    assert widths["conv1"] < 6 and widths["fc1"] < 120  # the run did prune
    ref = _npz(runs["tensorflow"][0] / f"pruned{suffix}.npz")
    for name in ("jax", "torch"):
        assert runs[name][1][f"widths{suffix}"] == widths, name
        got = _npz(runs[name][0] / f"pruned{suffix}.npz")
        assert sorted(got) == sorted(ref)
        for k in ref:  # the kept channels' weights: the same channels were kept
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} {method}: {k}")


def test_complexity_reaches_the_same_widths_on_every_backend(runs):
    ref = runs["tensorflow"][1]
    assert ref["widths_complexity"]["fc1"] < 120  # it pruned
    for name in ("jax", "torch"):
        assert runs[name][1]["widths_complexity"] == ref["widths_complexity"], name
        assert runs[name][1]["history_widths_complexity"] == \
            ref["history_widths_complexity"], name


def test_seeded_retraining_is_the_same_on_every_backend(runs):
    """ILP with retraining (learning rate 0.05): the same widths, validation
    accuracies and retrained weights. Keras' own shuffle would give each
    backend its own batch order (before kprune shuffled numpy data itself,
    JAX's weights differed from TensorFlow's by 1.8x their scale); XLA's CPU
    kernels leave JAX about 1e-3 of the scale apart after 32 steps, PyTorch
    1e-7."""
    ref = runs["tensorflow"][1]
    assert ref["retrained_widths"]["conv1"] < 6 and ref["retrained_widths"]["fc1"] < 120
    assert ref["retrained_val"][-1] > ref["retrained_val"][0]  # it did train
    weights = _npz(runs["tensorflow"][0] / "retrained.npz")
    for name in ("jax", "torch"):
        got = runs[name][1]
        assert got["retrained_widths"] == ref["retrained_widths"], name
        np.testing.assert_allclose(got["retrained_val"], ref["retrained_val"], atol=1 / 64)
        other = _npz(runs[name][0] / "retrained.npz")
        for k in weights:
            scale = np.abs(weights[k]).max()
            np.testing.assert_allclose(other[k], weights[k], atol=1e-2 * scale,
                                       err_msg=f"{name}: {k}")


def test_surgery_is_exact_on_every_backend(runs):
    assert all(runs[b][1]["surgery"] for b in ("tensorflow", "jax", "torch"))


def test_model_pruned_on_jax_loads_on_tensorflow(runs):
    jax_out = np.load(runs["jax"][0] / "pruned_jax_out.npy")
    tf_out = np.load(runs["tensorflow"][0] / "loaded_out.npy")
    assert jax_out.shape == (16, 4)
    np.testing.assert_allclose(tf_out, jax_out, rtol=1e-5, atol=1e-6)


def test_jax_trained_model_runs_int8_on_tflite_micro(runs):
    r = runs["jax"][1]
    assert r["keras_accuracy"] >= 0.9  # the toy task was learned on JAX
    assert r["micro_agreement"] >= 0.95 and r["micro_accuracy"] >= 0.9
    assert r["micro_arena"] > 0


def test_data_parallel_on_two_jax_devices(runs):
    r = runs["jax"][1]
    assert r["devices"] == 2 and r["laid_out"]
    assert 0 < r["dp_params"] < 61196 and 0.0 <= r["dp_accuracy"] <= 1.0


def test_quantize_aware_from_this_backend():
    """QAT (tfmot, tf_keras) from a model on this process's backend: the
    weights go through numpy, so the QAT model holds the same kernels, turns
    back into a Keras 3 model on this backend with equal outputs, and gives a
    full-integer flatbuffer."""
    pytest.importorskip("tensorflow_model_optimization")
    from kprune import compat, export

    rng = np.random.default_rng(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    out = keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.weights])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.normal(size=(16, 8, 8, 1)).astype("float32")

    qat = export.quantize_aware(model)
    assert compat.is_tf_keras(qat) and export.is_quantize_aware(qat)
    kernel = [w for w in qat.get_layer("quant_conv").weights if "kernel" in w.name][0]
    np.testing.assert_array_equal(kernel.numpy(), backend.to_numpy(model.get_layer("conv").kernel))
    back = compat.from_tf_keras(qat)
    assert isinstance(back, keras.Model)
    np.testing.assert_allclose(backend.to_numpy(back(x)), backend.to_numpy(model(x)),
                               rtol=1e-5, atol=1e-6)
    flat = export.to_tflite(qat, "int8", representative_data=x)
    from kprune.runtime import litert

    detail = litert.make_interpreter(flat).get_input_details()[0]
    assert detail["dtype"] == np.int8
