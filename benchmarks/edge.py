"""Edge benchmark: what channel pruning changes on LiteRT and TFLite-Micro.

LeNet-5 (Fashion-MNIST, trained), ResNet-20 (32x32x3) and MobileNetV2
(alpha 0.35, 96x96x3, 10 classes) are pruned at 30 / 50 / 70 percent of the
channels of every dependency group by L1-norm of the producers' kernels
(`kprune.remove_channels`), then measured with `kprune.bench.measure_many`:
flatbuffer sizes per quantization, TFLite-Micro arena (recording allocator and
smallest working arena), LiteRT latency at batch 1 with a fixed thread count
(all four models of a family timed interleaved), MAC and latency ratios, and
for LeNet-5 the int8 top-1 through TFLite-Micro against the Keras float model.

Usage:
    python benchmarks/edge.py              # full run (about 40 min on 2 cores shared by 4 jobs)
    python benchmarks/edge.py --quick      # smoke run (few runs, small eval; ~6 min)
    python benchmarks/edge.py --models lenet5 --runs-scale 2
    # one family per run, then combine into edge.json / edge.md:
    python benchmarks/edge.py --models resnet20 --out /tmp/r20
    python benchmarks/edge.py --merge /tmp/lenet/edge.json /tmp/r20/edge.json

Writes benchmarks/results/edge.json and benchmarks/results/edge.md
(edge_quick.* with --quick).
"""

import argparse
import json
import os
import platform
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kprune  # noqa: E402
from kprune.bench import litert  # noqa: E402
from kprune.bench.measure import Comparison, measure_many  # noqa: E402
from kprune.export import to_tflite  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TARGET = 0.8  # latency speedup must reach this fraction of the MAC reduction
ACC_TARGET = 0.005  # int8 top-1 within 0.5 percentage points of float


# ---------------------------------------------------------------- pruning

def _channel_l1(layer) -> np.ndarray:
    """L1 norm of each output channel's weights of a producer layer."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        k = np.abs(np.asarray(layer.depthwise_kernel))  # (kh, kw, in, mult)
        return k.sum(axis=(0, 1)).reshape(-1)  # channel = in * mult + m
    if isinstance(layer, keras.layers.SeparableConv2D):
        return np.abs(np.asarray(layer.pointwise_kernel)).sum(axis=(0, 1, 2))
    if isinstance(layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                          keras.layers.Conv3DTranspose)):
        k = np.abs(np.asarray(layer.kernel))  # (..., out, in)
        return np.moveaxis(k, -2, -1).reshape(-1, k.shape[-2]).sum(axis=0)
    k = np.abs(np.asarray(layer.kernel))
    return k.reshape(-1, k.shape[-1]).sum(axis=0)


def l1_removal(model, fraction: float, analysis=None, align: int = 1):
    """{producer: channel indices} removing round(fraction * units) units of every
    dependency group with the smallest summed L1 norm over the group's producers
    (at least one unit per group is kept). With `align` > 1, the number of kept
    units of groups wider than `align` is rounded to a multiple of it (SIMD-friendly
    widths)."""
    analysis = analysis or kprune.analyze(model)
    removal = {}
    for group in analysis.groups:
        n = min(int(round(fraction * group.channels)), group.channels - 1)
        if align > 1 and group.channels > align:
            keep = max(align, int(round((group.channels - n) / align)) * align)
            n = group.channels - min(keep, group.channels)
        if n <= 0:
            continue
        scores = np.zeros(group.channels)
        for name in group.producers:
            l1 = _channel_l1(model.get_layer(name.rsplit("/", 1)[-1]))
            cmap = np.asarray(group.channel_map(name))
            ok = cmap >= 0
            np.add.at(scores, cmap[ok], l1[ok])
        units = np.argsort(scores, kind="stable")[:n]
        for layer, idx in group.to_layer_indices(units).items():
            removal.setdefault(layer, []).extend(int(i) for i in idx)
    return removal


def recalibrate_batchnorm(model, x):
    """Sets every BatchNormalization's moving statistics to the batch statistics
    of one forward pass on `x` (random-weight models otherwise have degenerate
    activation ranges, e.g. all ~0 before the classifier)."""
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(x, training=True)
    for bn, m in zip(bns, saved):
        bn.momentum = m


# ---------------------------------------------------------------- models

def _suffix(args):
    return f"-a{args.align}" if args.align > 1 else ""


def _zoo():
    try:
        from kprune.zoo import lenet5, resnet20
    except ImportError:  # pragma: no cover - the zoo ships with kprune
        raise SystemExit("kprune.zoo is missing (lenet5, resnet20)")
    return lenet5, resnet20


def lenet_family(args, log):
    from kprune.datasets import load_fashion_mnist

    lenet5, _ = _zoo()
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    if args.quick:
        x_train, y_train = x_train[:6000], y_train[:6000]
    keras.utils.set_random_seed(0)
    model = lenet5()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t = time.time()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=128, verbose=0)
    log(f"lenet5: trained {args.epochs} epochs in {time.time() - t:.0f} s")
    models, names = [model], ["lenet5"]
    analysis = kprune.analyze(model)
    for frac in args.ratios:
        pruned = kprune.remove_channels(model, l1_removal(model, frac, analysis, args.align), analysis)
        pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        if args.finetune_epochs:
            pruned.fit(x_train, y_train, epochs=args.finetune_epochs, batch_size=128, verbose=0)
        models.append(pruned)
        names.append(f"lenet5-l1-{int(frac * 100)}{_suffix(args)}")
    n_eval = args.eval_samples or len(x_test)
    return dict(models=models, names=names, eval_data=(x_test, y_test),
                representative_data=x_train[:500], eval_samples=n_eval,
                weights="trained on Fashion-MNIST ({} epochs), each pruned model fine-tuned "
                        "{} epoch(s)".format(args.epochs, args.finetune_epochs),
                calibration="500 Fashion-MNIST training images")


def _random_family(name, build, input_shape, args):
    keras.utils.set_random_seed(0)
    model = build()
    rng = np.random.default_rng(0)
    x = rng.random((64,) + input_shape, dtype=np.float32)
    recalibrate_batchnorm(model, x)
    analysis = kprune.analyze(model)
    models, names = [model], [name]
    for frac in args.ratios:
        models.append(kprune.remove_channels(model, l1_removal(model, frac, analysis, args.align), analysis))
        names.append(f"{name}-l1-{int(frac * 100)}{_suffix(args)}")
    calib = rng.random((200,) + input_shape, dtype=np.float32)
    return dict(models=models, names=names, eval_data=None, representative_data=calib,
                eval_samples=None,
                weights="random (He/Glorot init), BatchNorm statistics set from one "
                        "forward pass on uniform [0,1) inputs; latency/size/arena only",
                calibration="200 synthetic uniform [0,1) inputs")


def resnet_family(args, log):
    _, resnet20 = _zoo()
    return _random_family("resnet20", lambda: resnet20(input_shape=(32, 32, 3)),
                          (32, 32, 3), args)


def mobilenet_family(args, log):
    def build():
        return keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3),
                                              weights=None, classes=10)
    return _random_family("mobilenetv2-0.35-96", build, (96, 96, 3), args)


FAMILIES = {"lenet5": (lenet_family, 10000), "resnet20": (resnet_family, 1000),
            "mobilenetv2": (mobilenet_family, 2000)}


# ---------------------------------------------------------------- invoke floor

def invoke_floor(args):
    """LiteRT latency of a 1-op model: the fixed per-invoke cost (Python binding
    and interpreter dispatch) that no pruning can remove."""
    inp = keras.Input((4,))
    tiny = keras.Model(inp, keras.layers.Dense(4)(inp))
    flats = [to_tflite(tiny), to_tflite(tiny, "int8",
                                        representative_data=np.random.rand(20, 4))]
    f32, i8 = litert.interleaved_latency(flats, num_threads=args.threads, warmup=50,
                                         runs=max(200, args.runs_floor), rounds=args.rounds)
    return {"float32": f32.to_dict(), "int8": i8.to_dict()}


def merge(args, files, command):
    """Combines the families of several result files (e.g. one run per model)
    into one result; each family keeps the command that produced it."""
    merged = None
    for path in files:
        with open(path) as f:
            part = json.load(f)
        for fam in part["families"]:
            fam["command"] = re.sub(r"\s--out\s+\S+", "", part["command"])
            fam.pop("graph_floor", None)
        if merged is None:
            merged = part
        else:
            merged["families"].extend(part["families"])
    merged["command"] = "; ".join(dict.fromkeys(f["command"] for f in merged["families"]))
    _write(merged, args, merged["command"])


def render_only(args, command):
    """Rewrites the markdown (and verdict) from an existing result file."""
    with open(os.path.join(args.out, _stem(args) + ".json")) as f:
        results = json.load(f)
    for fam in results["families"]:
        fam.pop("graph_floor", None)  # written by an earlier version, not interleaved
    _write(results, args, results.get("command", command))


# ---------------------------------------------------------------- report

def _row_dict(base, m):
    c = Comparison(base, m)
    r = c.ratios
    row = {"name": m.name, "params": m.params, "macs": m.macs,
           "mac_ratio": r["macs"], "flatbuffer_bytes": m.flatbuffer_bytes,
           "tflm_arena_bytes": m.tflm_arena_bytes,
           "tflm_min_arena_bytes": m.tflm_min_arena_bytes,
           "arena_ratio": r["tflm_arena_bytes"],
           "peak_activation_bytes_int8": m.peak_activation_bytes_int8,
           "latency_ms": {k: v.median_ms for k, v in m.latency.items()},
           "latency_p90_ms": {k: v.p90_ms for k, v in m.latency.items()},
           "latency_speedup": r["latency_speedup"],
           "speedup_over_mac_ratio": r["speedup_over_mac_reduction"],
           "accuracy": m.accuracy, "notes": m.notes}
    if m is not base:
        row["target_0.8_met"] = {k: (v is not None and v >= TARGET)
                                 for k, v in r["speedup_over_mac_reduction"].items()}
    if "keras_float32" in m.accuracy and "tflm_int8" in m.accuracy:
        d = m.accuracy["tflm_int8"] - m.accuracy["keras_float32"]
        row["int8_minus_float"] = d
        row["int8_within_0.5pt"] = abs(d) <= ACC_TARGET
    return row


def _kib(b):
    return "-" if b is None else f"{b / 1024:.1f}"


def _n(v):
    return "-" if v is None else f"{v:,}"


def _f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def markdown(results, args, command):
    lines = ["## Edge deployment: LiteRT and TFLite-Micro", "",
             "From a pruned `.keras` to firmware sources and a before/after table in two "
             "calls:", "",
             "```python",
             "kprune.export.to_micro(\"pruned.keras\", \"pruned_model\", \"firmware/src\",",
             "                       representative_data=x_train[:200])  # .tflite, .cc, .h",
             "```",
             "```",
             "kprune-bench pruned.keras --compare original.keras --data fashion_mnist "
             "--out bench_out",
             "```", "",
             f"Command: `{command}`", "",
             f"Machine: {results['machine']}; LiteRT (ai_edge_litert {results['litert_version']}, "
             f"XNNPACK CPU delegate) with **{args.threads} thread**, batch 1; TFLite-Micro "
             f"{results['tflm_version']} Python runtime (reference kernels, recording "
             f"allocator). The CPU was shared with other jobs during the run; every family's "
             f"models were timed interleaved ({args.rounds} rounds) to spread that load evenly.",
             "",
             "Pruning: **L1-norm of the producers' kernels per dependency group** "
             "(sum |w| over all axes but the output-channel axis, summed over a group's "
             "producers), the lowest 30 / 50 / 70 percent of every group's channels removed "
             "with `kprune.remove_channels` (one shot, uniform per group)"
             + (f"; kept channels of groups wider than {args.align} rounded to a multiple of "
                f"{args.align} (`--align {args.align}`)" if args.align > 1 else "")
             + ". MAC ratio = "
             "original MACs / pruned MACs (`kprune.profile`); speedup = original median "
             "latency / pruned median latency; *speedup / MAC* is the fraction of the "
             "physical limit realized (target >= 0.8).", "",
             f"Per-invoke floor of the Python binding (1-op model, same settings): float32 "
             f"{results['invoke_floor']['float32']['median_ms'] * 1000:.1f} us, int8 "
             f"{results['invoke_floor']['int8']['median_ms'] * 1000:.1f} us median.", ""]
    for fam in results["families"]:
        lines += [f"### {fam['family']}", ""]
        if fam.get("command") and fam["command"] != command:
            lines += [f"Command: `{fam['command']}`", ""]
        if fam.get("run_note"):
            lines += [fam["run_note"], ""]
        lines += [
                  f"Weights: {fam['weights']}. int8 calibration: {fam['calibration']}. "
                  f"Latency runs per model and mode: {fam['runs']}.", "",
                  "| model | params | MACs | MAC ratio | float32 KiB | dynamic KiB | float16 KiB "
                  "| int8 KiB | TFLM arena B (min working) | arena ratio "
                  "| f32 median ms (p90) | f32 speedup | f32 speedup/MAC "
                  "| int8 median ms (p90) | int8 speedup | int8 speedup/MAC |",
                  "|" + "---|" * 16]
        for row in fam["rows"]:
            fb = row["flatbuffer_bytes"]
            lat, p90 = row["latency_ms"], row["latency_p90_ms"]
            sp, frac = row["latency_speedup"], row["speedup_over_mac_ratio"]

            def cell_frac(mode):
                v = frac.get(mode)
                if row["name"] == fam["rows"][0]["name"] or v is None:
                    return "-"
                return f"{v:.2f} {'yes' if v >= TARGET else '**no**'}"
            lines.append(
                f"| {row['name']} | {row['params']:,} | {row['macs']:,} | "
                f"{_f(row['mac_ratio'])}x | {_kib(fb.get('float32'))} | {_kib(fb.get('dynamic'))} | "
                f"{_kib(fb.get('float16'))} | {_kib(fb.get('int8'))} | "
                f"{_n(row['tflm_arena_bytes'])} ({_n(row['tflm_min_arena_bytes'])}) | "
                f"{_f(row['arena_ratio'])}x | "
                f"{_f(lat.get('float32'), '{:.3f}')} ({_f(p90.get('float32'), '{:.3f}')}) | "
                f"{_f(sp.get('float32'))}x | {cell_frac('float32')} | "
                f"{_f(lat.get('int8'), '{:.3f}')} ({_f(p90.get('int8'), '{:.3f}')}) | "
                f"{_f(sp.get('int8'))}x | {cell_frac('int8')} |")
        acc_rows = [r for r in fam["rows"] if "int8_minus_float" in r]
        if acc_rows:
            n = fam["eval_samples"]
            lines += ["", f"Top-1 on the Fashion-MNIST test set ({n:,} images): Keras float32 "
                          f"vs the int8 flatbuffer run through TFLite-Micro (and LiteRT).", "",
                      "| model | Keras float32 | TFLM int8 | LiteRT int8 | int8 - float | within 0.5 pt |",
                      "|---|---|---|---|---|---|"]
            for r in acc_rows:
                a = r["accuracy"]
                lines.append(f"| {r['name']} | {100 * a['keras_float32']:.2f}% | "
                             f"{100 * a['tflm_int8']:.2f}% | {100 * a['litert_int8']:.2f}% | "
                             f"{100 * r['int8_minus_float']:+.2f} pt | "
                             f"{'yes' if r['int8_within_0.5pt'] else '**no**'} |")
        notes = sorted({n for r in fam["rows"] for n in r["notes"]})
        if notes:
            lines += [""] + [f"Note: {n}" for n in notes]
        lines.append("")
    lines += ["### Verdict", ""] + results["verdict"] + [""]
    if results.get("analysis"):  # a written reading of the figures, kept across re-renders
        lines += ["### Reading", ""] + results["analysis"] + [""]
    return "\n".join(lines)


def verdict(results):
    out = []
    for fam in results["families"]:
        for row in fam["rows"][1:]:
            met = row.get("target_0.8_met", {})
            parts = [f"{mode} {row['speedup_over_mac_ratio'][mode]:.2f} "
                     f"({'meets' if ok else 'misses'} 0.8)" for mode, ok in met.items()]
            acc = ""
            if "int8_within_0.5pt" in row:
                acc = (f"; int8 top-1 {100 * row['int8_minus_float']:+.2f} pt vs float "
                       f"({'within' if row['int8_within_0.5pt'] else 'outside'} 0.5 pt)")
            out.append(f"- {row['name']}: MAC ratio {row['mac_ratio']:.2f}x, speedup/MAC "
                       + ", ".join(parts) + acc)
        base = fam["rows"][0]
        if "int8_within_0.5pt" in base:
            out.append(f"- {base['name']} (unpruned): int8 top-1 "
                       f"{100 * base['int8_minus_float']:+.2f} pt vs float "
                       f"({'within' if base['int8_within_0.5pt'] else 'outside'} 0.5 pt)")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few runs, small data")
    p.add_argument("--models", default="lenet5,resnet20,mobilenetv2")
    p.add_argument("--ratios", default="0.3,0.5,0.7", help="fractions of channels removed")
    p.add_argument("--threads", type=int, default=1, help="LiteRT threads (default 1)")
    p.add_argument("--runs-scale", type=float, default=1.0,
                   help="multiplies the per-family timed runs (10000/1000/2000)")
    p.add_argument("--rounds", type=int, default=10, help="interleaving rounds")
    p.add_argument("--epochs", type=int, default=3, help="LeNet-5 training epochs")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=0,
                   help="LeNet-5 test images for accuracy (0 = all 10,000)")
    p.add_argument("--quantizations", default="float32,dynamic,float16,int8")
    p.add_argument("--align", type=int, default=1,
                   help="round kept channels of each group to a multiple of this (1 = off)")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="combine the families of these result files into the output")
    p.add_argument("--render-only", action="store_true",
                   help="only rewrite the markdown from an existing JSON result")
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)
    args.ratios = [float(r) for r in args.ratios.split(",")]
    if args.quick:
        args.runs_scale = min(args.runs_scale, 0.05)
        args.rounds = min(args.rounds, 2)
        args.epochs = min(args.epochs, 1)
        args.eval_samples = args.eval_samples or 300
    args.runs_floor = int(2000 * args.runs_scale)
    command = "python benchmarks/edge.py " + " ".join(argv if argv is not None else sys.argv[1:])
    os.makedirs(args.out, exist_ok=True)
    start = time.time()

    def log(msg):
        print(f"[{time.time() - start:6.0f} s] {msg}", flush=True)

    if args.merge:
        merge(args, args.merge, command)
        return
    if args.render_only:
        render_only(args, command)
        return
    import ai_edge_litert
    import tflite_micro
    results = {"command": command.strip(), "threads": args.threads,
               "machine": f"{platform.processor() or platform.machine()}, "
                          f"{_cpu_name()}, {os.cpu_count()} logical CPUs",
               "litert_version": getattr(ai_edge_litert, "__version__", "?"),
               "tflm_version": getattr(tflite_micro, "__version__", "?"),
               "target_speedup_over_mac": TARGET, "families": []}
    results["invoke_floor"] = invoke_floor(args)
    log(f"invoke floor: {results['invoke_floor']['float32']['median_ms'] * 1000:.1f} us f32")
    quantizations = [q.strip() for q in args.quantizations.split(",")]
    for key in [m.strip() for m in args.models.split(",")]:
        build, base_runs = FAMILIES[key]
        fam = build(args, log)
        runs = max(20, int(base_runs * args.runs_scale))
        log(f"{key}: built {len(fam['models'])} models, measuring ({runs} runs each)")
        ms = measure_many(fam["models"], fam["names"], eval_data=fam["eval_data"],
                          representative_data=fam["representative_data"],
                          quantizations=quantizations, latency_modes=("float32", "int8"),
                          num_threads=args.threads, warmup=max(5, runs // 10), runs=runs,
                          rounds=args.rounds, eval_samples=fam["eval_samples"])
        rows = [_row_dict(ms[0], m) for m in ms]
        results["families"].append({
            "family": key, "weights": fam["weights"], "calibration": fam["calibration"],
            "runs": runs, "eval_samples": ms[0].eval_samples, "rows": rows,
            "measurements": [m.to_dict() for m in ms]})
        for row in rows:
            log(f"  {row['name']}: MAC ratio {_f(row['mac_ratio'])}, speedup "
                f"{ {k: round(v, 2) for k, v in row['latency_speedup'].items() if v} }, "
                f"arena {row['tflm_arena_bytes']}, acc {row['accuracy']}")
        _write(results, args, command)  # partial results after every family
    log("done")
    _write(results, args, command)


def _write(results, args, command):
    results["verdict"] = verdict(results)
    stem = _stem(args)
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(markdown(results, args, command.strip()))


def _stem(args):
    stem = "edge_quick" if args.quick else "edge"
    return stem + (f"_align{args.align}" if args.align > 1 else "")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
