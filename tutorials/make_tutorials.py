"""Writes the tutorial notebooks (tutorials/*.ipynb) from the cells below.

    python tutorials/make_tutorials.py            # write the notebooks (no outputs)
    python tutorials/make_tutorials.py --execute  # and run them, keeping outputs

With ``KPRUNE_TUTORIAL_SMALL=1`` every notebook runs a few-second version of
itself (fewer samples, epochs and rounds), which is what the test suite
(tests/test_tutorials.py) executes. Outputs of ``--execute`` show which mode
produced them.
"""

import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = '''\
import os, tempfile
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
import keras
tf.get_logger().setLevel("ERROR")  # no retracing / "Assets written" chatter
import kprune
import kprune.bench, kprune.datasets, kprune.export, kprune.reporting.plots, kprune.testing, kprune.zoo
from kprune.prune import prune
from IPython.display import Image, Markdown, display

# KPRUNE_TUTORIAL_SMALL=1 (set by the test suite) runs a quick version:
# fewer samples, epochs and rounds. Numbers from it are real but small-scale.
SMALL = os.environ.get("KPRUNE_TUTORIAL_SMALL") == "1"
OUT = os.environ.get("KPRUNE_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="kprune_tutorial_")
os.makedirs(OUT, exist_ok=True)
keras.utils.set_random_seed(0)
print("mode:", "SMALL (quick check)" if SMALL else "full", "| outputs in", OUT)

def table(rows, header):
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    display(Markdown("\\n".join(lines)))'''

FASHION = '''\
(x_all, y_all), (x_test, y_test) = kprune.datasets.load_fashion_mnist()
n_train, n_val, n_test = (3000, 1000, 1000) if SMALL else (50000, 10000, 10000)
x_train, y_train = x_all[:n_train], y_all[:n_train]
x_val, y_val = x_all[50000:50000 + n_val], y_all[50000:50000 + n_val]
x_test, y_test = x_test[:n_test], y_test[:n_test]
print(x_train.shape, x_val.shape, x_test.shape)'''


def lenet_iap():
    return [
        new_markdown_cell("""\
# 1. Prune LeNet-5 with IAP and deploy it to a microcontroller

We train LeNet-5 on Fashion-MNIST, prune it with **IAP** (iterative
activation-based pruning: each round scores every channel by |activation x
gradient of the loss| on a calibration slice, removes the weakest ones ranked
over all layers, then retrains), and turn the result into a
C array for TensorFlow Lite for Microcontrollers, checking its tensor arena and
its int8 accuracy on the TFLite-Micro interpreter itself."""),
        new_code_cell(SETUP),
        new_code_cell(FASHION),
        new_markdown_cell("## Train the baseline"),
        new_code_cell('''\
model = kprune.zoo.lenet5()
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=2 if SMALL else 8, batch_size=64, verbose=0)
base_acc = model.evaluate(x_test, y_test, verbose=0)[1]
print(f"baseline test accuracy: {base_acc:.4f}")
print(kprune.profile(model))'''),
        new_markdown_cell("""\
## Prune with IAP

`rate=0.2` removes the 20% weakest channels per round, ranked over all layers
(scores divided by their layer's mean), so layers with many weak channels (the
Dense layers here) shrink faster than conv1; `target=0.01` keeps the model
within one point of the baseline's validation accuracy (every round runs, and
the smallest model that satisfies it is returned). The paper's IAP is
`criterion="mean_activation", allocation="layer"`; kprune's default measured
better (BENCHMARKS.md, "Pruning quality"). `tensorboard_dir` logs every round
for TensorBoard."""),
        new_code_cell('''\
result = prune(model, "iap", train_data=(x_train, y_train), val_data=(x_val, y_val),
               epochs=1 if SMALL else 2, rounds=2 if SMALL else 8, rate=0.2,
               target=0.01, seed=0, calibration_samples=500,
               tensorboard_dir=os.path.join(OUT, "tensorboard"))
print(result.summary())'''),
        new_code_cell('''\
result.plot(os.path.join(OUT, "lenet5_iap.png"))
display(Image(os.path.join(OUT, "lenet5_iap.png")))'''),
        new_markdown_cell("""\
## Deploy: int8 flatbuffer and C array

`kprune.export.to_tflite(..., "int8")` calibrates on a few training images;
`kprune.bench.tflm_arena_bytes` runs the flatbuffer on the real TFLite-Micro
interpreter and reports the arena it allocated; `to_c_source` writes the
`.cc`/`.h` pair with the model bytes and a recommended arena size."""),
        new_code_cell('''\
from kprune.bench import tflm
from kprune.export import to_c_source, to_tflite

rep = x_train[:200]
rows, flats = [], {}
n_eval = 200 if SMALL else 2000
for name, m in (("original", model), ("pruned", result.model)):
    flat = to_tflite(m, "int8", representative_data=rep)
    flats[name] = flat
    rows.append((name, f"{m.count_params():,}", f"{kprune.profile(m).macs:,}", f"{len(flat):,}",
                 f"{tflm.tflm_arena_bytes(flat):,}",
                 f"{tflm.accuracy(flat, x_test[:n_eval], y_test[:n_eval]):.4f}"))
table(rows, ["model", "parameters", "MACs", "int8 flatbuffer bytes", "TFLM arena bytes",
             f"TFLM int8 accuracy ({n_eval} test images)"])'''),
        new_code_cell('''\
files = to_c_source(flats["pruned"], "lenet5_pruned", os.path.join(OUT, "firmware"))
print(files)
print(open(files.h).read())'''),
        new_markdown_cell("""\
Copy `lenet5_pruned.cc`/`.h` into a TFLite-Micro project and use
`lenet5_pruned::kTensorArenaSize` for the arena. The command line does the same:

```
kprune prune --model lenet5.keras --method iap --data fashion_mnist --out runs/lenet5 --tensorboard
kprune export --model runs/lenet5/pruned.keras --data fashion_mnist --out firmware/
```"""),
    ] + on_jax()


def on_jax():
    return [
        new_markdown_cell("""\
## The same prune on JAX

kprune runs on every Keras 3 backend. The backend is fixed when Keras is
imported, and this notebook's kernel runs TensorFlow, so the cell below hands
the baseline (`.keras`) and the data to a child Python started with
`KERAS_BACKEND=jax`: there IAP takes its Taylor scores from `jax.grad` and
retrains with JAX. The JAX-pruned model comes back as a `.keras` file, loads
on TensorFlow with the same outputs and exports as any other (on JAX itself,
`kprune.export.to_tflite` converts through a TensorFlow child process with the
same weights). In your own script, set `KERAS_BACKEND=jax` (or `torch`) before
importing Keras and call `prune` as above."""),
        new_code_cell('''\
%%writefile {OUT}/prune_on_jax.py
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"      # chosen before Keras is imported
import keras, numpy as np
from kprune.prune import prune

out = sys.argv[1]
d = np.load(os.path.join(out, "data.npz"))
model = keras.saving.load_model(os.path.join(out, "lenet5_baseline.keras"))
result = prune(model, "iap", train_data=(d["x_train"], d["y_train"]),
               val_data=(d["x_val"], d["y_val"]), epochs=1, rounds=int(d["rounds"]),
               rate=0.2, seed=0, calibration_samples=500)   # Taylor scores from jax.grad
result.model.save(os.path.join(out, "lenet5_pruned_on_jax.keras"))
probs = np.asarray(result.model.predict(d["x_test"], verbose=0))
np.save(os.path.join(out, "jax_probs.npy"), probs)
with open(os.path.join(out, "jax_result.json"), "w") as f:
    json.dump({"backend": keras.backend.backend(), "parameters": result.model.count_params(),
               "test_accuracy": float((probs.argmax(-1) == d["y_test"]).mean())}, f)'''),
        new_code_cell('''\
import json, subprocess, sys

model.save(os.path.join(OUT, "lenet5_baseline.keras"))
n_jax = 3000 if SMALL else 20000
np.savez(os.path.join(OUT, "data.npz"), x_train=x_train[:n_jax], y_train=y_train[:n_jax],
         x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, rounds=1 if SMALL else 3)
proc = subprocess.run([sys.executable, os.path.join(OUT, "prune_on_jax.py"), OUT],
                      env=dict(os.environ, KERAS_BACKEND="jax"), capture_output=True, text=True)
if proc.returncode:
    raise RuntimeError("the JAX child failed:\\n" + proc.stderr[-3000:])
got = json.load(open(os.path.join(OUT, "jax_result.json")))
print("pruned on", got["backend"])

on_tf = keras.saving.load_model(os.path.join(OUT, "lenet5_pruned_on_jax.keras"))
diff = np.abs(on_tf.predict(x_test, verbose=0) - np.load(os.path.join(OUT, "jax_probs.npy"))).max()
table([("baseline (TensorFlow)", f"{model.count_params():,}", f"{base_acc:.4f}"),
       ("IAP on JAX", f"{got['parameters']:,}", f"{got['test_accuracy']:.4f}")],
      ["model", "parameters", "test accuracy"])
print(f"the JAX-pruned model on TensorFlow: largest output difference {diff:.1e}")'''),
    ]


def aiap_resnet():
    return [
        new_markdown_cell("""\
# 2. AIAP on a ResNet with a MACs target

**AIAP** (adaptive iterative activation pruning) raises a per-group threshold
on activation scores round by round, halving its step whenever a round breaks
the target. Here the target is a reduction of multiply-accumulates
(`{"macs_reduction": r}`), on a CIFAR-style ResNet-20 trained on Fashion-MNIST.
Residual connections tie channels together: kprune's dependency analysis prunes
every layer feeding one `Add` consistently."""),
        new_code_cell(SETUP),
        new_code_cell(FASHION),
        new_markdown_cell("In small mode the images are subsampled to 14x14 and the network "
                          "is 4 channels wide (16 in the full run) to keep the check fast."),
        new_code_cell('''\
if SMALL:
    x_train, x_val, x_test = x_train[:2000, ::2, ::2], x_val[:, ::2, ::2], x_test[:, ::2, ::2]
    y_train = y_train[:2000]
model = kprune.zoo.resnet20(input_shape=x_train.shape[1:], width=4 if SMALL else 16)
model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=4 if SMALL else 6, batch_size=64, verbose=0)
print(f"{model.count_params():,} parameters, {kprune.profile(model).macs:,} MACs, "
      f"test accuracy {model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")
groups = kprune.dependency_groups(model)
table([(g.name, g.channels, ", ".join(g.layers[:4]) + (" ..." if len(g.layers) > 4 else ""))
       for g in groups[:8]], ["group", "channels", "layers (first 4)"])
print(f"{len(groups)} prunable groups")'''),
        new_code_cell('''\
target = {"macs_reduction": 0.1 if SMALL else 0.5}
result = prune(model, "aiap", train_data=(x_train, y_train), val_data=(x_val, y_val),
               epochs=1 if SMALL else 2, rounds=3 if SMALL else 15, target=target, seed=0,
               calibration_samples=128 if SMALL else 1000)
print("\\n".join(result.summary().splitlines()[:6]))  # headline rows (per-layer rows follow)
print("target reached:", result.target_reached, "|", result.reason)'''),
        new_markdown_cell("""\
Every round, including the rejected ones. A round whose threshold would
overshoot the MACs target is trimmed before retraining (the threshold is
bisected down to the smallest one that still reaches the target; `tolerance`
allows some overshoot), so AIAP lands on the target; with the few rounds of
the small mode it may stop short of it (the warning above says so), the full
run has 15 rounds to converge."""),
        new_code_cell('''\
base = result.baseline
table([(e["round"], e["status"], f"{e.get('threshold', 0):.3f}", f"{e['params']:,}",
        f"{e['macs']:,}", f"{100 * (1 - e['macs'] / base['macs']):.1f}%",
        "-" if e["val_accuracy"] is None else f"{e['val_accuracy']:.4f}")
       for e in result.history],
      ["round", "status", "threshold", "parameters", "MACs", "MACs removed", "val accuracy"])
print(f"test accuracy of the returned model: "
      f"{result.model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")'''),
        new_code_cell('''\
result.plot(os.path.join(OUT, "resnet_aiap.png"))
display(Image(os.path.join(OUT, "resnet_aiap.png")))'''),
    ]


def memory_budget():
    return [
        new_markdown_cell("""\
# 3. Memory-aware pruning to fit a tensor-arena budget

On a microcontroller the binding limit is often RAM: TFLite-Micro places every
intermediate tensor in one *tensor arena*. The **complexity** method in
`memory` mode removes channels where activation memory is spent, until the
peak int8 activation memory (`kprune.profile(...).peak_activation_bytes_int8`)
fits `target_memory_bytes`; the pruned architecture is then trained from
scratch. We check the result on the TFLite-Micro interpreter."""),
        new_code_cell(SETUP),
        new_code_cell(FASHION),
        new_code_cell('''\
model = kprune.zoo.lenet5()
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=1 if SMALL else 8, batch_size=64, verbose=0)
before = kprune.profile(model)
budget = before.peak_activation_bytes_int8 // 2
print(f"peak int8 activations: {before.peak_activation_bytes_int8:,} bytes "
      f"(after '{before.peak_after}'); budget: {budget:,} bytes")'''),
        new_code_cell('''\
result = prune(model, "complexity", train_data=(x_train, y_train), val_data=(x_val, y_val),
               mode="memory", target_memory_bytes=budget, memory_dtype="int8",
               epochs=1 if SMALL else 8, seed=0, tensorboard_dir=os.path.join(OUT, "tb"))
after = kprune.profile(result.model)
print(result.summary())
assert after.peak_activation_bytes_int8 <= budget'''),
        new_markdown_cell("""\
The estimate covers activations only; the TFLite-Micro arena also holds the
interpreter's own bookkeeping. Both, measured on the real runtime:"""),
        new_code_cell('''\
from kprune.bench import tflm
from kprune.export import to_tflite

rows = []
for name, m, prof in (("original", model, before), ("pruned", result.model, after)):
    flat = to_tflite(m, "int8", representative_data=x_train[:200])
    rows.append((name, f"{prof.params:,}", f"{prof.peak_activation_bytes_int8:,}",
                 f"{tflm.tflm_arena_bytes(flat):,}",
                 f"{m.evaluate(x_test, y_test, verbose=0)[1]:.4f}"))
table(rows, ["model", "parameters", "peak int8 activations (estimate)",
             "TFLM arena (measured)", "test accuracy"])'''),
        new_code_cell('''\
kprune.reporting.plots.plot_widths(model, result.model, os.path.join(OUT, "widths.png"))
display(Image(os.path.join(OUT, "widths.png")))
print("TensorBoard logs:", sorted(os.listdir(os.path.join(OUT, "tb"))))
print("view them with: tensorboard --logdir", os.path.join(OUT, "tb"))'''),
        new_markdown_cell("""\
## Fit a 32 KiB arena

A peak-activation budget is only a proxy. `kprune.bench.arena_estimate` computes
the arena TFLite-Micro will really allocate for an int8 model: it replays the
greedy memory planner on the flatbuffer (tensor lifetimes, largest-first
placement, 16-byte alignment) and adds the persistent tail (tensor structs,
per-channel quantization data, op data); it agrees with the runtime's recording
allocator to the byte on LeNet-5, ResNet-20, MobileNetV2 and DS-CNN. With
`target_arena_bytes=` the complexity method prunes until the arena *measured on
the runtime* is at most the budget and at least 90 % of it."""),
        new_code_cell('''\
from kprune.bench import arena_estimate

# The quick check (SMALL) uses LeNet-5 and an 8 KiB budget.
resnet = kprune.zoo.lenet5() if SMALL else kprune.zoo.resnet20(input_shape=x_train.shape[1:])
resnet.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
arena_budget = (8 if SMALL else 32) * 1024
flat = to_tflite(resnet, "int8", representative_data=x_train[:100])
print(f"{resnet.name} arena: estimate {arena_estimate(flat):,} B, "
      f"TFLite-Micro {tflm.tflm_arena_bytes(flat):,} B; budget {arena_budget:,} B")
fitted = prune(resnet, "complexity", mode="memory", target_arena_bytes=arena_budget,
               step_fraction=0.3 if SMALL else 0.1, train_data=(x_train, y_train),
               val_data=(x_val, y_val), epochs=1 if SMALL else 3, seed=0)
print(f"pruned: {fitted.final['arena_measured']:,} B measured on TFLite-Micro, "
      f"test accuracy {fitted.model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")
assert 0.9 * arena_budget <= fitted.final["arena_measured"] <= arena_budget'''),
        new_markdown_cell("""\
## Halve the latency

MACs say little about latency (small layers are dominated by fixed costs, and
kernels favour some widths). `mode="latency"` measures instead: a per-group
latency table on the deploy runtime (default LiteRT on this host, 1 thread; pass
`latency_fn=f(tflite_bytes) -> seconds` for a phone or a board), draws groups by
the latency they save and re-measures near the target. Timings on a shared
machine are noisy, so the check compares medians of interleaved runs."""),
        new_code_cell('''\
from kprune.bench import litert

q = None if SMALL else "int8"  # float32 converts faster for the quick check
def convert(m):
    return to_tflite(m, q, representative_data=x_train[:100])

# LeNet-5's LiteRT latency is mostly fixed cost, so the quick check prices
# models with a stand-in device (1 ms per MB of flatbuffer) instead of the timer.
stand_in = (lambda flat: len(flat) / 1e9) if SMALL else None
base_ms = (stand_in(convert(resnet)) * 1e3 if SMALL else
           litert.interleaved_latency([convert(resnet)], runs=50, rounds=1)[0].median_ms)
halved = prune(resnet, "complexity", mode="latency", target_latency_ms=base_ms / 2,
               latency_fn=stand_in, latency_quantization=q, train_data=(x_train, y_train),
               val_data=(x_val, y_val), epochs=1 if SMALL else 3, seed=0)
b, a = litert.interleaved_latency([convert(resnet), convert(halved.model)], runs=200, rounds=4)
print(f"latency {b.median_ms:.3f} ms -> {a.median_ms:.3f} ms "
      f"(target {base_ms / 2:.3f} ms, speedup {b.median_ms / a.median_ms:.2f}x, "
      f"MAC reduction {kprune.profile(resnet).macs / kprune.profile(halved.model).macs:.2f}x)")'''),
    ]


def own_model():
    return [
        new_markdown_cell("""\
# 4. Your own model: a custom criterion, `ignored_layers` and a custom layer handler

kprune works on any Functional or Sequential Keras model. This notebook shows
the three ways to adapt it:

1. a **custom layer** (`ChannelScale`, a learned per-channel gain) that kprune
   does not know, made prunable with a small **channel handler**;
2. a **custom criterion**: any `fn(model, group)` returning one score per channel;
3. **`ignored_layers`**: layers whose channels must not change."""),
        new_code_cell(SETUP),
        new_code_cell('''\
from keras import layers

@keras.saving.register_keras_serializable(package="tutorial")
class ChannelScale(layers.Layer):
    """y = x * scale, one learned scale per channel."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale

def build_model():
    inp = keras.Input((8, 8, 1))
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    x = layers.Conv2D(24, 3, padding="same", name="conv")(x)
    x = ChannelScale(name="gain")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(32, activation="relu", name="fc")(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax", name="out")(x))

model = build_model()
print([g.name for g in kprune.dependency_groups(model)])'''),
        new_markdown_cell("""\
`conv` is missing: kprune stops at a layer it has no handler for (it cannot
know which of `gain`'s weights follow the channels). A handler says so:"""),
        new_code_cell('''\
class ChannelScaleHandler(kprune.ChannelHandler):
    layer_types = (ChannelScale,)

    def propagate(self, call, ctx):
        return [ctx.input_layout(call)]        # output channel c comes from input channel c

    def weight_roles(self, layer, in_channels, out_channels):
        return {"scale": ("in",)}              # slice `scale` along the input channels

kprune.register_handler(ChannelScaleHandler())
print([g.name for g in kprune.dependency_groups(model)])
# Proof: removing channels equals zeroing them in the original (masked reference).
kprune.testing.assert_surgery_equivalent(model, {"conv": [0, 5, 7]})
print("surgery through ChannelScale is exact")'''),
        new_markdown_cell("""\
A criterion is any function of `(model, group)` returning one score per group
unit (higher = keep). This one ranks `conv`'s channels by the learned gain
times the filter norm; other groups by their filter L2 norm."""),
        new_code_cell('''\
def gain_times_norm(model, group):
    scores = np.zeros(group.channels)
    for name in group.producers:
        kernel = model.get_layer(name).get_weights()[0]
        norms = np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), axis=0)
        if name == "conv":
            norms = norms * np.abs(model.get_layer("gain").get_weights()[0])
        units = group.channel_map(name)
        np.add.at(scores, units[units >= 0], norms[units >= 0])
    return scores

from kprune.datasets import load_digits
(x, y), (x_test, y_test) = load_digits()
if SMALL:
    x, y = x[:800], y[:800]
model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=12 if SMALL else 30, batch_size=32, verbose=0)
print(f"baseline test accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")'''),
        new_code_cell('''\
result = prune(model, "ilp", train_data=(x, y), epochs=2 if SMALL else 5,
               rounds=2 if SMALL else 6, rate=0.25, criterion=gain_times_norm,
               ignored_layers=["stem"], target="none", seed=0)
before, after = result.baseline["widths"], result.final["widths"]
table([(k, before[k], after[k]) for k in before], ["layer", "channels before", "after"])
assert after["stem"] == before["stem"]     # ignored
assert after["conv"] < before["conv"]      # pruned through the custom layer
print("gain weights now:", result.model.get_layer("gain").get_weights()[0].shape)
print(f"test accuracy after pruning: {result.model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")'''),
        new_code_cell('''\
kprune.reporting.plots.plot_widths(before, after, os.path.join(OUT, "own_model_widths.png"))
display(Image(os.path.join(OUT, "own_model_widths.png")))'''),
    ]


def qat_micro():
    return [
        new_markdown_cell("""\
# 5. Prune a Keras 3 model, then quantization-aware training, to a TFLite-Micro C array

Post-training int8 quantization (PTQ) calibrates activation ranges on a few
images; **quantization-aware training** (QAT) fine-tunes the model with the int8
rounding simulated, so it learns to live with it. tensorflow-model-optimization
(tfmot) does QAT, but only for tf_keras (Keras 2) models:
`kprune.export.quantize_aware` bridges the Keras 3 model to tf_keras
(`kprune.compat.to_tf_keras`), wraps it with tfmot and compiles it like the
original. Needs `pip install "kprune[qat]"`."""),
        new_code_cell(SETUP),
        new_code_cell(FASHION),
        new_markdown_cell("## Train and prune (Keras 3)"),
        new_code_cell('''\
model = kprune.zoo.lenet5()
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=1 if SMALL else 6, batch_size=64, verbose=0)
result = prune(model, "iap", train_data=(x_train, y_train), val_data=(x_val, y_val),
               epochs=1 if SMALL else 2, rounds=1 if SMALL else 6, rate=0.5 if SMALL else 0.3,
               target="none", seed=0, calibration_samples=256)
pruned = result.model
print(result.summary())'''),
        new_markdown_cell("""\
## Quantization-aware training

`quantize_aware` returns the tfmot-wrapped **tf_keras** model, compiled with the
pruned model's loss and metrics and a fresh optimizer of the same kind, ready
for `fit`. (The Keras 3 side of kprune keeps working in the same process.) Here
the pruned model is recompiled with a small learning rate first, so QAT
fine-tunes gently.

QAT is also one more epoch of training. To see what it does for *quantization*,
compare it with the float model fine-tuned exactly the same way (same images,
epochs, learning rate): `tuned` below."""),
        new_code_cell('''\
pruned.compile(keras.optimizers.Adam(5e-5), "sparse_categorical_crossentropy", metrics=["accuracy"])
qat = kprune.export.quantize_aware(pruned)
print(type(qat).__module__, "|", qat.get_compile_config()["loss"])
n_qat = 1000 if SMALL else len(x_train)
qat.fit(x_train[:n_qat], y_train[:n_qat], epochs=1, batch_size=64, verbose=0)

tuned = keras.models.clone_model(pruned)  # the fair float reference
tuned.set_weights(pruned.get_weights())
tuned.compile(keras.optimizers.Adam(5e-5), "sparse_categorical_crossentropy", metrics=["accuracy"])
tuned.fit(x_train[:n_qat], y_train[:n_qat], epochs=1, batch_size=64, verbose=0)'''),
        new_markdown_cell("""\
## int8 flatbuffers: post-training vs quantization-aware

Both are full-integer (int8 input and output), as TFLite-Micro needs. The QAT
model carries its own ranges, so `to_tflite(qat, "int8")` needs no calibration
data. Accuracy is measured on LiteRT and on the TFLite-Micro interpreter."""),
        new_code_cell('''\
from kprune.bench import litert, tflm
from kprune.export import to_tflite

def top1(flat, n=None):
    (p,) = litert.predict(flat, x_test[:n])
    return float(np.mean(p.argmax(-1) == y_test[:n]))

n_micro = 50 if SMALL else 1000
flats = {
    "original float32": to_tflite(model),
    "pruned float32": to_tflite(pruned),
    "pruned float32, fine-tuned like QAT": to_tflite(tuned),
    "pruned PTQ int8": to_tflite(pruned, "int8", representative_data=x_train[:300]),
    "pruned QAT int8": to_tflite(qat, "int8"),
}
rows, accs = [], {}
for name, flat in flats.items():
    accs[name] = top1(flat)
    micro = (f"{tflm.accuracy(flat, x_test[:n_micro], y_test[:n_micro]):.4f}"
             if "int8" in name else "-")
    rows.append((name, f"{len(flat):,}", f"{accs[name]:.4f}", micro))
table(rows, ["model", "flatbuffer bytes", f"LiteRT top-1 ({len(x_test)} test images)",
             f"TFLite-Micro top-1 ({n_micro} images)"])
print(f"parameters: {model.count_params():,} -> {pruned.count_params():,}")'''),
        new_markdown_cell("""\
Per-channel weight scales (one per conv filter) are TFLite's default. For int8
targets whose kernels take one scale per weight tensor, convert with
`to_tflite(pruned, "int8", representative_data=..., per_channel=False)`, and
train with `quantize_aware(pruned, per_channel=False)` then
`to_tflite(qat, "int8", per_channel=False)`. Per-tensor scales cost most on
depthwise-separable and heavily pruned nets: see the QAT section of
BENCHMARKS.md (`benchmarks/qat.py`)."""),
        new_code_cell('''\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(list(accs), [100 * a for a in accs.values()],
        color=["#999", "#69c", "#9bd", "#e96", "#4a4"])
ax.set_xlim(min(100 * a for a in accs.values()) - 3, 100)
ax.set_xlabel("top-1 (%)")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "qat_accuracy.png"), dpi=100)
display(Image(os.path.join(OUT, "qat_accuracy.png")))'''),
        new_markdown_cell("""\
## The C array for TFLite-Micro

`to_micro` converts (int8, from the QAT model: no calibration needed) and writes
`<name>.tflite`, `.cc` and `.h` with the recommended tensor arena measured on
TFLite-Micro."""),
        new_code_cell('''\
files = kprune.export.to_micro(qat, "lenet5_qat", os.path.join(OUT, "firmware"))
print(files)
print(open(files.h).read())'''),
        new_markdown_cell("""\
The command line does the same from a saved (pruned) model:

```
kprune export --model runs/lenet5/pruned.keras --data fashion_mnist --qat-epochs 1 --out firmware/
```"""),
    ]


def keras_hub_backbone():
    return [
        new_markdown_cell("""\
# 6. Prune a keras-hub backbone and export it to LiteRT

keras-hub backbones are Functional subclasses built from composite layers
(`InvertedResidualBlock`, `ConvBnActBlock`, ...). kprune traces each
composite layer's `call` into its inner graph, so the convolutions inside
the blocks are prunable, and returns the pruned model as a plain
`keras.Model` (the composite blocks become nested Functional models of the
same names) that saves as `.keras` with nothing registered. Where a class's
constructor arguments can express the pruned widths (a stage cut alike in
every block) it keeps its class instead; `kprune.inlined_reasons(pruned)`
says why a class was not kept (IAP's uneven cuts here). Here a small
MobileNetV3-style backbone (random weights: nothing is downloaded) gets a
classification head, is trained on Fashion-MNIST (28x28 padded to 32x32,
grey replicated to 3 channels), pruned with IAP, and exported to a LiteRT
flatbuffer whose outputs are checked against Keras."""),
        new_code_cell(SETUP),
        new_code_cell(FASHION),
        new_code_cell('''\
import keras_hub

def rgb32(x):
    x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return np.repeat(x, 3, axis=-1).astype("float32")

x_train3, x_val3, x_test3 = rgb32(x_train), rgb32(x_val), rgb32(x_test)
backbone = keras_hub.models.MobileNetBackbone(   # small MobileNetV3-style, random weights
    stackwise_expansion=[[40, 56], [64, 144]], stackwise_num_blocks=[2, 2],
    stackwise_num_filters=[[16, 16], [24, 24]], stackwise_kernel_size=[[3, 3], [5, 5]],
    stackwise_num_strides=[[2, 1], [2, 1]], stackwise_se_ratio=[[None, None], [0.25, 0.25]],
    stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
    stackwise_padding=[[1, 1], [2, 2]], output_num_filters=64, depthwise_filters=8,
    depthwise_stride=2, depthwise_residual=False, last_layer_filter=64,
    squeeze_and_excite=0.5, image_shape=(32, 32, 3))
inputs = keras.Input((32, 32, 3))
features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(features))
model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
n_fit = 5000 if SMALL else len(x_train3)   # the quick check trains on a slice
model.fit(x_train3[:n_fit], y_train[:n_fit], epochs=1 if SMALL else 6, batch_size=64, verbose=0)
print(f"baseline test accuracy: {model.evaluate(x_test3, y_test, verbose=0)[1]:.4f}")
groups = kprune.dependency_groups(model)
print(len(groups), "prunable groups, e.g.", [g.name for g in groups[:4]])'''),
        new_markdown_cell("""\
## Prune with IAP

The group names are paths through the nested blocks
(`mobile_net_backbone/block_1_0/block_1_0_conv1`): the backbone and its
blocks are inlined as nested models."""),
        new_code_cell('''\
result = prune(model, "iap", train_data=(x_train3[:n_fit], y_train[:n_fit]), val_data=(x_val3, y_val),
               epochs=1, rounds=1 if SMALL else 6, rate=0.2, target=0.02, seed=0,
               calibration_samples=300)
print(result.summary())
result.plot(os.path.join(OUT, "keras_hub_iap.png"))
display(Image(os.path.join(OUT, "keras_hub_iap.png")))
path = os.path.join(OUT, "mobilenet_pruned.keras")
result.model.save(path)
reloaded = keras.saving.load_model(path)     # no custom objects needed
print(type(reloaded).__name__, reloaded.count_params(), "parameters")'''),
        new_markdown_cell("""\
## Export to LiteRT

`to_tflite` converts with a fixed batch-1 signature; the LiteRT interpreter
runs the flatbuffer, and its outputs match the Keras model's."""),
        new_code_cell('''\
from kprune.export import to_tflite
from kprune.runtime import litert

rows = []
for name, m in (("original", model), ("pruned", reloaded)):
    flat = to_tflite(m)
    got = litert.predict(flat, x_test3[:8])[0]
    want = m.predict(x_test3[:8], verbose=0)
    rows.append((name, f"{m.count_params():,}", f"{kprune.profile(m).macs:,}", f"{len(flat):,}",
                 f"{float(np.abs(got - want).max()):.1e}",
                 f"{litert.latency(flat, runs=20 if SMALL else 200).median_ms:.3f}"))
table(rows, ["model", "parameters", "MACs", "float32 flatbuffer bytes",
             "max |LiteRT - Keras|", "LiteRT median latency (ms)"])'''),
    ]


NOTEBOOKS = {
    "01_lenet5_iap_microcontroller.ipynb": lenet_iap,
    "02_aiap_resnet_macs_target.ipynb": aiap_resnet,
    "03_memory_aware_arena_budget.ipynb": memory_budget,
    "04_your_own_model.ipynb": own_model,
    "05_qat_int8_microcontroller.ipynb": qat_micro,
    "06_keras_hub_backbone_litert.ipynb": keras_hub_backbone,
}


def write(name):
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = os.path.join(HERE, name)
    nbformat.write(nb, path)
    return path


def execute(path, timeout=900):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": HERE}}).execute()
    for cell in nb.cells:  # drop TensorFlow's C++ start-up banner (not a result)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (
                o.output_type == "stream" and o.name == "stderr" and _is_tf_banner(o.text))]
    nbformat.write(nb, path)


def _is_tf_banner(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    noise = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard",
             "To enable the following instructions", "TF_ENABLE_ONEDNN_OPTS", "cudart_stub.cc")
    return bool(lines) and all(any(n in ln for n in noise) for ln in lines)


if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if not a.startswith("--")] or list(NOTEBOOKS)
    for name in names:
        p = write(name)
        print("wrote", p)
        if "--execute" in sys.argv:
            execute(p)
            print("executed", p)
