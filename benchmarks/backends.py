"""Backends benchmark: the LeNet-5 / Fashion-MNIST quality protocol on JAX beside TensorFlow.

Runs ``benchmarks/quality.py``'s machinery (same data split, baseline,
pruning loop and validation-only decisions; ``../shared/EVALUATION.md``) once
per Keras backend, each in its own interpreter (``KERAS_BACKEND`` is fixed at
import), seeds 0, 1, 2 for every backend, and reports side by side:

* baseline test top-1 (each backend trains its own baseline from the seed);
* test top-1 drop at 2x / 4x parameter compression (interpolated in
  log(compression), as in quality.py) and of the model selected on validation;
* wall time of the pruning run (scoring + retraining, baseline excluded) and
  of the baseline training, per backend.

The backends run one after the other on the same machine, so wall times are
comparable when the machine is otherwise idle (the JSON records the load
average at the start of each run). ``--train`` / ``--rounds`` shrink the
budget; the report states the budget used.

Usage:
    python benchmarks/backends.py                       # 3 seeds, TF + JAX
    python benchmarks/backends.py --train 10000 --rounds 4 --backends tensorflow,jax,torch
    python benchmarks/backends.py --report              # rebuild the table
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
RUNS = os.path.join(RESULTS, "backends_runs")


def child(args):
    """One backend, one seed: baseline + pruning run -> RUNS/<backend>_s<seed>.json."""
    os.environ["KERAS_BACKEND"] = args.backend
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    import keras
    import numpy as np

    import quality
    from kprune.atomic import atomic_write_text

    assert keras.backend.backend() == args.backend
    cfg = quality.dataset_config("lenet_fmnist", False)
    n = args.train
    cfg.update(x=cfg["x"][:n], y=cfg["y"][:n], base_epochs=args.base_epochs)
    work = os.path.join(args.work_dir, args.backend)
    load = os.getloadavg()[0]
    cached = os.path.exists(os.path.join(
        work, f"lenet_fmnist_{n}_{args.base_epochs}_s{args.seed}.keras"))
    t0 = time.time()
    base = quality.baseline(cfg, f"lenet_fmnist_{n}_{args.base_epochs}", args.seed, work, False)
    base_s = time.time() - t0
    ns = argparse.Namespace(rate=args.rate, rounds=args.rounds, epochs=args.epochs,
                            max_x=args.max_x)
    run = quality.run_one(cfg, base, args.variant, args.seed, ns)
    run.update(backend=args.backend, baseline_s=base_s, baseline_cached=cached,
               load_at_start=load,
               train_samples=n, base_epochs=args.base_epochs)
    run["selected"] = selected(run["points"])
    os.makedirs(RUNS, exist_ok=True)
    atomic_write_text(os.path.join(RUNS, f"{args.backend}_s{args.seed}.json"),
                      json.dumps(run, indent=1, default=float))
    del np


def selected(points):
    """The model chosen on validation only: the largest compression whose
    validation drop is at most 1 point (the baseline when none is)."""
    ok = [p for p in points if p["val_drop"] >= -1.0]
    best = max(ok, key=lambda p: p["compression"]) if ok else points[0]
    return {"compression": best["compression"], "test_drop": best["test_drop"],
            "round": best["round"]}


def _mean_std(vals):
    import numpy as np

    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    return f"{np.mean(vals):.2f} ± {np.std(vals):.2f}" if len(vals) > 1 else f"{vals[0]:.2f}"


def report(command):
    sys.path.insert(0, HERE)
    import quality
    from kprune.atomic import atomic_write_text

    runs = []
    for f in sorted(os.listdir(RUNS)) if os.path.isdir(RUNS) else []:
        with open(os.path.join(RUNS, f)) as fh:
            runs.append(json.load(fh))
    by = {}
    for r in runs:
        by.setdefault(r["backend"], []).append(r)
    rows = []
    for b in ("tensorflow", "jax", "torch"):
        rs = sorted(by.get(b, []), key=lambda r: r["seed"])
        if not rs:
            continue
        lv = {L: [(quality.at_level(r["points"], L) or (None,))[0] for r in rs] for L in (2, 4)}
        rows.append({
            "backend": b, "seeds": [r["seed"] for r in rs],
            "baseline_test": [100 * r["baseline_test"] for r in rs],
            "drop_2x": lv[2], "drop_4x": lv[4],
            "selected_x": [r["selected"]["compression"] for r in rs],
            "selected_drop": [r["selected"]["test_drop"] for r in rs],
            "selected_test": [100 * r["baseline_test"] + r["selected"]["test_drop"] for r in rs],
            "prune_wall_s": [r["wall_s"] for r in rs],
            # a baseline loaded from an earlier run's cache has no training time
            "baseline_wall_s": [r["baseline_s"] for r in rs
                                if not r.get("baseline_cached", r["baseline_s"] < 5)],
            "load_at_start": [r["load_at_start"] for r in rs],
            "variant": rs[0]["variant"], "options": rs[0]["options"],
            "train_samples": rs[0]["train_samples"], "base_epochs": rs[0]["base_epochs"],
            "retraining_epochs": [r["retraining_epochs"] for r in rs],
        })
    out = {"command": command, "rows": rows}
    atomic_write_text(os.path.join(RESULTS, "backends.json"), json.dumps(out, indent=1))
    lines = ["# LeNet-5 / Fashion-MNIST on each Keras backend", "",
             f"Command: `{command}`", ""]
    if rows:
        r0 = rows[0]
        lines += [f"Protocol: quality.py's ({r0['variant']}, {r0['options']}); "
                  f"{r0['train_samples']} training images, 5,000 validation, 10,000 test; "
                  f"baseline {r0['base_epochs']} epochs; retraining epochs per run: "
                  f"{r0['retraining_epochs']}. Decisions on validation only; test drop in "
                  "points from the same backend and seed's baseline (positive: the pruned and "
                  "retrained model is better), mean ± std over seeds. Wall times: one run "
                  "after the other on the same (shared, see the load average) machine; "
                  "baseline wall only where the baseline was trained, not loaded from cache.",
                  "",
                  "| backend | seeds | baseline test % | test change @2x | test change @4x "
                  "| selected (val) x | its test change | its test % | pruning wall s | baseline wall s "
                  "| load avg at start |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['backend']} | {','.join(map(str, r['seeds']))} | "
                f"{_mean_std(r['baseline_test'])} | {_mean_std(r['drop_2x'])} | "
                f"{_mean_std(r['drop_4x'])} | {_mean_std(r['selected_x'])} | "
                f"{_mean_std(r['selected_drop'])} | {_mean_std(r['selected_test'])} | "
                f"{_mean_std(r['prune_wall_s'])} | "
                f"{_mean_std(r['baseline_wall_s'])} | {_mean_std(r['load_at_start'])} |")
    atomic_write_text(os.path.join(RESULTS, "backends.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default="tensorflow,jax")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variant", default="iap", help="a quality.py variant (default: IAP, Taylor)")
    ap.add_argument("--train", type=int, default=55000, help="training images used")
    ap.add_argument("--base-epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rate", type=float, default=0.25)
    ap.add_argument("--max-x", type=float, default=16.0)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "kprune_backends"))
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.backend:
        return child(args)
    command = "python benchmarks/backends.py " + " ".join(sys.argv[1:])
    if not args.report:
        # Seeds outer, backends inner: machine noise hits both backends alike.
        for seed in [int(s) for s in args.seeds.split(",")]:
            for b in args.backends.split(","):
                if os.path.exists(os.path.join(RUNS, f"{b}_s{seed}.json")):
                    continue  # resumable: finished runs are kept
                cmd = [sys.executable, __file__, "--backend", b, "--seed", str(seed),
                       "--variant", args.variant, "--train", str(args.train),
                       "--base-epochs", str(args.base_epochs), "--rounds", str(args.rounds),
                       "--epochs", str(args.epochs), "--rate", str(args.rate),
                       "--max-x", str(args.max_x), "--work-dir", args.work_dir]
                print(f"seed {seed} {b} ...", flush=True)
                subprocess.run(cmd, check=True, env=dict(os.environ, KERAS_BACKEND=b))
    report(command)


if __name__ == "__main__":
    main()
