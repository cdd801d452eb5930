"""Backends benchmark: ILP, IAP, AIAP and the complexity method on TensorFlow, JAX and PyTorch.

Runs ``benchmarks/quality.py``'s machinery (same data split, baseline,
pruning loop and validation-only decisions; ``../shared/EVALUATION.md``) once
per Keras backend, each in its own interpreter (``KERAS_BACKEND`` is fixed at
import), seeds 0, 1, 2 for every backend, and reports per method and backend:

* baseline test top-1 (each backend trains its own baseline from the seed);
* the model selected on validation (largest compression within 1 point) and
  the most compressed model of the run: compression and test top-1;
* test change at 2x parameter compression (interpolated in log(compression));
* wall time of the pruning run (scoring + retraining, baseline excluded) and
  of the baseline training, per backend.

The backends run one after the other on the same machine, so wall times are
comparable when the machine is otherwise idle (the JSON records the load
average at the start of each run). ``--train`` / ``--rounds`` shrink the
budget; the report states the budget used. Finished runs are kept
(``results/backends_runs``), so an interrupted benchmark resumes.

Usage:
    python benchmarks/backends.py                       # 3 seeds, 3 backends, 4 methods
    python benchmarks/backends.py --train 4000 --base-epochs 3 --rounds 3
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


#: The methods of issue 19's done-when item. The complexity method has no
#: rounds: one reduction (4x parameters) trained from scratch for 3 epochs.
DEFAULT_VARIANTS = ("ilp", "iap", "aiap", "complexity:reductions=[0.75],epochs=3")
BACKENDS = ("tensorflow", "jax", "torch")


def run_path(backend, spec, seed):
    import quality

    return os.path.join(RUNS, f"{backend}__{quality._fname(spec)}__s{seed}.json")


def child(args):
    """One backend, one seed: the baseline (trained once, shared by every
    variant) and each variant's pruning run -> RUNS/<backend>__<variant>__s<seed>.json."""
    os.environ["KERAS_BACKEND"] = args.backend
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    import keras

    import quality
    from kprune.atomic import atomic_write_text

    assert keras.backend.backend() == args.backend
    cfg = quality.dataset_config("lenet_fmnist", False)
    n = args.train
    cfg.update(x=cfg["x"][:n], y=cfg["y"][:n], base_epochs=args.base_epochs)
    work = os.path.join(args.work_dir, args.backend)
    cached = os.path.exists(os.path.join(
        work, f"lenet_fmnist_{n}_{args.base_epochs}_s{args.seed}.keras"))
    t0 = time.time()
    base = quality.baseline(cfg, f"lenet_fmnist_{n}_{args.base_epochs}", args.seed, work, False)
    base_s = time.time() - t0
    ns = argparse.Namespace(rate=args.rate, rounds=args.rounds, epochs=args.epochs,
                            max_x=args.max_x)
    for spec in args.variants:
        path = run_path(args.backend, spec, args.seed)
        if os.path.exists(path):
            continue  # resumable: finished runs are kept
        load = os.getloadavg()[0]
        print(f"  {args.backend} s{args.seed} {spec} ...", flush=True)
        run = quality.run_one(cfg, base, spec, args.seed, ns)
        run.update(backend=args.backend, baseline_s=base_s, baseline_cached=cached,
                   load_at_start=load, train_samples=n, base_epochs=args.base_epochs)
        run["selected"] = selected(run["points"])
        run["final"] = final(run["points"])
        os.makedirs(RUNS, exist_ok=True)
        atomic_write_text(path, json.dumps(run, indent=1, default=float))
        cached = True  # the baseline's training time counts once


def selected(points):
    """The model chosen on validation only: the largest compression whose
    validation drop is at most 1 point (the baseline when none is)."""
    ok = [p for p in points if p["val_drop"] >= -1.0]
    best = max(ok, key=lambda p: p["compression"]) if ok else points[0]
    return {"compression": best["compression"], "test_drop": best["test_drop"],
            "round": best["round"]}


def final(points):
    """The most compressed model the run produced (whatever its validation)."""
    last = max(points, key=lambda p: p["compression"])
    return {"compression": last["compression"], "test_drop": last["test_drop"],
            "test_accuracy": last["test_accuracy"], "round": last["round"]}


def _mean_std(vals, fmt="{:.2f}"):
    import numpy as np

    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt.format(vals[0])
    return f"{fmt.format(np.mean(vals))} ± {fmt.format(np.std(vals))}"


def report(command):
    sys.path.insert(0, HERE)
    import quality
    from kprune.atomic import atomic_write_text

    runs = []
    for f in sorted(os.listdir(RUNS)) if os.path.isdir(RUNS) else []:
        if f.endswith(".json"):
            with open(os.path.join(RUNS, f)) as fh:
                runs.append(json.load(fh))
    by = {}
    for r in runs:
        by.setdefault((r["variant"], r["backend"]), []).append(r)
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    order = [v for v in DEFAULT_VARIANTS if v in variants] + \
        [v for v in variants if v not in DEFAULT_VARIANTS]
    rows = []
    for v in order:
        for b in BACKENDS:
            rs = sorted(by.get((v, b), []), key=lambda r: r["seed"])
            if not rs:
                continue
            lv = {L: [(quality.at_level(r["points"], L) or (None,))[0] for r in rs]
                  for L in (2, 4)}
            rows.append({
                "variant": v, "backend": b, "seeds": [r["seed"] for r in rs],
                "baseline_test": [100 * r["baseline_test"] for r in rs],
                "drop_2x": lv[2], "drop_4x": lv[4],
                "selected_x": [r["selected"]["compression"] for r in rs],
                "selected_drop": [r["selected"]["test_drop"] for r in rs],
                "selected_test": [100 * r["baseline_test"] + r["selected"]["test_drop"]
                                  for r in rs],
                "final_x": [r["final"]["compression"] for r in rs],
                "final_test": [100 * r["final"]["test_accuracy"] for r in rs],
                "prune_wall_s": [r["wall_s"] for r in rs],
                # a baseline loaded from an earlier run's cache has no training time
                "baseline_wall_s": [r["baseline_s"] for r in rs
                                    if not r.get("baseline_cached", r["baseline_s"] < 5)],
                "load_at_start": [r["load_at_start"] for r in rs],
                "options": rs[0]["options"], "reason": [r["reason"] for r in rs],
                "train_samples": rs[0]["train_samples"], "base_epochs": rs[0]["base_epochs"],
                "retraining_epochs": [r["retraining_epochs"] for r in rs],
            })
    out = {"command": command, "rows": rows}
    atomic_write_text(os.path.join(RESULTS, "backends.json"), json.dumps(out, indent=1))
    lines = ["# LeNet-5 / Fashion-MNIST on each Keras backend", "",
             f"Command: `{command}`", ""]
    if rows:
        r0 = rows[0]
        lines += [f"Protocol: quality.py's, reduced: {r0['train_samples']} training images, "
                  "5,000 validation, 10,000 test; baseline "
                  f"{r0['base_epochs']} epochs (trained per backend and seed, shared by the "
                  "methods); options and retraining epochs per method below. Each backend "
                  "runs in its own process (`KERAS_BACKEND` set). Decisions on validation "
                  "only: 'selected' is the most compressed model within 1 point of the "
                  "baseline on validation; 'final' is the most compressed model of the run. "
                  "Test figures in %, mean ± std over seeds. Wall times: one run after the "
                  "other on the same shared 2-core machine (see the load average); "
                  "baseline wall only where the baseline was trained, not loaded.", "",
                  "| method | backend | seeds | baseline test % | selected (val) x "
                  "| its test % | final x | final test % | test change @2x "
                  "| pruning wall s | baseline wall s | load avg |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['variant']} | {r['backend']} | {','.join(map(str, r['seeds']))} | "
                f"{_mean_std(r['baseline_test'])} | {_mean_std(r['selected_x'])} | "
                f"{_mean_std(r['selected_test'])} | {_mean_std(r['final_x'])} | "
                f"{_mean_std(r['final_test'])} | {_mean_std(r['drop_2x'])} | "
                f"{_mean_std(r['prune_wall_s'], '{:.0f}')} | "
                f"{_mean_std(r['baseline_wall_s'], '{:.0f}')} | "
                f"{_mean_std(r['load_at_start'], '{:.1f}')} |")
        lines += ["", "Options and retraining epochs per method:", ""]
        seen = set()
        for r in rows:
            if r["variant"] in seen:
                continue
            seen.add(r["variant"])
            lines.append(f"- `{r['variant']}`: {r['options']}; retraining epochs "
                         f"{r['retraining_epochs']}")
    child = os.path.join(RESULTS, "tf_child.md")  # benchmarks/tf_child.py's section
    if os.path.exists(child):
        with open(child) as f:
            lines += ["", f.read().rstrip("\n")]
    atomic_write_text(os.path.join(RESULTS, "backends.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                    help="quality.py variants (default: ILP, IAP, AIAP, complexity)")
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
    # The command that makes the runs (--report only rebuilds the table).
    command = "python benchmarks/backends.py " + " ".join(
        repr(a) if any(c in a for c in "[]{}") else a for a in sys.argv[1:] if a != "--report")
    if not args.report:
        sys.path.insert(0, HERE)
        # Seeds outer, backends inner: machine noise hits every backend alike.
        for seed in [int(s) for s in args.seeds.split(",")]:
            for b in args.backends.split(","):
                if all(os.path.exists(run_path(b, v, seed)) for v in args.variants):
                    continue  # resumable: finished runs are kept
                cmd = [sys.executable, __file__, "--backend", b, "--seed", str(seed),
                       "--variants", *args.variants, "--train", str(args.train),
                       "--base-epochs", str(args.base_epochs), "--rounds", str(args.rounds),
                       "--epochs", str(args.epochs), "--rate", str(args.rate),
                       "--max-x", str(args.max_x), "--work-dir", args.work_dir]
                print(f"seed {seed} {b} ...", flush=True)
                subprocess.run(cmd, check=True, env=dict(os.environ, KERAS_BACKEND=b))
    report(command)


if __name__ == "__main__":
    main()
