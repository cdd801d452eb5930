"""QAT benchmark: float32 vs post-training int8 vs quantization-aware int8.

Fashion-MNIST (a training slice; the full 10,000-image test set), for
LeNet-5 (28x28x1), ResNet-20 (32x32x1, images zero-padded) and a
MobileNetV2-style net (inverted residual blocks, 32x32x1, `mobilenet_v2_style`),
each unpruned and pruned by kprune (L1 scores per dependency group, half the
channels of every group removed with `kprune.remove_channels`: about 4x fewer
parameters; then fine-tuned). Every model goes three ways:

* float32: `kprune.export.to_tflite(model)` on LiteRT;
* PTQ int8: `to_tflite(model, "int8", representative_data=500 train images)`;
* QAT int8: `kprune.export.quantize_aware(model)` (Keras 3 -> tf_keras ->
  tfmot), fine-tuned, then `to_tflite(qat_model, "int8")` (no calibration).

Both int8 flatbuffers are full-integer (int8 input and output) and are run on
LiteRT over the whole test set and on TFLite-Micro (`kprune.bench.tflm`, its
reference kernels are slow: a test subset, see --tflm-samples).

Usage:
    python benchmarks/qat.py                 # full run (~30 min on 2 shared cores)
    python benchmarks/qat.py --quick         # smoke run (~3 min)
    python benchmarks/qat.py --models lenet5 --epochs-scale 2

Writes benchmarks/results/qat.json and benchmarks/results/qat.md
(qat_quick.* with --quick).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kprune  # noqa: E402
import kprune.zoo  # noqa: E402,F401
from kprune import export  # noqa: E402
from kprune.bench import litert, tflm  # noqa: E402

from edge import _cpu_name, l1_removal, recalibrate_batchnorm  # noqa: E402  (shared helpers)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# name -> (builder, pad to 32, train epochs, fine-tune epochs after pruning)
FAMILIES = {
    "lenet5": (lambda: kprune.zoo.lenet5(input_shape=(28, 28, 1)), False, 4, 2),
    "resnet20": (lambda: kprune.zoo.resnet20(input_shape=(32, 32, 1), width=16), True, 3, 2),
    "mobilenetv2": (lambda: mobilenet_v2_style(), True, 4, 2),
}


def mobilenet_v2_style(input_shape=(32, 32, 1), num_classes=10):
    """A MobileNetV2-style net for 32x32 inputs: inverted residual blocks
    (1x1 expand, 3x3 depthwise, 1x1 linear projection, BN + ReLU6), residual
    adds where shapes allow. Depthwise-heavy, like the real one, but sized for
    32x32 (keras.applications.MobileNetV2 at 32x32 strides down to 1x1 and did
    not train in this budget)."""
    from keras import layers
    inp = keras.Input(input_shape)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inp)
    x = layers.ReLU(6.0, name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
    cin = 16
    for i, (expand, cout, stride) in enumerate([(1, 16, 1), (4, 24, 2), (4, 24, 1),
                                                (4, 32, 2), (4, 32, 1), (4, 64, 2),
                                                (4, 64, 1)]):
        y = x
        if expand != 1:
            y = layers.Conv2D(cin * expand, 1, use_bias=False, name=f"b{i}_expand")(y)
            y = layers.ReLU(6.0, name=f"b{i}_expand_relu")(
                layers.BatchNormalization(name=f"b{i}_expand_bn")(y))
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                   name=f"b{i}_dw")(y)
        y = layers.ReLU(6.0, name=f"b{i}_dw_relu")(layers.BatchNormalization(name=f"b{i}_dw_bn")(y))
        y = layers.Conv2D(cout, 1, use_bias=False, name=f"b{i}_project")(y)
        y = layers.BatchNormalization(name=f"b{i}_project_bn")(y)
        x = layers.Add(name=f"b{i}_add")([x, y]) if stride == 1 and cin == cout else y
        cin = cout
    x = layers.Conv2D(128, 1, use_bias=False, name="head")(x)
    x = layers.ReLU(6.0, name="head_relu")(layers.BatchNormalization(name="head_bn")(x))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="mobilenetv2_style_32")


def _atomic_write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def load_data(args):
    from kprune.datasets import load_fashion_mnist
    (x, y), (xt, yt) = load_fashion_mnist()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    tr, va = idx[:args.train_samples], idx[-args.val_samples:]
    return (x[tr], y[tr]), (x[va], y[va]), (xt[:args.test_samples], yt[:args.test_samples])


def pad32(x):
    return np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))


def compile_model(model, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def ptq_per_tensor(model, calibration):
    """Post-training int8 with one scale per weight tensor (not per channel),
    as older toolchains and some accelerators do: the converter's own API."""
    import tensorflow as tf
    inp = keras.Input(batch_shape=(1,) + tuple(model.inputs[0].shape[1:]))
    fixed = keras.Model(inp, model(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    conv._experimental_disable_per_channel = True
    return bytes(conv.convert())


def top1_litert(flat, x, y):
    (probs,) = litert.predict(flat, x)
    return float(np.mean(probs.argmax(-1) == y))


def evaluate_three_ways(name, model, train, test, args, log):
    (x, y), (xt, yt) = train, test
    row = {"model": name, "params": int(kprune.profile(model).params),
           "macs": int(kprune.profile(model).macs)}
    flat32 = export.to_tflite(model)
    row["float32"] = top1_litert(flat32, xt, yt)
    t = time.time()
    ptq = export.to_tflite(model, "int8", representative_data=x[:500])
    row["ptq_int8"] = top1_litert(ptq, xt, yt)
    row["int8_bytes_ptq"] = len(ptq)
    if args.per_tensor:
        row["ptq_int8_per_tensor"] = top1_litert(ptq_per_tensor(model, x[:500]), xt, yt)
    log(f"  {name}: float32 {row['float32']:.4f}  PTQ int8 {row['ptq_int8']:.4f}")

    compile_model(model, args.qat_lr)  # quantize_aware compiles the QAT model like this
    qat = export.quantize_aware(model)
    n_qat = args.qat_samples or len(x)
    qat.fit(x[:n_qat], y[:n_qat], epochs=args.qat_epochs, batch_size=args.batch_size, verbose=0)
    qflat = export.to_tflite(qat, "int8")
    row["qat_int8"] = top1_litert(qflat, xt, yt)
    row["int8_bytes_qat"] = len(qflat)
    row["qat_seconds"] = round(time.time() - t, 1)
    n = args.tflm_samples
    row["tflm_samples"] = n
    row["tflm_ptq_int8"] = tflm.accuracy(ptq, xt[:n], yt[:n])
    row["tflm_qat_int8"] = tflm.accuracy(qflat, xt[:n], yt[:n])
    row["litert_ptq_int8_subset"] = top1_litert(ptq, xt[:n], yt[:n])
    row["litert_qat_int8_subset"] = top1_litert(qflat, xt[:n], yt[:n])
    row["float32_subset"] = top1_litert(flat32, xt[:n], yt[:n])
    log(f"  {name}: QAT int8 {row['qat_int8']:.4f}  TFLM PTQ/QAT "
        f"{row['tflm_ptq_int8']:.4f}/{row['tflm_qat_int8']:.4f} ({n} images)")
    return row


def run_family(family, data, args, log):
    build, pad, epochs, ft_epochs = FAMILIES[family]
    (x, y), (xv, yv), (xt, yt) = data
    if pad:
        x, xv, xt = pad32(x), pad32(xv), pad32(xt)
    keras.utils.set_random_seed(0)
    model = build()
    for layer in model.layers:  # keras.applications' BN momentum 0.999 needs thousands of
        if isinstance(layer, keras.layers.BatchNormalization):  # steps to track the data
            layer.momentum = min(layer.momentum, 0.99)
    compile_model(model, 1e-3)
    t = time.time()
    model.fit(x, y, epochs=max(1, round(epochs * args.epochs_scale)),
              batch_size=args.batch_size, validation_data=(xv, yv), verbose=0)
    if args.bn_recalibrate:
        recalibrate_batchnorm(model, x[:1000])
    val = model.evaluate(xv, yv, verbose=0)[1]
    log(f"{family}: trained in {time.time() - t:.0f}s, val top-1 {val:.4f}")
    rows = []
    if not args.skip_unpruned:
        base = keras.models.clone_model(model)  # a copy: QAT recompiles its source
        base.set_weights(model.get_weights())
        rows.append(evaluate_three_ways(f"{family}", base, (x, y), (xt, yt), args, log))

    removal = l1_removal(model, args.prune_fraction)
    pruned = kprune.remove_channels(model, removal)
    compile_model(pruned, 5e-4)
    pruned.fit(x, y, epochs=max(1, round(ft_epochs * args.epochs_scale)),
               batch_size=args.batch_size, validation_data=(xv, yv), verbose=0)
    if args.bn_recalibrate:
        recalibrate_batchnorm(pruned, x[:1000])
    label = f"{family} pruned" + ("" if args.prune_fraction == 0.5
                                  else f" {100 * args.prune_fraction:.0f}%")
    rows.append(evaluate_three_ways(label, pruned, (x, y), (xt, yt), args, log))
    return rows


def markdown(results, command):
    a = results["args"]
    lines = [
        "# QAT after pruning: float32 vs post-training int8 vs QAT int8",
        "",
        f"Command: `{command}`",
        "",
        f"Fashion-MNIST: trained on {a['train_samples']} training images, top-1 on the "
        f"first {a['test_samples']} test images through LiteRT; TFLite-Micro on the first "
        f"{a['tflm_samples']} (its reference kernels are slow). Pruned = half the channels "
        f"of every dependency group removed by L1 score with `kprune.remove_channels`, then "
        f"fine-tuned. PTQ = `to_tflite(model, 'int8', representative_data=500 images)`; "
        f"QAT = `kprune.export.quantize_aware(model)`, {a['qat_epochs']} epoch(s) on "
        f"{a['qat_samples'] or a['train_samples']} images at lr {a['qat_lr']}, then "
        f"`to_tflite(qat, 'int8')`. Both int8 models are full-integer "
        f"(int8 input/output). QAT is extra training: where QAT int8 beats float32, part of "
        f"the gain is that fine-tuning, not quantization. TFLite-Micro columns use "
        f"the first {a['tflm_samples']} test images; 'float32 (subset)' is the float "
        f"model on the same images. CPU: {results['cpu']}; total "
        f"{results['seconds'] / 60:.1f} min of compute.",
        "",
        "| model | params | MACs | float32 | PTQ int8 | PTQ int8 per-tensor | QAT int8 | "
        "PTQ - float | QAT - float | TFLM PTQ / QAT (subset) | float32 (subset) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        pt = r.get("ptq_int8_per_tensor")
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['macs'] / 1e6:.2f} M | "
            f"{100 * r['float32']:.2f} | {100 * r['ptq_int8']:.2f} | "
            f"{'-' if pt is None else f'{100 * pt:.2f}'} | {100 * r['qat_int8']:.2f} | "
            f"{100 * (r['ptq_int8'] - r['float32']):+.2f} | "
            f"{100 * (r['qat_int8'] - r['float32']):+.2f} | "
            f"{100 * r['tflm_ptq_int8']:.2f} / {100 * r['tflm_qat_int8']:.2f} | "
            f"{100 * r['float32_subset']:.2f} |")
    for extra in results.get("runs", []):
        lines += ["", f"Rows added by: `{extra}`"]
    lines += ["", "## Verdict", ""] + [f"- {v}" for v in results["verdict"]]
    return "\n".join(lines) + "\n"


def verdict(rows):
    qat_ok = [r for r in rows if round(100 * (r["qat_int8"] - r["float32"]), 2) >= -0.3]
    worst = min(rows, key=lambda r: min(r["ptq_int8"], r.get("ptq_int8_per_tensor") or 1)
                - r["float32"])
    worst_loss = 100 * (min(worst["ptq_int8"], worst.get("ptq_int8_per_tensor") or 1)
                        - worst["float32"])
    out = [f"QAT int8 within 0.3 point of float32 on {len(qat_ok)} of {len(rows)} rows.",
           f"Largest post-training int8 loss (per-channel or per-tensor): {worst_loss:+.2f} pt "
           f"({worst['model']})" + ("" if worst_loss <= -0.5 else
                                    ": no row reaches the 0.5-point PTQ loss the issue asked "
                                    "to show; Fashion-MNIST nets this size quantize well "
                                    "even per-tensor and 80% pruned.")]
    big = [f"{r['model']} ({100 * (r['qat_int8'] - r['float32']):+.1f} pt)" for r in rows
           if r["qat_int8"] - r["float32"] > 0.02]
    if big:
        out.append("QAT above float32 by more than 2 points: " + ", ".join(big) + "; their "
                   "float models were under-trained and the QAT epoch is extra training.")
    for r in rows:
        ptq, qat = 100 * (r["ptq_int8"] - r["float32"]), 100 * (r["qat_int8"] - r["float32"])
        ok = round(qat, 2) >= -0.3
        out.append(f"{r['model']}: PTQ {ptq:+.2f} pt, QAT {qat:+.2f} pt vs float32 -> "
                   f"{'within' if ok else 'MISSES'} the 0.3-point target"
                   + (f"; QAT recovers {qat - ptq:+.2f} pt of PTQ's loss" if ptq <= -0.5 else ""))
        pt = r.get("ptq_int8_per_tensor")
        if pt is not None:
            ptl = 100 * (pt - r["float32"])
            out.append(f"{r['model']}: per-tensor PTQ {ptl:+.2f} pt vs float32"
                       + (f"; QAT int8 is {qat - ptl:+.2f} pt above it" if ptl <= -0.5 else ""))
        if abs(r["tflm_qat_int8"] - r["litert_qat_int8_subset"]) > 0.002:
            out.append(f"{r['model']}: TFLite-Micro and LiteRT QAT int8 differ on the subset "
                       f"({r['tflm_qat_int8']:.4f} vs {r['litert_qat_int8_subset']:.4f})")
    return out


def render(path):
    """Re-renders the markdown next to a results JSON (verdict recomputed)."""
    with open(path) as f:
        results = json.load(f)
    results["verdict"] = verdict(results["rows"])
    _atomic_write(path, json.dumps(results, indent=2))
    md = os.path.splitext(path)[0] + ".md"
    _atomic_write(md, markdown(results, results.get("command", "python benchmarks/qat.py")))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="lenet5,resnet20,mobilenetv2")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--train-samples", type=int, default=12000)
    p.add_argument("--val-samples", type=int, default=2000)
    p.add_argument("--test-samples", type=int, default=10000)
    p.add_argument("--tflm-samples", type=int, default=500)
    p.add_argument("--epochs-scale", type=float, default=1.0)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--qat-lr", type=float, default=2e-4)
    p.add_argument("--qat-samples", type=int, default=8000,
                   help="QAT fine-tunes on the first N training images (0 = all)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--prune-fraction", type=float, default=0.5)
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--skip-unpruned", action="store_true",
                   help="only the pruned model of each family")
    p.add_argument("--per-tensor", action="store_true",
                   help="also post-training int8 with per-tensor weight scales")
    p.add_argument("--bn-recalibrate", action="store_true",
                   help="after training, set BatchNorm statistics from 1000 training images "
                        "(the MobileNetV2-style net's moving statistics lag behind in this "
                        "short schedule: inference-mode accuracy was at chance without it)")
    p.add_argument("--append", action="store_true",
                   help="add the rows to the existing results file instead of replacing it")
    args = p.parse_args(argv)
    if args.quick:
        args.train_samples, args.test_samples, args.tflm_samples = 2000, 1000, 100
        args.qat_samples = 1000
        args.epochs_scale = 0.5
    command = "python benchmarks/qat.py " + " ".join(argv if argv is not None else sys.argv[1:])
    start = time.time()

    def log(msg):
        print(f"[{time.time() - start:6.0f}s] {msg}", flush=True)

    data = load_data(args)
    rows = []
    stem = "qat_quick" if args.quick else "qat"
    results = {"args": vars(args), "cpu": _cpu_name() or platform.machine(),
               "rows": rows}
    prior_seconds = 0.0
    if args.append:
        with open(os.path.join(args.out, stem + ".json")) as f:
            results = json.load(f)
        rows = results["rows"]
        results.setdefault("command", "python benchmarks/qat.py")
        results.setdefault("runs", []).append(command.strip())
        prior_seconds = results.get("seconds", 0.0)
    for family in args.models.split(","):
        rows.extend(run_family(family, data, args, log))
        results.update(seconds=prior_seconds + time.time() - start, verdict=verdict(rows))
        _atomic_write(os.path.join(args.out, stem + ".json"), json.dumps(results, indent=2))
        results.setdefault("command", command.strip())
        _atomic_write(os.path.join(args.out, stem + ".md"),
                      markdown(results, results["command"]))
    print(markdown(results, results.get("command", command.strip())))


if __name__ == "__main__":
    main()
