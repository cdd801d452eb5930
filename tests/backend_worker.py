"""Subprocess worker of tests/test_backends.py: one Keras backend per process.

``python tests/backend_worker.py BACKEND OUT_DIR [JAX_MODEL_DIR]``

The Keras backend is fixed when Keras is first imported, so each backend runs
in its own interpreter (on JAX with two logical CPU devices, for the
``keras.distribution.DataParallel`` check). Every backend computes, on the
same model weights and batch (seeded numpy, so identical everywhere):

- ``products.npz``: w * dL/dw of every trainable weight
  (`kprune.compat.backend.gradient_products`) and the Taylor scores of every
  group (`kprune.scoring.taylor_scores`);
- ``pruned.npz`` / ``pruned_ilp.npz``: the weights and widths of an IAP /
  Taylor run and of an ILP run whose retraining cannot move the weights
  (SGD with learning rate 0), so the runs are deterministic and every backend
  must remove the same channels; the widths a complexity run (a seeded draw)
  reaches;
- surgery against the masked reference (`kprune.testing`), raising on a
  difference.

JAX also saves its pruned model as ``.keras`` with its outputs, trains a model,
exports it to int8 LiteRT (through the TensorFlow child) and runs it on
TFLite-Micro, and prunes under ``DataParallel`` over two devices. TensorFlow,
given JAX_MODEL_DIR, loads that ``.keras`` file and records its outputs.
Results go to ``OUT_DIR/result.json``.
"""

import json
import os
import sys

BACKEND, OUT = sys.argv[1], sys.argv[2]
os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if BACKEND == "jax":
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=2").strip()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kprune  # noqa: E402
from kprune.compat import backend  # noqa: E402
from kprune.testing import assert_surgery_equivalent  # noqa: E402
from kprune.zoo import lenet5  # noqa: E402

assert backend.name() == BACKEND, (backend.name(), BACKEND)


def toy_data(n=256, seed=0):
    """Images whose class is the brightest of 4 quadrants (learnable in one epoch)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1)).astype("float32") * 0.3
    y = rng.integers(0, 4, n)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * 14:(r + 1) * 14, q * 14:(q + 1) * 14] += 0.7
    return x, y.astype("int64")


def fixed_model(lr=0.0):
    """LeNet-5 with seeded numpy weights (the same on every backend)."""
    model = lenet5(num_classes=4)
    rng = np.random.default_rng(42)
    model.set_weights([rng.normal(0, 0.2, w.shape).astype("float32")
                       for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main():
    os.makedirs(OUT, exist_ok=True)
    result = {"backend": BACKEND}
    x, y = toy_data()

    # 1. Taylor products on one model and one batch.
    model = fixed_model()
    loss = keras.losses.get("sparse_categorical_crossentropy")
    fn = backend.gradient_products(model, model.trainable_weights,
                                   lambda xb, yb, p: keras.ops.mean(loss(yb, p)))
    products = fn(x[:64], y[:64])
    scores = kprune.scoring.taylor_scores(model, (x[:64], y[:64]), batch_size=32)
    np.savez(os.path.join(OUT, "products.npz"),
             **{f"p{i}": p for i, p in enumerate(products)},
             **{f"s{g}": s for g, s in scores.items()})

    # 2. Deterministic runs: learning rate 0, so retraining keeps the weights
    # (IAP: Taylor scores; ILP: its weight criterion). The complexity method
    # re-initialises its pruned model from the backend's own random streams, so
    # only its widths (a seeded numpy draw) must agree.
    def widths(m):
        return {l.name: int(l.kernel.shape[-1]) for l in m.layers if hasattr(l, "kernel")}

    for method, suffix in (("iap", ""), ("ilp", "_ilp")):
        res = kprune.prune(fixed_model(), method, train_data=(x, y),
                           val_data=(x[:64], y[:64]), rounds=2, target="none", rate=0.25,
                           seed=3, epochs=1, calibration_samples=64)
        np.savez(os.path.join(OUT, f"pruned{suffix}.npz"),
                 **{f"w{i}": w for i, w in enumerate(res.model.get_weights())})
        result[f"widths{suffix}"] = widths(res.model)
        if method == "iap":
            pruned = res.model
    res = kprune.prune(fixed_model(), "complexity", train_data=(x, y),
                       val_data=(x[:64], y[:64]), target={"params_reduction": 0.5}, seed=3,
                       epochs=1)
    result["widths_complexity"] = widths(res.model)
    result["history_widths_complexity"] = [e.get("widths") for e in res.history]

    # 2b. A seeded ILP run that retrains (SGD 0.05, 2 rounds x 2 epochs):
    # kprune shuffles numpy data itself, so the batches, the channels removed
    # and the retrained weights are the same on every backend.
    res = kprune.prune(fixed_model(0.05), "ilp", train_data=(x, y), val_data=(x[:64], y[:64]),
                       rounds=2, target="none", rate=0.25, seed=5, epochs=2, batch_size=32)
    np.savez(os.path.join(OUT, "retrained.npz"),
             **{f"w{i}": w for i, w in enumerate(res.model.get_weights())})
    result["retrained_widths"] = res.history[-1]["widths"]
    result["retrained_val"] = [e["val_accuracy"] for e in res.history]

    # 3. Surgery against the masked reference.
    assert_surgery_equivalent(fixed_model(), {"conv1": [0, 4], "fc1": [3, 7, 100]},
                                             inputs=x[:4])
    result["surgery"] = True

    if BACKEND == "jax":
        pruned.save(os.path.join(OUT, "pruned_jax.keras"))
        np.save(os.path.join(OUT, "pruned_jax_out.npy"), backend.to_numpy(pruned(x[:16])))

        # 4. A JAX-trained model -> int8 LiteRT -> TFLite-Micro.
        keras.utils.set_random_seed(0)
        trained = lenet5(num_classes=4)
        trained.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        trained.fit(x, y, epochs=3, batch_size=32, verbose=0)
        flat = kprune.export.to_tflite(trained, "int8", representative_data=x[:64])
        from kprune.runtime import tflm

        xt, yt = toy_data(64, seed=1)
        micro = tflm.predict(flat, xt).argmax(-1)
        keras_pred = trained.predict(xt, verbose=0).argmax(-1)
        result["micro_accuracy"] = float(np.mean(micro == yt))
        result["keras_accuracy"] = float(np.mean(keras_pred == yt))
        result["micro_agreement"] = float(np.mean(micro == keras_pred))
        result["micro_arena"] = int(kprune.bench.tflm_arena_bytes(flat))

        # 5. keras.distribution.DataParallel over the two logical CPU devices.
        from kprune.scoring import distribute

        dist = keras.distribution.DataParallel()
        result["devices"] = len(dist.device_mesh.devices.reshape(-1))
        placed = distribute.to_strategy(fixed_model(1e-2), dist)
        result["laid_out"] = all(backend.laid_out(v, dist) for v in placed.weights)
        dp = kprune.prune(fixed_model(1e-2), "iap", train_data=(x, y),
                          val_data=(x[:64], y[:64]), rounds=1, target="none", epochs=1,
                          strategy=dist, seed=0)
        result["dp_params"] = int(dp.model.count_params())
        result["dp_accuracy"] = float(dp.history[-1]["val_accuracy"])

    if BACKEND == "tensorflow" and len(sys.argv) > 3:
        loaded = keras.saving.load_model(os.path.join(sys.argv[3], "pruned_jax.keras"))
        np.save(os.path.join(OUT, "loaded_out.npy"), np.asarray(loaded(x[:16])))

    with open(os.path.join(OUT, "result.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
