"""Device budgets as targets of IAP / AIAP on real data: LeNet-5 /
Fashion-MNIST pruned to a TFLite-Micro arena budget.

For each seed, the LeNet-5 baseline of `benchmarks/quality.py` (5 epochs,
55k train / 5k val / 10k test) is pruned with ``target_arena_bytes`` set to a
fraction of its own int8 arena and ``complexity_aware='memory'``; the
returned model's arena is measured on the TFLite-Micro runtime and its top-1
on the 10k test images. Methods are interleaved per seed.

    python benchmarks/budget_targets.py                     # 3 seeds, 0.75 and 0.5
    python benchmarks/budget_targets.py --seeds 0 --fractions 0.5 --quick

Writes benchmarks/results/budget_targets.{json,md}.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import kprune  # noqa: E402
from kprune.atomic import atomic_write_text  # noqa: E402
from kprune.data import as_data, evaluate_accuracy  # noqa: E402
from kprune.methods.device_budget import TOLERANCE, DeviceBudget  # noqa: E402
from quality import baseline, dataset_config  # noqa: E402

RESULTS = os.path.join(HERE, "results")


def run(args):
    cfg = dataset_config("lenet_fmnist", args.quick)
    test = as_data((cfg["xt"], cfg["yt"]))
    rows = []
    for seed in args.seeds:
        base = baseline(cfg, "lenet_fmnist", seed, args.work_dir, args.quick)
        base_acc = evaluate_accuracy(base, test)
        arena0 = DeviceBudget("arena_bytes", 1).estimate(base)
        for fraction in args.fractions:
            target = int(fraction * arena0)
            for method in args.methods:
                t0 = time.time()
                res = kprune.prune(
                    base, method, train_data=(cfg["x"], cfg["y"]),
                    val_data=(cfg["xv"], cfg["yv"]), epochs=1, rounds=args.rounds,
                    target_arena_bytes=target, complexity_aware="memory",
                    batch_size=cfg["batch_size"], seed=seed)
                final = res.final
                retrained = sum(1 for e in res.history[1:]
                                if e["status"] in ("accepted", "violated", "nan_discarded"))
                row = {"seed": seed, "method": method, "fraction": fraction,
                       "target_bytes": target, "baseline_arena": arena0,
                       "arena_estimate": final["arena_bytes"],
                       "arena_measured": final.get("arena_bytes_measured"),
                       "within": bool((1 - TOLERANCE) * target
                                      <= final.get("arena_bytes_measured", -1) <= target),
                       "params": final["params"], "baseline_params": res.baseline["params"],
                       "macs": final["macs"], "baseline_macs": res.baseline["macs"],
                       "widths": final["widths"],
                       "test_drop": 100 * (evaluate_accuracy(res.model, test) - base_acc),
                       "epochs": cfg["base_epochs"] + retrained, "rounds": retrained,
                       "reason": res.reason, "time_s": time.time() - t0}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "widths"}), flush=True)
    return rows, cfg


def write(rows, cfg, command):
    os.makedirs(RESULTS, exist_ok=True)
    atomic_write_text(os.path.join(RESULTS, "budget_targets.json"),
                      json.dumps({"command": command, "rows": rows}, indent=1))
    lines = ["## Device budgets as targets of IAP / AIAP (TFLite-Micro arena)", "",
             f"Command: `{command}`", "",
             "LeNet-5 / Fashion-MNIST (55k train, 5k val, 10k test; the 5-epoch baselines "
             "of the quality benchmark), pruned with `target_arena_bytes` = a fraction of "
             "the baseline's int8 arena and `complexity_aware='memory'`, 1 retraining epoch "
             "per round. 'measured' is the returned model's arena on the TFLite-Micro "
             "runtime; 'within' = measured in [0.9 N, N]. Test top-1 change: the returned "
             "model minus its baseline on the 10k test images (positive: better; the "
             "retraining rounds are extra training). Epochs = total training, baseline "
             "included. Mean over seeds (min-max). IAP's 10% rate per round over all "
             "units moves the arena slowly (only conv1's output sets LeNet-5's peak), so "
             "at half the arena it had not reached the budget after 15 rounds; AIAP's "
             "threshold, priced by the budget, lands in it, but half of LeNet-5's arena "
             "means about 2 of conv1's 6 filters, which costs 5-7 points.", "",
             "| method | budget | seeds | arena measured / budget | within | params "
             "compression | MACs reduction | test top-1 change (pt) | epochs |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["method"], r["fraction"]) for r in rows}, key=lambda k: (-k[1], k[0]))
    for method, fraction in keys:
        rs = [r for r in rows if r["method"] == method and r["fraction"] == fraction]
        ratio = [r["arena_measured"] / r["target_bytes"] for r in rs]
        comp = [r["baseline_params"] / r["params"] for r in rs]
        macs = [r["baseline_macs"] / r["macs"] for r in rs]
        drop = [r["test_drop"] for r in rs]
        ep = [r["epochs"] for r in rs]

        def fmt(v, f="{:.2f}"):
            return f"{f.format(np.mean(v))} ({f.format(min(v))} - {f.format(max(v))})"

        lines.append(f"| `{method}` | {fraction:.2f} x arena ({rs[0]['baseline_arena']:.0f} B) "
                     f"| {len(rs)} | {fmt(ratio, '{:.3f}')} | {sum(r['within'] for r in rs)}"
                     f"/{len(rs)} | {fmt(comp)}x | {fmt(macs)}x | {fmt(drop, '{:+.2f}')} | "
                     f"{fmt(ep, '{:.0f}')} |")
    atomic_write_text(os.path.join(RESULTS, "budget_targets.md"), "\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--fractions", type=lambda s: [float(v) for v in s.split(",")],
                   default=[0.75, 0.5])
    p.add_argument("--methods", type=lambda s: s.split(","), default=["iap", "aiap"])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "kprune_quality"),
                   help="baselines cache (shared with benchmarks/quality.py)")
    args = p.parse_args()
    rows, cfg = run(args)
    if not args.quick:
        write(rows, cfg, "python benchmarks/" + " ".join([os.path.basename(sys.argv[0])]
                                                          + sys.argv[1:]))


if __name__ == "__main__":
    main()
