"""What a pruning run costs against the training it needs (issue 20, item 5).

Protocol: R rounds x 1 epoch of ILP and IAP (``target='none'``: every round
runs) against a plain ``model.fit`` of the same R epochs with a validation
after each epoch, same batch size, same data. Repetitions are interleaved
(plain, ilp, iap, plain, ilp, iap, ...) in one process, so the machine's load
hits every variant alike; the figure is the median wall time per variant and
its ratio to plain training. Every variant starts from the same trained
weights (a short baseline fit, not timed), after an untimed short fit that
warms TensorFlow's shared kernels.

The per-phase seconds of each pruning run (``PruneResult.phase_times``:
scoring, rebuild, training, evaluation, measurement, checkpoint) say where the
extra time goes; ``other`` is the wall time outside those phases (argument
checks, data preparation, the result). Beside the medians: each repetition's
own ratio (its variants ran back to back; the spread shows the machine's
drift) and the ratio of process CPU seconds (all threads), which other jobs
move less than wall time.

Models: LeNet-5 on 20k Fashion-MNIST images; ResNet-20 (`kprune.zoo.resnet20`,
28x28x1, 16/32/64) on 8k (``--resnet-images`` to shrink on a slow machine).

Usage:
    python benchmarks/run_cost.py [--models lenet5 resnet20] [--rounds 3] [--reps 2]
                                  [--resnet-images 8000] [--profile resnet20:iap]
Writes benchmarks/results/run_cost.json and run_cost.md (with ``--profile
model:method``: also run_cost_profile_<model>_<method>.txt, the cProfile
top functions of one pruning run by cumulative time).
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

import kprune  # noqa: E402
from kprune import zoo  # noqa: E402
from kprune.atomic import atomic_write_text  # noqa: E402
from kprune.datasets import load_fashion_mnist  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
METHODS = ("ilp", "iap")
PHASES = ("scoring", "rebuild", "training", "tracing", "bn_recalibration", "evaluation",
          "measurement", "checkpoint")


def model_config(name, args):
    if name == "lenet5":
        return dict(build=zoo.lenet5, images=args.lenet_images, lr=1e-3,
                    label="LeNet-5 / Fashion-MNIST")
    if name == "resnet20":
        return dict(build=lambda: zoo.resnet20(input_shape=(28, 28, 1)),
                    images=args.resnet_images, lr=2e-3,
                    label="ResNet-20 (28x28x1) / Fashion-MNIST")
    raise SystemExit(f"unknown model {name!r}; use lenet5 or resnet20")


def compiled(build, lr, weights=None):
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if weights is not None:
        model.set_weights(weights)
    return model


def variants(cfg, weights, data, args):
    (x, y), (xv, yv) = data

    def plain():
        model = compiled(cfg["build"], cfg["lr"], weights)
        model.fit(x, y, batch_size=args.batch_size, epochs=args.rounds,
                  validation_data=(xv, yv), verbose=0)
        return None

    def pruning(method):
        def run():
            model = compiled(cfg["build"], cfg["lr"], weights)
            return kprune.prune(model, method, train_data=(x, y), val_data=(xv, yv),
                                epochs=1, rounds=args.rounds, target="none", seed=0,
                                batch_size=args.batch_size)
        return run

    return {"plain": plain, **{m: pruning(m) for m in METHODS}}


def profile(fn, path, top=45):
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).sort_stats("cumulative")
    stats.print_stats(top)
    atomic_write_text(path, buf.getvalue())
    prof.dump_stats(path[:-4] + ".prof")  # for pstats queries (callers of a function)
    print(f"wrote {path}")


def measure(name, args):
    cfg = model_config(name, args)
    (x, y), _ = load_fashion_mnist()
    n, n_val = cfg["images"], max(500, cfg["images"] // 10)
    data = ((x[n_val:n_val + n], y[n_val:n_val + n]), (x[:n_val], y[:n_val]))
    keras.utils.set_random_seed(0)
    base = compiled(cfg["build"], cfg["lr"])
    base.fit(*data[0], batch_size=args.batch_size, epochs=1, verbose=0)  # a trained start
    weights = base.get_weights()
    runs = variants(cfg, weights, data, args)
    if args.profile:
        pm, meth = args.profile.split(":")
        if pm == name:
            runs[meth]()  # warm-up
            profile(runs[meth], os.path.join(RESULTS, f"run_cost_profile_{name}_{meth}.txt"))
            if args.profile_only:
                return None
    # warm-up: TensorFlow's shared kernels and caches (a short plain fit)
    warm = compiled(cfg["build"], cfg["lr"], weights)
    warm.fit(x[:1024], y[:1024], batch_size=args.batch_size, epochs=1,
             validation_data=(x[:256], y[:256]), verbose=0)
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}  # process CPU seconds (all threads): less moved by neighbours
    phases = {m: [] for m in METHODS}
    removed = {m: [] for m in METHODS}
    for rep in range(args.reps):
        for k, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            res = fn()
            dt = time.perf_counter() - t0
            wall[k].append(dt)
            cpu[k].append(time.process_time() - c0)
            if res is not None:
                pt = dict(res.phase_times)
                pt["other"] = max(0.0, dt - sum(pt.values()))
                phases[k].append(pt)
                removed[k].append([dict(e.get("removed_by_group") or {})
                                   for e in res.history])
            print(f"{name} rep {rep} {k}: {dt:.1f} s ({cpu[k][-1]:.1f} CPU s)", flush=True)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    # each repetition's own ratio (its runs ran back to back): the spread says
    # how much the machine's drift moves one figure
    paired = {m: [a / b for a, b in zip(wall[m], wall["plain"])] for m in METHODS}
    out = {"model": cfg["label"], "train_images": n, "val_images": n_val,
           "rounds": args.rounds, "epochs_per_round": 1, "batch_size": args.batch_size,
           "reps": args.reps, "wall_s": wall, "median_s": med,
           "ratio": {m: med[m] / med["plain"] for m in METHODS},
           "cpu_s": cpu, "median_cpu_s": med_cpu,
           "cpu_ratio": {m: med_cpu[m] / med_cpu["plain"] for m in METHODS},
           "paired_ratios": paired,
           "phase_s_median": {m: {p: statistics.median(r.get(p, 0.0) for r in phases[m])
                                  for p in PHASES + ("other",)} for m in METHODS},
           # Identical across repetitions when the run is deterministic.
           "same_removal_every_rep": {m: all(r == removed[m][0] for r in removed[m])
                                      for m in METHODS}}
    return out


def table(results, args):
    lines = ["| model (train images) | plain fit + val | ILP | IAP | ILP / plain | IAP / plain "
             "| per-rep ILP / IAP ratios | CPU-time ILP / IAP ratio |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        m = r["median_s"]
        spread = " / ".join(", ".join(f"{v:.2f}" for v in r["paired_ratios"][k])
                            for k in METHODS)
        cpu = " / ".join(f"{r['cpu_ratio'][k]:.2f}x" for k in METHODS)
        lines.append(f"| {r['model']} ({r['train_images']:,}) | {m['plain']:.1f} s | "
                     f"{m['ilp']:.1f} s | {m['iap']:.1f} s | **{r['ratio']['ilp']:.2f}x** | "
                     f"**{r['ratio']['iap']:.2f}x** | {spread} | {cpu} |")
    lines += ["", "Median seconds per phase of the pruning runs (`PruneResult.phase_times`; "
              "`other`: outside the phases):", "",
              "| model | method | " + " | ".join(PHASES + ("other",)) + " |",
              "|---|---|" + "---:|" * (len(PHASES) + 1)]
    for r in results:
        for meth in METHODS:
            p = r["phase_s_median"][meth]
            lines.append(f"| {r['model'].split(' ')[0]} | {meth} | " +
                         " | ".join(f"{p[k]:.2f}" for k in PHASES + ("other",)) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["lenet5", "resnet20"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lenet-images", type=int, default=20000)
    ap.add_argument("--resnet-images", type=int, default=8000)
    ap.add_argument("--profile", default=None,
                    help="model:method to run once under cProfile (e.g. resnet20:iap)")
    ap.add_argument("--profile-only", action="store_true",
                    help="with --profile: only the profile, no timing")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    args = ap.parse_args()
    if args.profile and (":" not in args.profile or
                         args.profile.split(":")[1] not in METHODS):
        raise SystemExit("--profile takes model:method, method one of ilp, iap")
    results = [r for r in (measure(m, args) for m in args.models) if r is not None]
    if not results:
        return
    cmd = "python benchmarks/run_cost.py " + " ".join(sys.argv[1:])
    stem = "run_cost" + (f"_{args.tag}" if args.tag else "")
    doc = {"command": cmd.strip(), "protocol": __doc__.split("Usage:")[0].strip(),
           "kprune": os.path.dirname(os.path.abspath(kprune.__file__)), "results": results}
    atomic_write_text(os.path.join(RESULTS, stem + ".json"), json.dumps(doc, indent=1))
    md = (f"# Run cost: pruning vs plain training\n\nCommand: `{cmd.strip()}`\n\n"
          f"{args.rounds} rounds x 1 epoch, batch {args.batch_size}, median of "
          f"{args.reps} interleaved repetitions.\n\n" + table(results, args) + "\n")
    atomic_write_text(os.path.join(RESULTS, stem + ".md"), md)
    print(md)


if __name__ == "__main__":
    main()
