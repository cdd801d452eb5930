"""Where the int8 time of LeNet-5 goes, op by op, before and after pruning
(issue 20, item 3: latency that follows MACs).

For LeNet-5 (trained 1 epoch on 10k Fashion-MNIST images; latency does not
depend on the weights' values) and variants pruned by L1 at the same fraction
of every group (`kprune.remove_channels`), `kprune.bench.op_profile` times
every op of the int8 flatbuffer on LiteRT (1 thread, XNNPACK) and
TFLite-Micro (reference kernels), next to the per-invoke floor (an empty
model). Then a **width staircase**: for conv1 and conv2 alone (one-op int8
flatbuffers cut from LeNet-5 variants whose only change is that layer's
width), the op's latency at every width, which shows whether a channel count
that misses the kernel's vector width costs as much as the next multiple.

Usage:
    python benchmarks/op_profile.py [--fractions 0.5 0.75] [--runs 400]
Writes benchmarks/results/op_profile.json and op_profile.md.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kprune  # noqa: E402
from kprune import zoo  # noqa: E402
from kprune.atomic import atomic_write_text  # noqa: E402
from kprune.bench import op_profile  # noqa: E402
from kprune.datasets import load_fashion_mnist  # noqa: E402
from kprune.export import to_tflite  # noqa: E402
from kprune.runtime import litert, tflm  # noqa: E402
from kprune.runtime.op_profile import split_ops  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def l1_pruned(model, fraction):
    """Remove `fraction` of every prunable group by its producers' L1 norm."""
    removal = {}
    for g in kprune.dependency_groups(model):
        k = min(int(round(fraction * g.channels)), g.channels - 1)
        if k <= 0:
            continue
        score = np.zeros(g.channels)
        for p in g.producers:
            w = model.get_layer(p).get_weights()[0]
            score += np.abs(w).reshape(-1, w.shape[-1]).sum(0)[:g.channels]
        for layer, idx in g.to_layer_indices(np.argsort(score)[:k]).items():
            removal.setdefault(layer, []).extend(idx)
    return kprune.remove_channels(model, removal)


def with_width(model, layer, width):
    """`model` with only `layer` cut to `width` output channels (the first ones)."""
    n = model.get_layer(layer).get_weights()[0].shape[-1]
    return kprune.remove_channels(model, {layer: list(range(width, n))}) if width < n else model


def profiles(flat, runs):
    return {"litert": op_profile(flat, "litert", runs=runs).to_dict(),
            "tflm": op_profile(flat, "tflm", runs=max(5, runs // 40)).to_dict()}


def staircase(model, layer, widths, op_index, rep, runs):
    """Latency of `layer`'s op alone at every width, both runtimes."""
    flats = []
    for w in widths:
        ops, _ = split_ops(to_tflite(with_width(model, layer, w), "int8",
                                     representative_data=rep))
        flats.append(ops[op_index]["flatbuffer"])
    lit = litert.interleaved_latency(flats, runs=runs)
    mic = tflm.interleaved_latency(flats, runs=max(5, runs // 40), warmup=2)
    return [{"width": w, "litert_ms": a.median_ms, "tflm_ms": b.median_ms}
            for w, a, b in zip(widths, lit, mic)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.75])
    ap.add_argument("--runs", type=int, default=400)
    args = ap.parse_args()
    (x, y), _ = load_fashion_mnist()
    keras.utils.set_random_seed(0)
    model = zoo.lenet5()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:10000], y[:10000], epochs=1, batch_size=128, verbose=0)
    rep = x[:200]
    variants = {"lenet5": model}
    for f in args.fractions:
        variants[f"lenet5-l1-{int(f * 100)}"] = l1_pruned(model, f)
    out = {"command": "python benchmarks/op_profile.py " + " ".join(sys.argv[1:]),
           "variants": {}}
    base_macs = kprune.profile(model).macs
    for name, m in variants.items():
        flat = to_tflite(m, "int8", representative_data=rep)
        prof = profiles(flat, args.runs)
        out["variants"][name] = {"macs": int(kprune.profile(m).macs),
                                 "mac_reduction": base_macs / kprune.profile(m).macs,
                                 "widths": {layer.name: layer.get_weights()[0].shape[-1]
                                            for layer in m.layers if layer.get_weights()},
                                 **prof}
        print(name, {k: round(v["whole_ms"], 4) for k, v in prof.items()}, flush=True)
    out["staircase"] = {"conv1": staircase(model, "conv1", list(range(1, 7)), 0, rep, args.runs),
                        "conv2": staircase(model, "conv2", list(range(1, 17)), 2, rep,
                                           args.runs)}
    atomic_write_text(os.path.join(RESULTS, "op_profile.json"), json.dumps(out, indent=1))
    atomic_write_text(os.path.join(RESULTS, "op_profile.md"), report(out))
    print(report(out))


def report(out):
    base = out["variants"]["lenet5"]
    lines = [f"# Per-op int8 latency of LeNet-5 before and after pruning\n",
             f"Command: `{out['command'].strip()}`\n",
             "Speedup of the whole int8 model against MAC reduction (floor: an empty "
             "model's invoke):\n",
             "| model | widths | MAC reduction | LiteRT ms (floor) | LiteRT speedup (/ MACs) "
             "| TFLM ms (floor) | TFLM speedup (/ MACs) |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, v in out["variants"].items():
        cells = []
        for rt in ("litert", "tflm"):
            s = base[rt]["whole_ms"] / v[rt]["whole_ms"]
            cells += [f"{v[rt]['whole_ms']:.4f} ({v[rt]['floor_ms']:.4f})",
                      f"{s:.2f}x ({s / v['mac_reduction']:.2f})"]
        widths = "/".join(str(w) for w in list(v["widths"].values())[:-1])
        lines.append(f"| {name} | {widths} | {v['mac_reduction']:.2f}x | " + " | ".join(cells)
                     + " |")
    for rt in ("litert", "tflm"):
        lines += ["", f"Per op on {rt} (ms; ms per million MACs in brackets):", "",
                  "| op | " + " | ".join(out["variants"]) + " |",
                  "|---|" + "---:|" * len(out["variants"])]
        names = [f"{o['index']} {o['op']}" for o in base[rt]["ops"]]
        for i, label in enumerate(names):
            row = []
            for v in out["variants"].values():
                o = v[rt]["ops"][i]
                per = "" if o["ms_per_mmac"] is None else f" ({o['ms_per_mmac']:.3f})"
                row.append(f"{o['ms']:.4f}{per}")
            lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines += ["", "Width staircase: one op alone (int8, ms), every other layer as in "
              "LeNet-5:", "", "| layer | width | LiteRT ms | TFLM ms |", "|---|---:|---:|---:|"]
    for layer, rows in out["staircase"].items():
        for r in rows:
            lines.append(f"| {layer} | {r['width']} | {r['litert_ms']:.4f} | "
                         f"{r['tflm_ms']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
