"""Export faithfulness per Keras backend: kprune's TensorFlow-child export vs Keras' own `model.export`.

For each backend (TensorFlow, JAX, PyTorch; each in its own interpreter with
``KERAS_BACKEND`` set) a LeNet-5 is trained on Fashion-MNIST on that backend
(seed 0), then exported to LiteRT two ways:

* **kprune**: `kprune.export.to_tflite` (on JAX / PyTorch: the model is saved
  as ``.keras`` and converted by a child process whose Keras runs on
  TensorFlow, the same weights bit for bit), float32 and int8 (full integer,
  int8 input / output, per-channel weights, 200 calibration images);
* **Keras**: Keras 3's own export. ``model.export(path, format="litert")``
  where the backend offers it (TensorFlow: the same TFLite converter, given
  the same int8 settings and calibration images; PyTorch: ``litert-torch``,
  whose int8 is PT2E quantization chosen by ``optimizations`` with no
  calibration set in Keras' API); on JAX, where Keras refuses ``litert``,
  ``model.export(dir, format="tf_saved_model")`` (jax2tf) followed by the
  TFLite converter with kprune's int8 settings. Any error is recorded with
  its type and message.

Every flatbuffer runs in the LiteRT interpreter on the same test images;
reported: top-1, agreement of its top-1 with the Keras model's, and the
largest absolute difference of the softmax outputs.

Usage:
    python benchmarks/export_backends.py                  # tf, jax, torch
    python benchmarks/export_backends.py --torch-python /path/to/venv/bin/python
        # a Python whose site has litert-torch (Keras' PyTorch LiteRT path)
    python benchmarks/export_backends.py --report
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
PARTS = os.path.join(RESULTS, "export_backends_runs")
BACKENDS = ("tensorflow", "jax", "torch")


def _error(err):
    msg = str(err).strip().splitlines()
    # Converter errors are long; keep the head and the last line (the cause).
    text = " ".join(msg[:3]) + (f" ... {msg[-1]}" if len(msg) > 3 else "")
    return {"type": type(err).__name__, "message": text[:1200]}


def _int8_converter_settings(converter, calib, tf):
    def representative_dataset():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8


def keras_export(model, mode, calib, workdir):
    """Keras' own LiteRT export of `model` ('float' or 'int8') -> (bytes, route, error)."""
    import keras
    import tensorflow as tf

    backend = keras.backend.backend()
    path = os.path.join(workdir, f"keras_{mode}.tflite")
    if backend == "tensorflow":
        kw = {}
        if mode == "int8":
            def representative_dataset():
                for i in range(len(calib)):
                    yield [calib[i:i + 1]]
            kw = dict(optimizations=[tf.lite.Optimize.DEFAULT],
                      representative_dataset=representative_dataset,
                      target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
                      inference_input_type=tf.int8, inference_output_type=tf.int8)
        model.export(path, format="litert", verbose=False, **kw)
        return open(path, "rb").read(), "model.export(format='litert', converter kwargs)"
    if backend == "torch":
        kw = {}
        if mode == "int8":
            # Keras' torch route picks PT2E static per-channel int8 for
            # OPTIMIZE_FOR_SIZE (DEFAULT alone gives dynamic-range int8).
            kw = dict(optimizations=[tf.lite.Optimize.OPTIMIZE_FOR_SIZE])
        model.export(path, format="litert", verbose=False,
                     input_signature=[keras.InputSpec(shape=(1,) + tuple(model.input_shape[1:]),
                                                      dtype="float32")], **kw)
        return open(path, "rb").read(), "model.export(format='litert') via litert-torch"
    # JAX: Keras' LiteRT export refuses the backend; record that, then its
    # SavedModel (jax2tf) export and the TFLite converter.
    try:
        model.export(path, format="litert", verbose=False)
        return open(path, "rb").read(), "model.export(format='litert')"
    except Exception as err:  # noqa: BLE001 - recorded
        litert_err = _error(err)
    sm = os.path.join(workdir, f"saved_model_{mode}")
    model.export(sm, format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(sm)
    if mode == "int8":
        _int8_converter_settings(converter, calib, tf)
    flat = converter.convert()
    return bytes(flat), ("model.export(format='tf_saved_model') (jax2tf) + TFLiteConverter."
                         f"from_saved_model; format='litert' refused: {litert_err['type']}: "
                         f"{litert_err['message']}")


def child(args):
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np

    from kprune import datasets, zoo
    from kprune.atomic import atomic_write_text
    from kprune.export import to_tflite
    from kprune.runtime import litert

    assert keras.backend.backend() == args.backend
    (x, y), (xt, yt) = datasets.load_fashion_mnist()
    x, y = x[:args.train], y[:args.train]
    xt, yt = xt[:args.test], yt[:args.test]
    calib = x[-200:].astype("float32")
    keras.utils.set_random_seed(0)
    model = zoo.lenet5()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t0 = time.time()
    model.fit(x, y, batch_size=128, epochs=args.epochs, verbose=0)
    train_s = time.time() - t0
    ref = np.asarray(model.predict(xt, batch_size=500, verbose=0))
    ref_top = ref.argmax(-1)
    out = {"backend": args.backend, "train_images": len(x), "test_images": len(xt),
           "epochs": args.epochs, "train_s": train_s, "python": sys.executable,
           "keras_top1": float((ref_top == yt).mean()), "exports": []}

    def measure(route, mode, make):
        rec = {"exporter": route, "mode": mode}
        t = time.time()
        try:
            flat, how = make()
            rec.update(how=how, export_s=time.time() - t, bytes=len(flat))
            (probs,) = litert.predict(flat, xt)
            rec.update(top1=float((probs.argmax(-1) == yt).mean()),
                       agreement=float((probs.argmax(-1) == ref_top).mean()),
                       max_abs_diff=float(np.abs(probs - ref).max()),
                       input_dtype=str(litert.make_interpreter(flat).get_input_details()[0]
                                       ["dtype"].__name__))
        except Exception as err:  # noqa: BLE001 - recorded in the table
            rec.update(error=_error(err), export_s=time.time() - t)
            traceback.print_exc()
        print(f"  {args.backend} {route} {mode}: {rec.get('top1', rec.get('error'))}", flush=True)
        out["exports"].append(rec)

    with tempfile.TemporaryDirectory() as work:
        for mode in ("float", "int8"):
            q = None if mode == "float" else "int8"
            measure("kprune", mode, lambda: (
                to_tflite(model, q, calib if q else None),
                "kprune.export.to_tflite" + (" (TensorFlow child process)"
                                             if args.backend != "tensorflow" else "")))
            measure("keras", mode, lambda: keras_export(model, mode, calib, work))
    os.makedirs(PARTS, exist_ok=True)
    atomic_write_text(os.path.join(PARTS, f"{args.backend}.json"), json.dumps(out, indent=1))


def report(command):
    from kprune.atomic import atomic_write_text

    parts = []
    for b in BACKENDS:
        p = os.path.join(PARTS, f"{b}.json")
        if os.path.exists(p):
            with open(p) as f:
                parts.append(json.load(f))
    atomic_write_text(os.path.join(RESULTS, "export_backends.json"),
                      json.dumps({"command": command, "backends": parts}, indent=1))
    lines = ["# Export faithfulness per backend: kprune's TF-child export vs Keras' own",
             "", f"Command: `{command}`", ""]
    if parts:
        p0 = parts[0]
        lines += [f"LeNet-5 trained on each backend (seed 0, {p0['train_images']} Fashion-MNIST "
                  f"training images, {p0['epochs']} epochs); {p0['test_images']} test images "
                  "through the LiteRT interpreter. Agreement: share of images whose top-1 "
                  "equals the Keras model's on the same backend; max |diff|: largest absolute "
                  "difference of the softmax outputs (int8 outputs dequantized). int8 = full "
                  "integer with 200 calibration images where the route takes them.", "",
                  "| backend | Keras top-1 % | exporter | mode | LiteRT top-1 % | agreement % "
                  "| max abs diff | bytes | export s | route / error |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for p in parts:
            for e in p["exports"]:
                if "error" in e:
                    cells = ["-", "-", "-", "-", f"{e['export_s']:.1f}",
                             f"**fails**: {e['error']['type']}: {e['error']['message']}"]
                else:
                    how = e["how"]
                    flt = [f for f in p["exports"] if f["exporter"] == e["exporter"]
                           and f["mode"] == "float" and "bytes" in f]
                    if e["mode"] == "int8" and flt and abs(e["bytes"] - flt[0]["bytes"]) < 1024 \
                            and e.get("input_dtype") == "float32":
                        how += (" **(not quantized: float32 input, the size and outputs of "
                                "the float export)**")
                    cells = [f"{100 * e['top1']:.2f}", f"{100 * e['agreement']:.2f}",
                             f"{e['max_abs_diff']:.2e}", f"{e['bytes']:,}",
                             f"{e['export_s']:.1f}", how]
                cell = " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells)
                lines.append(f"| {p['backend']} | {100 * p['keras_top1']:.2f} | {e['exporter']} "
                             f"| {e['mode']} | {cell} |")
    atomic_write_text(os.path.join(RESULTS, "export_backends.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--torch-python", default=sys.executable,
                    help="the Python for the PyTorch child (one with litert-torch installed "
                         "runs Keras' own PyTorch LiteRT export)")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.backend:
        return child(args)
    sys.path.insert(0, ROOT)
    command = "python benchmarks/export_backends.py " + " ".join(
        a for a in sys.argv[1:] if a != "--report")
    if not args.report:
        for b in args.backends.split(","):
            py = args.torch_python if b == "torch" else sys.executable
            print(f"{b} ...", flush=True)
            subprocess.run([py, __file__, "--backend", b, "--train", str(args.train),
                            "--epochs", str(args.epochs), "--test", str(args.test)],
                           check=True, env=dict(os.environ, KERAS_BACKEND=b))
    report(command)


if __name__ == "__main__":
    main()
