"""Where the int8 time of LeNet-5 and ResNet-20 goes, op by op, before and
after pruning (issue 20, item 3: latency that follows MACs).

For LeNet-5 (trained 1 epoch on 10k Fashion-MNIST images; latency does not
depend on the weights' values) and variants pruned by L1 at the same fraction
of every group (`kprune.remove_channels`), `kprune.bench.op_profile` times
every op of the int8 flatbuffer on LiteRT (1 thread, XNNPACK) and
TFLite-Micro (reference kernels), next to the per-invoke floor (an empty
model). Then a **width staircase**: for conv1 and conv2 alone (one-op int8
flatbuffers cut from LeNet-5 variants whose only change is that layer's
width), the op's latency at every width, which shows whether a channel count
that misses the kernel's vector width costs as much as the next multiple.

With ``--model resnet20`` (ResNet-20 on 28x28x1 inputs, as
``benchmarks/quality.py``'s resnet20_fmnist; fresh weights): the widths of
uniform cuts (8/16/32 per stage: 50 % of every group, about 4x MACs; and
7/14/28, 9/18/36, off LiteRT's 8-channel tiles), the 1-channel floor, and
the architectures of `quality.py` runs (``--archs-from`` a directory of their
JSONs: each run's round nearest 4x MACs and its last round), each also with
its widths rounded to the step widths of kprune's own LiteRT latency
staircase (`kprune.methods.complexity.group_step_widths`, what
``latency_steps`` rounds to), are timed whole (all interleaved in one
process) on both runtimes; the per-op profiles of the original, the 50 % cut
and the floor are summed by op class (stem, 3x3 convolutions per stage, 1x1
projections, ADD, head); a least-squares cost model of TFLite-Micro's
reference convolution (ms = a * MACs + b * taps + c * outputs, ``taps`` =
output elements x kernel positions) fitted to those convolutions says what
one kernel position costs in MACs; and the width staircase of one op per
stage shows where LiteRT's tiles are.

Usage:
    python benchmarks/op_profile.py [--fractions 0.5 0.75] [--runs 400]
    python benchmarks/op_profile.py --model resnet20 [--archs-from DIR ...] [--runs 400]
    python benchmarks/op_profile.py --prune-archs benchmarks/results/quality_runs
        (IAP / AIAP toward 8x MACs with latency_steps off and on, architectures only)
Writes benchmarks/results/op_profile.json and op_profile.md (LeNet-5), or
op_profile_resnet20.json and .md.
"""

import argparse
import json
import math
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mac_latency import at_widths, floor_widths  # noqa: E402

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
    ap.add_argument("--model", default="lenet5", choices=("lenet5", "resnet20"))
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.75])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--tflm-runs", type=int, default=15,
                    help="resnet20: TFLite-Micro invokes per whole model")
    ap.add_argument("--archs-from", nargs="*", default=[],
                    help="resnet20: directories of quality.py run JSONs (resnet20_fmnist) "
                         "whose architectures are timed too")
    ap.add_argument("--prune-archs", default=None, metavar="DIR",
                    help="resnet20: first prune ResNet-20 with IAP and AIAP toward 8x MACs "
                         "(target macs_reduction=0.875), with and without latency_steps=True, "
                         "on --prune-images Fashion-MNIST images (architectures only), "
                         "writing quality.py-like run JSONs into DIR/<tag>/resnet20_fmnist "
                         "that --archs-from then reads")
    ap.add_argument("--prune-images", type=int, default=2000)
    args = ap.parse_args()
    if args.prune_archs:
        prune_archs(args.prune_archs, args.prune_images)
        if args.model != "resnet20":
            return None
    if args.model == "resnet20":
        return resnet_main(args)
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


# ------------------------------------------------------------------ ResNet-20

def _uptime():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def resnet_uniform(groups, w1, w2, w3):
    """{producer: width}: every group of stage k (the stem's joins stage 1) cut to w_k."""
    out = {}
    for g in groups:
        stage = 1 if g.name.startswith(("stem", "s1")) else int(g.name[1])
        for p in g.producers:
            out[p] = (w1, w2, w3)[stage - 1]
    return out


def quality_archs(directory):
    """[(label, widths)] from `quality.py` run JSONs (``quality_runs/<tag>/<dataset>``):
    of each run, the round nearest 4x MACs and the last round."""
    out = []
    for fn in sorted(os.listdir(directory)):
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(directory, fn)) as f:
            r = json.load(f)
        pts = [p for p in r.get("points", [])[1:] if p.get("widths")]
        if not pts:
            continue
        near = min(pts, key=lambda p: abs(math.log(p["macs_compression"] / 4.0)))
        for p in [near] + ([pts[-1]] if pts[-1] is not near else []):
            tag = os.path.basename(os.path.dirname(os.path.normpath(directory)))
            out.append((f"{tag}: {r['variant']} s{r['seed']} r{p['round']}",
                        dict(p["widths"])))
    return out


def group_widths(groups, widths):
    """{group name: width} of a {producer: width} dict (missing: unchanged)."""
    out = {}
    for g in groups:
        named = [widths[p] for p in g.producers if p in widths]
        out[g.name] = int(min(named)) if named else int(g.channels)
    return out


def rounded_to_steps(groups, widths, steps):
    """`widths` with every group's width rounded to its latency step widths by
    kprune's own rule (`kprune.methods.selection.limit_removal` with
    ``steps``: the nearest step width, what ``latency_steps`` keeps)."""
    from kprune.methods.selection import limit_removal

    gw = group_widths(groups, widths)
    out = dict(widths)
    for g in groups:
        c, w = int(g.channels), gw[g.name]
        if w >= c or not steps.get(g.name):
            continue
        removed = limit_removal(np.arange(c, dtype=float), np.arange(c) >= w, c,
                                steps=steps[g.name])
        for p in g.producers:
            out[p] = c - len(removed)
    return out


def _op_class(o):
    """Op class of one profiled op of ResNet-20 (28x28x1)."""
    if o["op"] != "CONV_2D":
        return {"ADD": "ADD"}.get(o["op"], "MEAN + FC + SOFTMAX")
    if o["index"] == 0:
        return "stem 3x3 conv (1 input channel)"
    cin = o["inputs"][0][-1]
    n_out = int(np.prod(o["output"]))
    if o["macs"] == n_out * cin:
        return "1x1 projections"
    return f"stage {({28: 1, 14: 2, 7: 3})[o['output'][1]]} 3x3 convs"


CLASSES = ("stem 3x3 conv (1 input channel)", "stage 1 3x3 convs", "stage 2 3x3 convs",
           "stage 3 3x3 convs", "1x1 projections", "ADD", "MEAN + FC + SOFTMAX")


def by_class(prof):
    """{class: {'ms', 'macs'}} of one op profile dict."""
    out = {c: {"ms": 0.0, "macs": 0} for c in CLASSES}
    for o in prof["ops"]:
        c = out[_op_class(o)]
        c["ms"] += o["ms"]
        c["macs"] += o["macs"]
    return out


def conv_cost_fit(convs):
    """Least squares ms = a * MACs + b * taps + c * outputs over conv ops
    (``taps`` = output elements x kernel positions = MACs / input channels).
    Returns the coefficients in ns per unit and the worst relative error."""
    feats = np.array([[o["macs"], o["macs"] / o["inputs"][0][-1], np.prod(o["output"])]
                      for o in convs], dtype=float)
    ms = np.array([o["ms"] for o in convs])
    # relative least squares: every op weighs alike whatever its size
    coef, *_ = np.linalg.lstsq(feats / ms[:, None], np.ones(len(ms)), rcond=None)
    pred = feats @ coef
    return {"ns_per_mac": coef[0] * 1e6, "ns_per_tap": coef[1] * 1e6,
            "ns_per_output": coef[2] * 1e6, "n_ops": len(convs),
            "max_rel_error": float(np.max(np.abs(pred / ms - 1)))}


def _predict(fit, o):
    return (fit["ns_per_mac"] * o["macs"] + fit["ns_per_tap"] * o["macs"] / o["inputs"][0][-1]
            + fit["ns_per_output"] * np.prod(o["output"])) / 1e6


def resnet_staircase(base, groups, rep, layer, widths, op_indices, runs, tflm_runs):
    """One-op latency of `op_indices` (the op producing `layer`'s group and its
    consumer) with `layer`'s group at every width in `widths`."""
    rows = {w: {"width": w} for w in widths}
    flats = {i: [] for i in op_indices}
    for w in widths:
        ops, _ = split_ops(to_tflite(at_widths(base, {layer: w}, groups), "int8",
                                     representative_data=rep))
        if ops[op_indices[0]]["output"][-1] != w:
            raise RuntimeError(f"op {op_indices[0]} is not {layer} at width {w}")
        for i in op_indices:
            flats[i].append(ops[i]["flatbuffer"])
    for i in op_indices:
        lit = litert.interleaved_latency(flats[i], runs=runs)
        mic = tflm.interleaved_latency(flats[i], runs=tflm_runs, warmup=2)
        for w, a, b in zip(widths, lit, mic):
            rows[w][f"op{i}_litert_ms"] = a.median_ms
            rows[w][f"op{i}_tflm_ms"] = b.median_ms
            # a 1 ms invoke on a loaded machine: one preemption moves the median of a
            # few runs, not the minimum (the reference kernels are deterministic)
            rows[w][f"op{i}_tflm_min_ms"] = b.min_ms
    return {"layer": layer, "ops": list(op_indices), "rows": list(rows.values())}


def prune_archs(root, images, rounds=8):
    """ResNet-20 pruned by IAP and AIAP with ``target={'macs_reduction': 0.875}``,
    each with ``latency_steps`` off (the default for a MAC target) and on
    (the LiteRT staircase measured on this host): one run JSON per variant,
    in `quality.py`'s format (``variant``, ``seed``, ``points`` with
    ``round``, ``widths``, ``macs_compression``, ``val_accuracy``), under
    ``root/prune_archs/resnet20_fmnist``. A small budget (`images` training
    images, 1 epoch per round): the architectures are what is timed."""
    (x, y), _ = load_fashion_mnist()
    out_dir = os.path.join(root, "prune_archs", "resnet20_fmnist")
    os.makedirs(out_dir, exist_ok=True)
    n = int(images)
    for method in ("iap", "aiap"):
        for steps in (None, True):
            variant = f"{method}:target=macs 0.875" + (",latency_steps=True" if steps else "")
            keras.utils.set_random_seed(0)
            model = zoo.resnet20(input_shape=(28, 28, 1))
            model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
            model.fit(x[:n], y[:n], epochs=1, batch_size=128, verbose=0)
            base_macs = kprune.profile(model).macs
            r = kprune.prune(model, method, train_data=(x[:n], y[:n]),
                             val_data=(x[n:n + 500], y[n:n + 500]),
                             target={"macs_reduction": 0.875}, latency_steps=steps,
                             rounds=rounds, epochs=1, batch_size=128, seed=0)
            points = [{"round": e["round"], "widths": e["widths"], "macs": e["macs"],
                       "macs_compression": base_macs / e["macs"],
                       "val_accuracy": e["val_accuracy"]} for e in r.history]
            run = {"variant": variant, "seed": 0, "points": points,
                   "settings": {"images": n, "epochs_per_round": 1, "rounds": rounds}}
            fn = variant.replace(":", "_").replace(" ", "_").replace(",", "_") + "__s0.json"
            atomic_write_text(os.path.join(out_dir, fn), json.dumps(run, indent=1, default=float))
            print("pruned", variant, [round(p["macs_compression"], 2) for p in points],
                  flush=True)


def resnet_main(args):
    from kprune.methods.complexity.latency import group_step_widths
    from kprune.methods.device_budget import DeviceBudget

    load_before = _uptime()
    (x, _), _ = load_fashion_mnist()
    rep = x[:200]
    keras.utils.set_random_seed(0)
    base = zoo.resnet20(input_shape=(28, 28, 1))
    analysis = kprune.analyze(base)
    groups = list(analysis.groups)
    # kprune's LiteRT latency staircase of every group (what latency_steps rounds to)
    steps = group_step_widths(base, analysis, DeviceBudget("latency_ms", 1.0,
                                                           representative_data=rep))
    print("step widths", steps, flush=True)
    archs = [("resnet20", {}), ("uniform 8/16/32 (L1 50 %)", resnet_uniform(groups, 8, 16, 32)),
             ("uniform 7/14/28", resnet_uniform(groups, 7, 14, 28)),
             ("uniform 9/18/36", resnet_uniform(groups, 9, 18, 36))]
    for label, w in [a for d in args.archs_from for a in quality_archs(d)]:
        archs.append((label, w))
        r = rounded_to_steps(groups, w, steps)
        if group_widths(groups, r) != group_widths(groups, w):
            archs.append((label + " + latency steps", r))
    archs.append(("floor (1 channel per group)", floor_widths(base)))
    base_macs = kprune.profile(base).macs
    flats, rows, converted = [], [], {}
    for label, w in archs:
        key = json.dumps(group_widths(groups, w))
        if key not in converted:  # the same widths (e.g. ILP's uniform cuts) convert once
            m = at_widths(base, w, groups) if w else base
            converted[key] = (to_tflite(m, "int8", representative_data=rep),
                              int(kprune.profile(m).macs))
        flat, macs = converted[key]
        ops, _ = split_ops(flat)
        flats.append(flat)
        rows.append({"arch": label, "group_widths": group_widths(groups, w),
                     "macs": macs, "mac_reduction": base_macs / macs,
                     "ops": [o["op"] for o in ops]})
        print("converted", label, flush=True)
    lit = litert.interleaved_latency(flats, runs=args.runs, rounds=5)
    mic = tflm.interleaved_latency(flats, runs=args.tflm_runs, warmup=2)
    for r, a, b in zip(rows, lit, mic):
        r["litert_ms"], r["tflm_ms"] = a.median_ms, b.median_ms
        r["same_ops_as_original"] = r["ops"] == rows[0]["ops"]
    t0, fl = rows[0], rows[-1]
    for r in rows:
        for rt in ("litert", "tflm"):
            r[f"{rt}_speedup"] = t0[f"{rt}_ms"] / r[f"{rt}_ms"]
            tb, tf_ = t0[f"{rt}_ms"], fl[f"{rt}_ms"]
            r[f"{rt}_attainable"] = tb / (tf_ + (tb - tf_) / r["mac_reduction"])
    print("whole models timed", flush=True)
    profs = {}
    for label in ("resnet20", "uniform 8/16/32 (L1 50 %)", "floor (1 channel per group)"):
        flat = flats[[r["arch"] for r in rows].index(label)]
        profs[label] = {"litert": op_profile(flat, "litert", runs=args.runs).to_dict(),
                        "tflm": op_profile(flat, "tflm", runs=max(5, args.tflm_runs // 2))
                        .to_dict()}
        print("profiled", label, flush=True)
    convs = [o for p in profs.values() for o in p["tflm"]["ops"]
             if o["op"] == "CONV_2D" and o["ms"] > 0]
    fit = conv_cost_fit(convs)
    lenet = None
    lenet_json = os.path.join(RESULTS, "op_profile.json")
    if os.path.exists(lenet_json):
        with open(lenet_json) as f:
            lv = json.load(f)["variants"]
        lenet = [{"variant": n, "op": o["index"], "cin": o["inputs"][0][-1],
                  "measured_ms_per_mmac": o["ms_per_mmac"],
                  "predicted_ms_per_mmac": _predict(fit, o) / (o["macs"] / 1e6)}
                 for n, v in lv.items() for o in v["tflm"]["ops"] if o["op"] == "CONV_2D"]
    stairs = [resnet_staircase(base, groups, rep, "s1b1_conv1", list(range(1, 17)), (1, 2),
                               args.runs, args.tflm_runs),
              resnet_staircase(base, groups, rep, "s3b2_conv1", list(range(24, 41)), (24, 25),
                               args.runs, args.tflm_runs)]
    out = {"command": "python benchmarks/op_profile.py " + " ".join(sys.argv[1:]),
           "load_before": load_before, "load_after": _uptime(),
           "litert_runs": args.runs, "tflm_runs": args.tflm_runs,
           "step_widths": steps, "archs": rows, "profiles": profs,
           "classes": {k: {rt: by_class(v[rt]) for rt in v} for k, v in profs.items()},
           "tflm_conv_fit": fit, "lenet_tflm_conv_prediction": lenet, "staircase": stairs}
    atomic_write_text(os.path.join(RESULTS, "op_profile_resnet20.json"),
                      json.dumps(out, indent=1, default=float))
    md = resnet_report(out)
    atomic_write_text(os.path.join(RESULTS, "op_profile_resnet20.md"), md)
    print(md)


def _short(gw):
    vals = list(gw.values())
    return "/".join(str(v) for v in vals)


def resnet_report(out):
    rows, fl = out["archs"], out["archs"][-1]
    lines = ["# Per-op int8 latency of ResNet-20 (28x28x1) before and after pruning", "",
             f"Command: `{out['command'].strip()}`", "",
             f"Load average (2 cores, shared with training jobs): {out['load_before']} before, "
             f"{out['load_after']} after. Whole models timed interleaved in one process "
             f"(LiteRT: 1 thread, XNNPACK, median of {out['litert_runs']} invokes; "
             f"TFLite-Micro reference kernels, median of {out['tflm_runs']}); fresh weights "
             "(latency does not depend on their values).", "",
             "Widths per group, in the order of `kprune.analyze(resnet20)`: "
             + ", ".join(f"`{g}`" for g in rows[0]["group_widths"]) + ". LiteRT step widths "
             "that kprune's staircase measured (`group_step_widths`, what `latency_steps` "
             "rounds to): " + "; ".join(f"{g} {s}" for g, s in out["step_widths"].items())
             + ".", "",
             "Attainable = t / (t_floor + (t - t_floor) / r), r the MAC reduction, t_floor the "
             "1-channel-per-group model's time.", "",
             "| architecture | group widths | MAC reduction | LiteRT ms | LiteRT speedup "
             "(/ MACs, / attainable) | TFLM ms | TFLM speedup (/ MACs, / attainable) | "
             "same ops |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cells = []
        for rt in ("litert", "tflm"):
            s = r[f"{rt}_speedup"]
            cells += [f"{r[rt + '_ms']:.4f}",
                      f"{s:.2f}x ({s / r['mac_reduction']:.2f}, {s / r[rt + '_attainable']:.2f})"]
        lines.append(f"| `{r['arch']}` | {_short(r['group_widths'])} | "
                     f"{r['mac_reduction']:.2f}x | " + " | ".join(cells)
                     + f" | {'yes' if r['same_ops_as_original'] else 'NO'} |")
    lines += ["", f"Floor: LiteRT {fl['litert_ms']:.4f} ms, TFLite-Micro {fl['tflm_ms']:.4f} ms "
              f"({rows[0]['litert_ms'] / fl['litert_ms']:.1f}x / "
              f"{rows[0]['tflm_ms'] / fl['tflm_ms']:.1f}x below the original)."]
    names = list(out["profiles"])
    for rt, title in (("litert", "LiteRT"), ("tflm", "TFLite-Micro")):
        cl = out["classes"]
        lines += ["", f"Per op class on {title} (ops timed alone, summed; ms, ms per million "
                  "MACs in brackets), and the original / 50 % cut ratios of time and MACs:", "",
                  "| op class | " + " | ".join(names) + " | time ratio | MAC ratio |",
                  "|---|" + "---:|" * (len(names) + 2)]
        for c in CLASSES:
            cells = []
            for n in names:
                v = cl[n][rt][c]
                per = f" ({v['ms'] / (v['macs'] / 1e6):.3f})" if v["macs"] else ""
                cells.append(f"{v['ms']:.4f}{per}")
            a, b = cl[names[0]][rt][c], cl[names[1]][rt][c]
            tr = f"{a['ms'] / b['ms']:.2f}x" if b["ms"] > 0 else "-"
            mr = f"{a['macs'] / b['macs']:.2f}x" if b["macs"] else "-"
            lines.append(f"| {c} | " + " | ".join(cells) + f" | {tr} | {mr} |")
        tot = [out["profiles"][n][rt] for n in names]
        lines.append("| whole model (floor) | " + " | ".join(
            f"{p['whole_ms']:.4f} ({p['floor_ms']:.4f})" for p in tot)
            + f" | {tot[0]['whole_ms'] / tot[1]['whole_ms']:.2f}x | "
            f"{rows[0]['macs'] / rows[1]['macs']:.2f}x |")
    f = out["tflm_conv_fit"]
    lines += ["", "TFLite-Micro's reference convolution, fitted over the "
              f"{f['n_ops']} convolutions above: ms = {f['ns_per_mac']:.2f} ns x MACs + "
              f"{f['ns_per_tap']:.2f} ns x taps + {f['ns_per_output']:.2f} ns x outputs "
              "(taps = output elements x kernel positions; worst relative error "
              f"{f['max_rel_error']:.0%}). One kernel position costs "
              f"{f['ns_per_tap'] / f['ns_per_mac']:.1f} MACs and one output element "
              f"{f['ns_per_output'] / f['ns_per_mac']:.0f} MACs, so a convolution with c input "
              "channels runs at about (c + "
              f"{f['ns_per_tap'] / f['ns_per_mac']:.1f}) / c times the pure MAC rate."]
    if out["lenet_tflm_conv_prediction"]:
        lines += ["", "The same fit on LeNet-5's convolutions (`op_profile.json`, timed in an "
                  "earlier run), ms per million MACs:", "",
                  "| variant | op | input channels | measured | predicted |",
                  "|---|---:|---:|---:|---:|"]
        for r in out["lenet_tflm_conv_prediction"]:
            lines.append(f"| {r['variant']} | {r['op']} | {r['cin']} | "
                         f"{r['measured_ms_per_mmac']:.3f} | {r['predicted_ms_per_mmac']:.3f} |")
    for st in out["staircase"]:
        a, b = st["ops"]
        lines += ["", f"Width staircase of `{st['layer']}`'s group: op {a} (its output width) "
                  f"and op {b} (its input width) alone, ms (LiteRT median, TFLite-Micro "
                  "fastest invoke: a preemption on the loaded machine moves the median of "
                  "a 1 ms invoke):", "",
                  f"| width | op {a} LiteRT | op {b} LiteRT | op {a} TFLM | op {b} TFLM |",
                  "|---:|---:|---:|---:|---:|"]
        for r in st["rows"]:
            lines.append(f"| {r['width']} | {r[f'op{a}_litert_ms']:.4f} | "
                         f"{r[f'op{b}_litert_ms']:.4f} | {r[f'op{a}_tflm_min_ms']:.4f} | "
                         f"{r[f'op{b}_tflm_min_ms']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
