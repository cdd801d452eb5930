"""Accuracy against measured int8 latency for the architectures of a
`benchmarks/quality.py` run (issue 20: drops at 1.5x / 2x / 3x LiteRT int8
and TFLite-Micro speedup).

Latency depends only on the architecture, not on the weights' values. So
every round's widths recorded by `quality.py` (its ``widths`` per point) are
rebuilt from the dataset's model (`kprune.remove_channels` of the last
channels of each dependency group, fresh weights), converted to int8
(`kprune.export.to_tflite`, 200 training images for calibration) and timed:
LiteRT (1 thread, XNNPACK; `kprune.runtime.litert.interleaved_latency`, all
architectures interleaved in the same rounds) and TFLite-Micro's reference
kernels (`kprune.runtime.tflm.interleaved_latency`). Beside them, the
**floor**: the same graph with one channel in every prunable group.

Each point of each run then gets a measured speedup (baseline ms / its ms)
per runtime, and the test-drop curves of `quality.py` are read at 1.5x / 2x /
3x speedup (interpolated in log(speedup) like the MAC levels, seed mean ±
std). Per round also: speedup / MAC reduction, and for LiteRT the fraction
of the attainable speedup ``t / (t_floor + (t - t_floor) / r)`` (t the
baseline's ms, r the MAC reduction).

Usage:
    python benchmarks/mac_latency.py --tag macs [--dataset lenet_fmnist] [--runs 400]
    python benchmarks/mac_latency.py --tag resnet_macs --dataset resnet20_fmnist
Writes benchmarks/results/latency_<tag>.json and .md.
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kprune  # noqa: E402
from kprune import datasets, zoo  # noqa: E402
from kprune.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402
from kprune.export import to_tflite  # noqa: E402
from quality import _cell  # noqa: E402  (the same table cell as quality.py's)
from kprune.runtime import litert, tflm  # noqa: E402

import quality  # noqa: E402  (at_level: the same interpolation as the MAC levels)

RESULTS = os.path.join(HERE, "results")
SPEED_LEVELS = (1.5, 2.0, 3.0)
MODELS = {"lenet_fmnist": zoo.lenet5,
          "resnet20_fmnist": lambda: zoo.resnet20(input_shape=(28, 28, 1))}


def at_widths(model, widths, groups=None):
    """`model` cut to `widths` ({layer: output channels}, as quality.py records
    them): each dependency group keeps its first channels. Groups none of
    whose producers is named keep their width."""
    removal = {}
    for g in groups or kprune.dependency_groups(model):
        named = [widths[p] for p in g.producers if p in widths]
        if not named or min(named) >= g.channels:
            continue
        w = max(int(min(named)), 1)
        for layer, idx in g.to_layer_indices(np.arange(w, g.channels)).items():
            removal.setdefault(layer, []).extend(int(i) for i in idx)
    return kprune.remove_channels(model, removal) if removal else model


def floor_widths(model):
    """{producer: 1} for every prunable group: the 1-channel floor."""
    return {p: 1 for g in kprune.dependency_groups(model) for p in g.producers}


def _key(widths):
    return json.dumps(sorted(widths.items()))


def load_runs(tag, dataset, variants=None, runs_dir=None):
    root = os.path.join(runs_dir or os.path.join(RESULTS, "quality_runs"), tag, dataset)
    runs = []
    for fn in sorted(os.listdir(root)):
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(root, fn)) as f:
            r = json.load(f)
        if variants and r["variant"] not in variants:
            continue
        runs.append(r)
    return runs


def measure_archs(dataset, widths_list, runs, tflm_runs, cache_dir):
    """{key: {'litert_ms', 'tflm_ms', 'macs'}} for each distinct widths dict,
    plus 'floor' (1 channel per group); all timed interleaved."""
    (x, _), _ = datasets.load_fashion_mnist()
    rep = x[:200]
    keras.utils.set_random_seed(0)
    base = MODELS[dataset]()
    groups = kprune.dependency_groups(base)
    archs = {_key(w): w for w in widths_list}
    archs["floor"] = floor_widths(base)
    keys, flats, macs = list(archs), [], {}
    os.makedirs(cache_dir, exist_ok=True)
    for i, k in enumerate(keys):
        m = at_widths(base, archs[k], groups)
        macs[k] = int(kprune.profile(m).macs)
        # Converted flatbuffers are cached by dataset and widths (a rerun
        # with more timing runs converts nothing).
        path = os.path.join(cache_dir, hashlib.sha1((dataset + k).encode()).hexdigest()
                            + ".tflite")
        if os.path.exists(path):
            with open(path, "rb") as f:
                flats.append(f.read())
        else:
            flats.append(to_tflite(m, "int8", representative_data=rep))
            atomic_write_bytes(path, flats[-1])
        print(f"converted {i + 1}/{len(keys)}", flush=True)
    lit = litert.interleaved_latency(flats, runs=runs, rounds=5)
    # TFLite-Micro aborts on LeNet-5 with one unit in both hidden Dense
    # layers ("Input index 1 out of range"); the floor is then timed with 2
    # channels in the last group (else in every group) there, and the JSON
    # says so (tflm_widths).
    mic = tflm.interleaved_latency(flats[:-1], runs=tflm_runs, warmup=2)
    out = {k: {"litert_ms": a.median_ms, "tflm_ms": b.median_ms if b else None,
               "macs": macs[k]} for k, a, b in zip(keys, lit, mic + [None])}
    fl = out["floor"]
    fl["widths"] = fl["tflm_widths"] = archs["floor"]
    last = list(archs["floor"])[-1]
    for i, fw in enumerate((archs["floor"], {**archs["floor"], last: 2},
                            {p: 2 for p in archs["floor"]})):
        flat = flats[-1] if i == 0 else to_tflite(at_widths(base, fw, groups), "int8",
                                                  representative_data=rep)
        try:
            fl["tflm_ms"] = tflm.interleaved_latency([flat], runs=tflm_runs, warmup=2)[0].median_ms
            fl["tflm_widths"] = fw
            break
        except tflm.TFLMError as e:
            fl["tflm_error_at_1"] = str(e).splitlines()[0][:200]
    return out


def annotate(runs, timed):
    """Adds each point's measured latency and speedups (in place)."""
    floor = timed["floor"]
    for r in runs:
        base = timed[_key(r["points"][0]["widths"])]
        for p in r["points"]:
            t = timed[_key(p["widths"])]
            p["litert_ms"], p["tflm_ms"] = t["litert_ms"], t["tflm_ms"]
            p["litert_speedup"] = base["litert_ms"] / t["litert_ms"]
            p["tflm_speedup"] = base["tflm_ms"] / t["tflm_ms"]
            rr = p["macs_compression"]
            tb, tf_ = base["litert_ms"], floor["litert_ms"]
            p["litert_attainable"] = tb / (tf_ + (tb - tf_) / rr)
    return runs


def summarize(runs):
    by = {}
    for r in runs:
        by.setdefault(r["variant"], []).append(r)
    out = {}
    for spec, rs in by.items():
        s = {"seeds": sorted(r["seed"] for r in rs)}
        for rt in ("litert", "tflm"):
            cells = {}
            for lv in SPEED_LEVELS:
                vals = [quality.at_level(r["points"], lv, f"{rt}_speedup") for r in rs]
                got = [v for v in vals if v is not None]
                cells[str(lv)] = None if len(got) < len(rs) else {
                    "mean": float(np.mean([v[0] for v in got])),
                    "std": float(np.std([v[0] for v in got])),
                    "interpolated": any(v[1] for v in got),
                    "budget_epochs": float(np.mean([v[2] for v in got])),
                    "reached_by": len(got)}
            s[rt] = cells
            s[f"max_{rt}_speedup"] = float(np.mean([max(p[f"{rt}_speedup"] for p in r["points"])
                                                     for r in rs]))
        out[spec] = s
    return out


def report(out):
    fl, b = out["floor"], out["baseline"]
    lines = [f"# Accuracy at measured int8 latency ({out['tag']}, {out['dataset']})", "",
             f"Command: `{out['command']}`", "",
             "Architectures of the `quality.py` runs under "
             f"`benchmarks/results/quality_runs/{out['tag']}/{out['dataset']}`, rebuilt, "
             "converted to int8 and timed interleaved in one process (LiteRT: 1 thread, "
             f"XNNPACK, median of {out['litert_runs']} invokes; TFLite-Micro: reference kernels, "
             f"median of {out['tflm_runs']}).", "",
             f"Baseline: LiteRT {b['litert_ms']:.4f} ms, TFLite-Micro {b['tflm_ms']:.4f} ms, "
             f"{b['macs']:,} MACs. **Floor** (1 channel per group): LiteRT "
             f"{fl['litert_ms']:.4f} ms, TFLite-Micro {fl['tflm_ms']:.4f} ms"
             + (f" (widths {'/'.join(str(v) for v in fl['tflm_widths'].values())}: TFLite-Micro"
                " aborts on the 1-channel graph)"
                if fl.get("tflm_error_at_1") else "") + f", {fl['macs']:,} MACs.",
             "", "Test top-1 change (points, mean ± std over seeds) at measured speedup; "
             "`~` = interpolated in log(speedup); (N ep) = epochs incl. baseline:", ""]
    for rt, title in (("litert", "LiteRT int8"), ("tflm", "TFLite-Micro int8")):
        lines += [f"{title} (floor {fl[rt + '_ms']:.4f} ms = "
                  f"{b[rt + '_ms'] / fl[rt + '_ms']:.2f}x at most):", "",
                  "| variant | seeds | " + " | ".join(f"{lv}x" for lv in SPEED_LEVELS)
                  + " | mean max speedup |", "|---|---|" + "---|" * (len(SPEED_LEVELS) + 1)]
        for spec, s in out["summary"].items():
            lines.append(f"| `{spec}` | {len(s['seeds'])} | "
                         + " | ".join(_cell(s[rt][str(lv)]) for lv in SPEED_LEVELS)
                         + f" | {s['max_' + rt + '_speedup']:.2f}x |")
        lines.append("")
    lines += ["Per round (seed 0): MAC reduction, measured speedups, LiteRT / attainable "
              "(t / (t_floor + (t - t_floor) / r)), TFLite-Micro / MAC reduction:", "",
              "| variant | round | widths | MACs x | LiteRT ms | LiteRT x (/ attainable) "
              "| TFLM ms | TFLM x (/ MACs) | test drop |", "|---|---|---|---|---|---|---|---|---|"]
    for r in out["runs"]:
        if r["seed"] != min(x["seed"] for x in out["runs"] if x["variant"] == r["variant"]):
            continue
        for p in r["points"][1:]:
            w = "/".join(str(v) for v in list(p["widths"].values())[:-1]) \
                if len(p["widths"]) <= 6 else f"{len(p['widths'])} layers"
            lines.append(
                f"| `{r['variant']}` s{r['seed']} | {p['round']} | {w} | "
                f"{p['macs_compression']:.2f}x | {p['litert_ms']:.4f} | "
                f"{p['litert_speedup']:.2f}x ({p['litert_speedup'] / p['litert_attainable']:.2f}) | "
                f"{p['tflm_ms']:.4f} | {p['tflm_speedup']:.2f}x "
                f"({p['tflm_speedup'] / p['macs_compression']:.2f}) | {p['test_drop']:+.2f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tag", default="macs")
    ap.add_argument("--dataset", default="lenet_fmnist", choices=sorted(MODELS))
    ap.add_argument("--variants", nargs="*", default=None)
    ap.add_argument("--runs", type=int, default=400, help="LiteRT invokes per architecture")
    ap.add_argument("--tflm-runs", type=int, default=30)
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "kprune_latency"))
    ap.add_argument("--runs-dir", default=None,
                    help="where the quality.py runs are (default benchmarks/results/quality_runs; "
                         "e.g. another checkout's, while its runs are still going)")
    args = ap.parse_args()
    runs = load_runs(args.tag, args.dataset, args.variants, args.runs_dir)
    if not runs:
        raise SystemExit(f"no runs for tag {args.tag!r} / {args.dataset}")
    widths = [p["widths"] for r in runs for p in r["points"]]
    timed = measure_archs(args.dataset, widths, args.runs, args.tflm_runs, args.cache_dir)
    annotate(runs, timed)
    out = {"tag": args.tag, "dataset": args.dataset, "litert_runs": args.runs,
           "tflm_runs": args.tflm_runs,
           "command": "python benchmarks/mac_latency.py " + " ".join(
               f"'{a}'" if " " in a or ":" in a else a for a in sys.argv[1:]),
           "floor": timed["floor"], "baseline": timed[_key(runs[0]["points"][0]["widths"])],
           "summary": summarize(runs),
           "runs": [{"variant": r["variant"], "seed": r["seed"], "points": r["points"]}
                    for r in runs]}
    name = f"latency_{args.tag}" + ("" if args.dataset == "lenet_fmnist" else f"_{args.dataset}")
    md = report(out)
    atomic_write_text(os.path.join(RESULTS, name + ".json"), json.dumps(out, indent=1))
    atomic_write_text(os.path.join(RESULTS, name + ".md"), md)
    print(md)


if __name__ == "__main__":
    main()
