"""Cost of the dedicated activation-recording pass vs a plain model.predict.

ResNet-20 (16/32/64) on 10,000 Fashion-MNIST images (28x28x1): times
``kprune.scoring.recording.record_activations`` (statistics of every prunable group's
post-activation tensors, reduced in-graph, accumulated in float64) and
``model.predict`` over the same data and batch size, interleaved, in one run.
Reports wall time and process CPU time (user + system of this process, which
other users of a shared machine do not inflate); the ratio uses the minimum
over repeats, the estimator least disturbed by contention (goal: <= 1.2).

Usage:
    python benchmarks/recording_overhead.py [--samples 10000] [--repeats 3] [--quick]
Writes benchmarks/results/recording.json and recording.md.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

import kprune  # noqa: E402
from kprune.datasets import load_fashion_mnist  # noqa: E402
from kprune.scoring.recording import record_activations  # noqa: E402
from kprune.zoo import resnet20  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.repeats = 1000, 1
    (x, _), _ = load_fashion_mnist()
    x = x[: args.samples]
    keras.utils.set_random_seed(0)
    model = resnet20(input_shape=(28, 28, 1))
    groups = kprune.dependency_groups(model)
    # Warm-up: trace both functions once.
    model.predict(x[: args.batch_size * 2], batch_size=args.batch_size, verbose=0)
    record_activations(model, x[: args.batch_size * 2], groups=groups, batch_size=args.batch_size)
    runs = {"predict": lambda: model.predict(x, batch_size=args.batch_size, verbose=0),
            "record": lambda: record_activations(model, x, groups=groups,
                                                 batch_size=args.batch_size, apoz=False),
            "record_apoz": lambda: record_activations(model, x, groups=groups,
                                                      batch_size=args.batch_size, apoz=True)}
    runs["record_apoz"]()  # trace the second reducer too
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            result = fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
            if k != "predict":
                assert result.count == len(x)
    stats = result
    n_points = sum(len(p) for p in stats.points.values())
    out = {"model": "resnet20 (16/32/64), input 28x28x1", "params": int(model.count_params()),
           "samples": len(x), "batch_size": args.batch_size, "repeats": args.repeats,
           "groups": len(groups), "recorded_tensors": n_points,
           "wall_s": wall, "cpu_s": cpu, "goal_ratio": 1.2, "quick": args.quick}
    for k in ("record", "record_apoz"):
        out[f"{k}_ratio_wall_min"] = min(wall[k]) / min(wall["predict"])
        out[f"{k}_ratio_wall_median"] = statistics.median(wall[k]) / statistics.median(wall["predict"])
        out[f"{k}_ratio_cpu_min"] = min(cpu[k]) / min(cpu["predict"])
        out[f"{k}_ratio_cpu_median"] = statistics.median(cpu[k]) / statistics.median(cpu["predict"])
    out["ratio"] = out["record_ratio_cpu_min"]
    out["meets_goal"] = out["ratio"] <= 1.2
    os.makedirs(RESULTS, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    with open(os.path.join(RESULTS, f"recording{suffix}.json"), "w") as f:
        json.dump(out, f, indent=1)
    fmt = lambda ts: ", ".join(f"{t:.2f}" for t in ts)  # noqa: E731
    names = {"predict": "model.predict",
             "record": "record_activations (mean, mean**p: IAP's pass)",
             "record_apoz": "record_activations(apoz=True) (+ zero counts)"}
    md = ["# Activation recording overhead", "",
          f"{out['model']}, {out['params']:,} parameters; {out['samples']:,} Fashion-MNIST "
          f"images, batch {out['batch_size']}; {out['groups']} prunable groups, "
          f"{out['recorded_tensors']} recorded tensors (per-position sums, float64 "
          f"accumulation); {out['repeats']} interleaved repeats in one process. CPU = user + "
          "system time of this process (other users of the shared machine do not inflate it).",
          "", "| pass | CPU min (s) | CPU all runs (s) | wall min (s) | wall all runs (s) | "
          "ratio CPU (min / median) | ratio wall (min / median) |", "|---|---|---|---|---|---|---|"]
    for k in runs:
        ratio_c = ratio_w = "1 (reference)"
        if k != "predict":
            ratio_c = f"{out[k + '_ratio_cpu_min']:.2f} / {out[k + '_ratio_cpu_median']:.2f}"
            ratio_w = f"{out[k + '_ratio_wall_min']:.2f} / {out[k + '_ratio_wall_median']:.2f}"
        md.append(f"| {names[k]} | {min(cpu[k]):.2f} | {fmt(cpu[k])} | {min(wall[k]):.2f} | "
                  f"{fmt(wall[k])} | {ratio_c} | {ratio_w} |")
    md += ["", f"Goal <= 1.2x of predict for the dedicated pass (IAP statistics, CPU min): "
           f"**{out['ratio']:.2f}** -> {'met' if out['meets_goal'] else 'NOT met'}. Counting "
           f"zeros for APoZ as well: {out['record_apoz_ratio_cpu_min']:.2f}."]
    with open(os.path.join(RESULTS, f"recording{suffix}.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
