"""Benchmark: complexity-driven pruning (PA / FA / MA) against IAP.

For LeNet-5 and ResNet-20 on Fashion-MNIST, each mode at a few targets:
the architecture is chosen by complexity-weighted random draws and trained
from scratch (`kprune.prune(method='complexity')`); beside it, IAP's
train-prune-retrain on the same model and the same parameter / MAC budget
(the dense baseline trained first, then IAP rounds of pruning + one
retraining epoch until the budget is met). Reported: test accuracy,
parameter / MAC / peak-activation-memory reductions, total training time
(complexity: planning + training from scratch; IAP: baseline training + all
rounds), and, for every model, the int8 activation estimate of
`kprune.profile` beside the arena the TFLite-Micro interpreter allocates.

Writes benchmarks/results/complexity.{json,md,png}. The JSON is rewritten
after every run, so an interrupted benchmark leaves its partial results.

    python benchmarks/complexity.py            # full (~35 min on 2 shared cores)
    python benchmarks/complexity.py --quick    # smoke run, a couple of minutes
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kprune.datasets import load_fashion_mnist  # noqa: E402
from kprune.methods.complexity import resources  # noqa: E402
from kprune.core.profile import profile  # noqa: E402
from kprune.prune import prune  # noqa: E402
from kprune.data import as_data, evaluate_accuracy  # noqa: E402
from kprune.methods.trainer import fit_once  # noqa: E402
from kprune.zoo import lenet5, resnet20  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MODES = ("params", "macs", "memory")
MODE_LABEL = {"params": "PA", "macs": "FA", "memory": "MA"}
IAP_TARGET = {"params": "params_reduction", "macs": "macs_reduction"}
IAP_CALIBRATION = 1000  # samples IAP scores activations on, per round


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    ap.add_argument("--models", default="lenet5,resnet20")
    ap.add_argument("--lenet-targets", default="0.3,0.5,0.7")
    ap.add_argument("--resnet-targets", default="0.3,0.6")
    ap.add_argument("--lenet-epochs", type=int, default=3,
                    help="epochs from scratch (= IAP baseline epochs)")
    ap.add_argument("--resnet-epochs", type=int, default=2)
    ap.add_argument("--lenet-train-samples", type=int, default=55000)
    ap.add_argument("--resnet-train-samples", type=int, default=4000)
    ap.add_argument("--val-samples", type=int, default=5000)
    ap.add_argument("--test-samples", type=int, default=10000)
    ap.add_argument("--iap-rate", type=float, default=0.1,
                    help="IAP per-round percentile")
    ap.add_argument("--iap-epochs", type=int, default=1, help="IAP retraining epochs per round")
    ap.add_argument("--iap-rounds", type=int, default=0,
                    help="IAP rounds (0: 6 for LeNet-5, 5 for ResNet-20)")
    ap.add_argument("--batch-size", type=int, default=64, help="LeNet-5 batch size")
    ap.add_argument("--resnet-batch-size", type=int, default=32,
                    help="smaller batches: more steps for BatchNorm statistics")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-iap", action="store_true")
    ap.add_argument("--skip-tflm", action="store_true")
    ap.add_argument("--out", default=os.path.join(RESULTS, "complexity"))
    ap.add_argument("--equal-epochs", action="store_true",
                    help="then train the PA/FA architectures from scratch for as many "
                         "epochs as IAP used in all (added to the existing JSON)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the markdown and plot from the existing JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.lenet_targets, args.resnet_targets = "0.5", "0.5"
        args.lenet_epochs = args.resnet_epochs = 1
        args.lenet_train_samples, args.resnet_train_samples = 3000, 1000
        args.val_samples, args.test_samples = 500, 1000
        args.iap_rounds = 2
    return args


def build(name):
    model = lenet5() if name == "lenet5" else resnet20(input_shape=(28, 28, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def arena(model, rep_x):
    """profile's int8 activation estimate beside the TFLM arena (int8 model)."""
    from kprune.runtime.tflm import arena_report
    from kprune.export import to_tflite

    p = profile(model)
    flat = to_tflite(model, "int8", representative_data=rep_x)
    rep = arena_report(flat)
    return {"profile_peak_int8": int(p.peak_activation_bytes_int8),
            "profile_peak_after": p.peak_after,
            "tflm_total": int(rep.total_bytes), "tflm_head": int(rep.head_bytes),
            "tflm_tail": int(rep.tail_bytes), "flatbuffer_bytes": len(flat),
            "head_over_profile": rep.head_bytes / max(p.peak_activation_bytes_int8, 1)}


def reductions(model, base):
    m = resources(model)
    return m, {k: 1.0 - m[k] / base[k] for k in MODES}


def run_complexity(name, mode, target, epochs, entry, base, test, rep_x, common, args,
                   save, method="complexity"):
    """One complexity-driven run: plan, re-initialise, train from scratch."""
    keras.utils.set_random_seed(args.seed)
    t0 = time.time()
    res = prune(build(name), "complexity", mode=mode, target=target, epochs=epochs, **common)
    wall = time.time() - t0
    f = res.final
    m, red = reductions(res.model, base)
    acc = evaluate_accuracy(res.model, test)
    label = MODE_LABEL[mode] if method == "complexity" else f"{MODE_LABEL[mode]}, {epochs} ep"
    run = {"method": method, "mode": mode, "label": label, "epochs": epochs,
           "target": target, "test_accuracy": acc, "val_accuracy": f["val_accuracy"],
           **m, "reduction": red, "steps": len(f["steps"]) - 1,
           "plan_time_s": f["plan_time_s"], "train_time_s": f["train_time_s"],
           "total_time_s": f["plan_time_s"] + f["train_time_s"], "wall_s": wall,
           "widths": f["widths"]}
    if not args.skip_tflm and method == "complexity":
        a = arena(res.model, rep_x)
        run["tflm_total"] = a["tflm_total"]
        entry["arena"].append({"model": f"{MODE_LABEL[mode]} {target}", **a})
    entry["runs"].append(run)
    print(f"[{name}] {label} {target}: acc {acc:.4f} red "
          f"{ {k: round(v, 3) for k, v in red.items()} } "
          f"time {run['total_time_s']:.0f}s", flush=True)
    save()
    return run


def run_model(name, args, data, record, save):
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = data
    n_train = args.lenet_train_samples if name == "lenet5" else args.resnet_train_samples
    epochs = args.lenet_epochs if name == "lenet5" else args.resnet_epochs
    targets = [float(t) for t in (args.lenet_targets if name == "lenet5"
                                  else args.resnet_targets).split(",")]
    x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    test = as_data((x_te, y_te), 256)
    rep_x = x_tr[:200]
    batch_size = args.batch_size if name == "lenet5" else args.resnet_batch_size
    common = dict(train_data=(x_tr, y_tr), val_data=(x_val, y_val),
                  batch_size=batch_size, seed=args.seed)
    entry = record.setdefault(name, {"train_samples": int(len(x_tr)), "epochs": epochs,
                                     "targets": targets, "runs": [], "arena": []})
    base_model = build(name)
    base = resources(base_model)
    entry["original"] = base

    # Dense baseline: trained for the same epochs as the pruned models get.
    keras.utils.set_random_seed(args.seed)
    dense = build(name)
    t0 = time.time()
    out = fit_once(dense, as_data((x_tr, y_tr), batch_size), epochs,
                   dense.get_compile_config())
    dense_time = time.time() - t0
    dense_acc = evaluate_accuracy(dense, test)
    entry["dense"] = {"test_accuracy": dense_acc, "train_time_s": dense_time,
                      "losses": out.losses, **base}
    print(f"[{name}] dense: acc {dense_acc:.4f}, {dense_time:.0f}s", flush=True)
    if not args.skip_tflm:
        entry["arena"].append({"model": "original", **arena(dense, rep_x)})
    save()

    for mode in MODES:
        for target in targets:
            run_complexity(name, mode, target, epochs, entry, base, test, rep_x, common,
                           args, save)

    if args.skip_iap:
        return
    # IAP train-prune-retrain. Its rounds do not depend on which budget is
    # asked for (the same seeded percentile rounds), so one run with every
    # round checkpointed serves all budgets: for each budget, the first round
    # that meets it is exactly what kprune.prune(..., target=budget) returns.
    import tempfile

    from kprune.methods.checkpoint import Checkpointer

    keras.utils.set_random_seed(args.seed)
    start = keras.models.clone_model(dense)
    start.set_weights(dense.get_weights())
    start.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rounds = args.iap_rounds if args.iap_rounds else (6 if name == "lenet5" else 5)
    out_dir = tempfile.mkdtemp(prefix=f"kprune_iap_{name}_")
    t0 = time.time()
    res = prune(start, "iap", target="none", epochs=args.iap_epochs, rounds=rounds,
                rate=args.iap_rate, calibration_samples=IAP_CALIBRATION, out_dir=out_dir, **common)
    entry["iap_wall_s"] = time.time() - t0
    history = [e for e in res.history if e["status"] in ("baseline", "accepted")]
    entry["iap_history"] = [{k: e.get(k) for k in ("round", "params", "macs", "val_accuracy",
                                                  "time_s")} for e in history]
    ckpt = Checkpointer(out_dir)
    for mode, key in (("params", "params"), ("macs", "macs")):
        for target in targets:
            hit = [e for e in history[1:] if 1 - e[key] / history[0][key] >= target - 1e-12]
            reached = bool(hit)
            e = hit[0] if hit else history[-1]
            r = e["round"]
            model = ckpt.load_model(f"round_{r:03d}.keras")
            prune_time = sum(h["time_s"] for h in history[1:] if h["round"] <= r)
            m, red = reductions(model, base)
            acc = evaluate_accuracy(model, test)
            run = {"method": "iap", "mode": mode, "label": f"IAP {MODE_LABEL[mode]}",
                   "target": target, "target_reached": reached,
                   "test_accuracy": acc, "val_accuracy": e["val_accuracy"], **m,
                   "reduction": red, "rounds": r,
                   "baseline_train_time_s": dense_time, "prune_retrain_time_s": prune_time,
                   "total_time_s": dense_time + prune_time, "widths": e.get("widths")}
            entry["runs"].append(run)
            print(f"[{name}] IAP {mode} {target}: acc {acc:.4f} red "
                  f"{ {k: round(v, 3) for k, v in red.items()} } rounds {r} "
                  f"time {run['total_time_s']:.0f}s", flush=True)
            save()


def run_equal_epochs(name, args, data, record, save):
    """From scratch again, for as many epochs as the matching IAP run trained
    in all (baseline epochs + rounds x retraining epochs): same compute budget
    in epochs, to separate 'fewer epochs' from 'no inherited weights'."""
    entry = record[name]
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = data
    x_tr, y_tr = x_tr[:entry["train_samples"]], y_tr[:entry["train_samples"]]
    batch_size = args.batch_size if name == "lenet5" else args.resnet_batch_size
    common = dict(train_data=(x_tr, y_tr), val_data=(x_val, y_val),
                  batch_size=batch_size, seed=args.seed)
    test = as_data((x_te, y_te), 256)
    base = entry["original"]
    done = {(r["mode"], r["target"]) for r in entry["runs"] if r["method"] == "complexity_eq"}
    for r in [r for r in entry["runs"] if r["method"] == "iap"]:
        if (r["mode"], r["target"]) in done:
            continue
        epochs = entry["epochs"] + r["rounds"] * args.iap_epochs
        run_complexity(name, r["mode"], r["target"], epochs, entry, base, test, None,
                       common, args, save, method="complexity_eq")


def training_gmacs(run, entry, cfg):
    """Training compute in giga-MACs, independent of the CPU's load: a
    training pass costs 3x the forward MACs (forward + two backward products),
    evaluation and calibration passes 1x."""
    n, e, n_val = entry["train_samples"], entry["epochs"], cfg["val_samples"]
    if run["method"].startswith("complexity"):
        e = run.get("epochs", e)
        total = 3 * e * n * run["macs"] + n_val * run["macs"]
    else:
        hist = entry["iap_history"]
        total = 3 * e * n * hist[0]["macs"] + n_val * hist[0]["macs"]
        cfg_epochs = cfg["iap_epochs"]
        for prev, h in zip(hist, hist[1:]):
            if h["round"] > run["rounds"]:
                break
            total += (IAP_CALIBRATION * prev["macs"]
                      + 3 * cfg_epochs * n * h["macs"] + n_val * h["macs"])
    return total / 1e9


def markdown(record, args):
    eq = any(r["method"] == "complexity_eq" for e in record["models"].values()
             for r in e.get("runs", []))
    lines = ["## Complexity-driven pruning (PA / FA / MA) vs IAP",
             "",
             "Fashion-MNIST; command `python benchmarks/complexity.py"
             + (" --quick" if args.quick else "") + "`"
             + (", then `python benchmarks/complexity.py --equal-epochs` for the "
                "from-scratch runs with IAP's epoch count" if eq else "") + ". "
             "Complexity rows: architecture drawn by complexity share (seed "
             f"{args.seed}, step 10 % of a group), re-initialised and trained from "
             "scratch for the same epochs as the dense baseline. IAP rows: the dense "
             f"baseline, then rounds of IAP pruning (rate {args.iap_rate}) + "
             f"{args.iap_epochs} retraining epoch until the parameter (PA) or MAC (FA) "
             "budget is met. Reductions are of parameters, MACs (batch 1) and the "
             "float32 peak activation memory from `kprune.profile`; time is total "
             "training time (complexity: planning + training; IAP: baseline training "
             "+ every round's scoring, retraining and evaluation), on a 2-core CPU shared "
             "with other jobs (noisy); training GMAC counts the same work in "
             "multiply-accumulates (3x forward MACs per training sample, 1x per "
             "evaluated or calibration sample), which the load does not change.",
             ""]
    for name, e in record["models"].items():
        d = e.get("dense")
        if not d:
            continue
        lines += [f"### {name} ({e['train_samples']} training samples, {e['epochs']} epochs "
                  "from scratch)", "",
                  f"Dense baseline: test accuracy {d['test_accuracy']:.4f}, "
                  f"{d['params']:,} parameters, {d['macs']:,} MACs, "
                  f"{d['memory']:,} B peak activations (float32), trained in "
                  f"{d['train_time_s']:.0f} s.", "",
                  "| method | target | test acc | params (red.) | MACs (red.) | "
                  "peak act. B (red.) | steps/rounds | training time s | training GMAC |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in e["runs"]:
            red = r["reduction"]
            n = r.get("steps", r.get("rounds"))
            label = r["label"] if r["method"] == "complexity" else r["label"]
            tgt = f"{r['target']:.2f}" + ("" if r.get("target_reached", True) else " (not reached)")
            lines.append(
                f"| {label} | {tgt} | {r['test_accuracy']:.4f} | "
                f"{r['params']:,} ({100 * red['params']:.1f} %) | "
                f"{r['macs']:,} ({100 * red['macs']:.1f} %) | "
                f"{r['memory']:,} ({100 * red['memory']:.1f} %) | {n} | "
                f"{r['total_time_s']:.0f} | "
                f"{training_gmacs(r, e, record['config']):.1f} |")
        lines.append("")
    lines.append(comparison(record))
    return "\n".join(lines)


def comparison(record):
    """Complexity mode vs IAP at the same budget, and the arena check."""
    cfg = record["config"]
    lines = ["### Same budget: trained from scratch (PA / FA) vs IAP train-prune-retrain", "",
             "| model | budget | acc. complexity | acc. IAP | difference (points) | "
             "time complexity / IAP | GMAC complexity / IAP | acc. complexity with "
             "IAP's epochs |",
             "|---|---|---|---|---|---|---|---|"]
    for name, e in record["models"].items():
        runs = e.get("runs", [])
        for mode in ("params", "macs"):
            for target in e["targets"]:
                c = [r for r in runs if r["method"] == "complexity" and r["mode"] == mode
                     and r["target"] == target]
                i = [r for r in runs if r["method"] == "iap" and r["mode"] == mode
                     and r["target"] == target]
                if not (c and i):
                    continue
                eq = [r for r in runs if r["method"] == "complexity_eq" and r["mode"] == mode
                      and r["target"] == target]
                eq = (f"{eq[0]['test_accuracy']:.4f} ({eq[0]['epochs']} ep, "
                      f"{training_gmacs(eq[0], e, cfg) / training_gmacs(i[0], e, cfg):.2f}x "
                      "GMAC)") if eq else "-"
                c, i = c[0], i[0]
                what = "parameters" if mode == "params" else "MACs"
                note = "" if i.get("target_reached", True) else " (IAP: not reached)"
                lines.append(
                    f"| {name} | -{100 * target:.0f} % {what}{note} | {c['test_accuracy']:.4f} | "
                    f"{i['test_accuracy']:.4f} | "
                    f"{100 * (c['test_accuracy'] - i['test_accuracy']):+.2f} | "
                    f"{c['total_time_s'] / i['total_time_s']:.2f} | "
                    f"{training_gmacs(c, e, cfg) / training_gmacs(i, e, cfg):.2f} | {eq} |")
    lines.append("")
    lines += findings(record)
    arena_rows = [(name, a) for name, e in record["models"].items() for a in e.get("arena", [])]
    if arena_rows:
        lines += ["### Does `profile`'s memory estimate track the TFLite-Micro arena?", "",
                  "| model | variant | profile peak int8 B | TFLM head B (activations) | "
                  "head / profile | reduction vs original: profile | reduction: TFLM head | "
                  "TFLM tail B (persistent) | TFLM total B |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, e in record["models"].items():
            arenas = e.get("arena", [])
            if not arenas:
                continue
            o = arenas[0]
            for a in arenas:
                lines.append(
                    f"| {name} | {a['model']} | {a['profile_peak_int8']:,} | {a['tflm_head']:,} | "
                    f"{a['head_over_profile']:.2f} | "
                    f"{100 * (1 - a['profile_peak_int8'] / o['profile_peak_int8']):.1f} % | "
                    f"{100 * (1 - a['tflm_head'] / o['tflm_head']):.1f} % | "
                    f"{a['tflm_tail']:,} | {a['tflm_total']:,} |")
        lines.append("")
        for name, e in record["models"].items():
            ratios = [a["head_over_profile"] for a in e.get("arena", [])]
            if ratios:
                lines.append(f"- {name}: TFLM head / profile estimate "
                             f"{min(ratios):.2f}-{max(ratios):.2f}.")
        lines += [
            "",
            "Why they differ: `profile` counts the tensors alive at once in the Keras "
            "graph (int8: one byte per element) and keeps the model input alive for the "
            "whole run; the same live-set count on the converted int8 flatbuffer gives "
            "the same number for both original models (6,664 B and 38,416 B). TFLite "
            "Micro's arena head (its non-persistent activation planning) differs in two "
            "ways: (1) it reuses the input buffer once its last reader has run, so for the "
            "original LeNet-5 the head (5,888 B) is the estimate (6,664 B) minus the "
            "784-byte input plus 8 bytes of alignment; "
            "(2) its greedy planner places buffers largest-first, not in execution order, "
            "and can leave gaps: on ResNet-20 it reserves four 28x28x16 buffers "
            "(50,176 B) where at most three are alive at once, so the head is above the "
            "estimate and a pruning that lowers the live peak can lower the arena by a "
            "different fraction (see the two reduction columns). The persistent tail "
            "(tensor structs, quantization parameters, op data) is not in the estimate. "
            "The estimate tracks the live-tensor bound; the TFLM arena must be measured.",
            ""]
    return "\n".join(lines)


def findings(record):
    """Data-driven summary sentences (recomputed from the JSON)."""
    cfg = record["config"]
    out = ["Measured trade-offs (single seed; the CPU was shared, so compare the GMAC "
           "column rather than seconds where they disagree):", ""]
    for name, e in record["models"].items():
        runs = e.get("runs", [])
        pairs = []
        for mode in ("params", "macs"):
            for target in e["targets"]:
                c = [r for r in runs if r["method"] == "complexity" and r["mode"] == mode
                     and r["target"] == target]
                i = [r for r in runs if r["method"] == "iap" and r["mode"] == mode
                     and r["target"] == target]
                if c and i:
                    pairs.append((c[0], i[0]))
        if pairs:
            d = [100 * (c["test_accuracy"] - i["test_accuracy"]) for c, i in pairs]
            t = [c["total_time_s"] / i["total_time_s"] for c, i in pairs]
            g = [training_gmacs(c, e, cfg) / training_gmacs(i, e, cfg) for c, i in pairs]
            out.append(
                f"- {name}: at the same parameter / MAC budget, the architecture trained "
                f"from scratch scored {min(d):+.2f} to {max(d):+.2f} points (mean "
                f"{np.mean(d):+.2f}) against IAP, with {100 * min(g):.0f}-{100 * max(g):.0f} % "
                f"of IAP's training compute and {100 * min(t):.0f}-{100 * max(t):.0f} % of its "
                "wall time.")
        eq_pairs = []
        for c, i in pairs:
            eq = [r for r in runs if r["method"] == "complexity_eq" and r["mode"] == c["mode"]
                  and r["target"] == c["target"]]
            if eq:
                eq_pairs.append((eq[0], i))
        if eq_pairs:
            d = [100 * (c["test_accuracy"] - i["test_accuracy"]) for c, i in eq_pairs]
            g = [training_gmacs(c, e, cfg) / training_gmacs(i, e, cfg) for c, i in eq_pairs]
            out.append(
                f"- {name}: trained from scratch for as many epochs as IAP used in all, the "
                f"same architectures scored {min(d):+.2f} to {max(d):+.2f} points (mean "
                f"{np.mean(d):+.2f}) against IAP, with {100 * min(g):.0f}-{100 * max(g):.0f} % "
                "of its training compute (the pruned network is cheaper per epoch).")
        own = []
        for mode in MODES:
            rs = [r for r in runs if r["method"] == "complexity" and r["mode"] == mode]
            if rs:
                mean = {k: 100 * np.mean([r["reduction"][k] for r in rs]) for k in MODES}
                own.append(f"{MODE_LABEL[mode]} removed on average {mean['params']:.0f} % of "
                           f"parameters, {mean['macs']:.0f} % of MACs and "
                           f"{mean['memory']:.0f} % of peak activation memory")
        if own:
            out.append(f"- {name}, over its targets: " + "; ".join(own) + ".")
    out += [
        "",
        "Reading these numbers:",
        "",
        "- IAP removes a fixed percentile per round, so it usually overshoots the "
        "budget (compare the reduction columns): at the same budget its model is "
        "often smaller than the complexity-driven one.",
        "- The ResNet-20 budget (4,000 samples, 2 epochs) does not train a BatchNorm "
        "ResNet to convergence from scratch; single-seed accuracies there move by "
        "several points from run to run, while IAP starts from the trained dense "
        "model. The equal-epochs column separates 'fewer epochs' from 'no inherited "
        "weights'.",
        "- Memory mode (MA) also removes the most MACs: activations and MACs both "
        "concentrate in the early, high-resolution layers, and MA's draws land there "
        "more often than FA's. Parameter mode (PA) prunes the dense / late layers "
        "and leaves the activation peak almost untouched.",
        ""]
    return out


def plot(record, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, e in record["models"].items() if e.get("runs")]
    if not names:
        return
    fig, axes = plt.subplots(len(names), 3, figsize=(13, 3.8 * len(names)), squeeze=False)
    color = {"params": "tab:blue", "macs": "tab:orange", "memory": "tab:green"}
    series = {("complexity", "params"): ("PA (from scratch)", "o", "-", "full"),
              ("complexity", "macs"): ("FA (from scratch)", "s", "-", "full"),
              ("complexity", "memory"): ("MA (from scratch)", "^", "-", "full"),
              ("complexity_eq", "params"): ("PA, IAP's epochs", "o", ":", "none"),
              ("complexity_eq", "macs"): ("FA, IAP's epochs", "s", ":", "none"),
              ("iap", "params"): ("IAP, parameter budget", "x", "--", "full"),
              ("iap", "macs"): ("IAP, MAC budget", "+", "--", "full")}
    for row, name in zip(axes, names):
        e = record["models"][name]
        for ax, res, title in zip(row, MODES, ("parameters", "MACs", "peak activation memory")):
            for (method, mode), (label, marker, ls, fill) in series.items():
                pts = sorted((r["reduction"][res], r["test_accuracy"]) for r in e["runs"]
                             if r["method"] == method and r["mode"] == mode)
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot([100 * v for v in xs], ys, marker=marker, color=color[mode],
                            linestyle=ls, fillstyle=fill, label=label)
            ax.axhline(e["dense"]["test_accuracy"], color="grey", linestyle=":",
                       label="dense")
            ax.set_xlabel(f"{title} reduction (%)")
            ax.set_ylabel("test accuracy")
            ax.set_title(f"{name}: accuracy vs {title}")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_data(args):
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    perm = np.random.default_rng(args.seed).permutation(len(x_train))
    val_idx, tr_idx = perm[:args.val_samples], perm[args.val_samples:]
    return ((x_train[tr_idx], y_train[tr_idx]), (x_train[val_idx], y_train[val_idx]),
            (x_test[:args.test_samples], y_test[:args.test_samples]))


def main(argv=None):
    args = parse_args(argv)
    extend = (args.report_only or args.equal_epochs) and os.path.exists(args.out + ".json")
    if extend:  # continue from the recorded run, with its settings
        with open(args.out + ".json") as f:
            record = json.load(f)
        models, report_only = args.models, args.report_only
        args = argparse.Namespace(**{**record["config"], "equal_epochs": args.equal_epochs,
                                     "out": args.out})
        record["config"] = vars(args)
    elif args.report_only:
        raise SystemExit(f"--report-only: no {args.out}.json to report on")
    else:
        models, report_only = args.models, False
        record = {"config": vars(args), "machine": platform.platform(),
                  "cpu_count": os.cpu_count(), "keras": keras.__version__, "models": {},
                  "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)

    def save():
        record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        with open(args.out + ".json", "w") as f:
            json.dump(record, f, indent=1, default=float)
        with open(args.out + ".md", "w") as f:
            f.write(markdown(record, args) + "\n")

    if not report_only:
        data = load_data(args)
        for name in models.split(","):
            if not extend:
                run_model(name, args, data, record["models"], save)
            if args.equal_epochs and name in record["models"]:
                run_equal_epochs(name, args, data, record["models"], save)
        record["complete"] = True
        save()
    else:
        with open(args.out + ".md", "w") as f:
            f.write(markdown(record, args) + "\n")
    plot(record, args.out + ".png")
    print(markdown(record, args))


if __name__ == "__main__":
    main()
