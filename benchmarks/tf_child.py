"""Device-budget runs on JAX: TensorFlow children started and wall time, a child
per conversion (the former way) against one persistent child (issue 19).

On the JAX and PyTorch backends every int8 conversion runs in a TensorFlow
child process (`kprune.export._tf_child`), and a run with
``target_arena_bytes`` converts a model at every estimate. This runs the same
small IAP run (LeNet-5, 4 classes, 256 seeded toy images, 2 rounds of 1 epoch
at rate 0.3, ``target_arena_bytes``) on the JAX backend with two kprune
trees, each in its own interpreter, one after the other on the same machine:

* ``--before PATH``: a kprune checkout whose conversions start a child each
  (e.g. ``git archive 5367e1c | tar -x -C /tmp/kprune_before``);
* this checkout (the persistent child).

It counts the children started (every ``subprocess.Popen`` of
``kprune.export._tf_child`` in the run's process), the conversions
(``DeviceBudget.conversions`` of the run's budget), the run's wall time and
the load average at its start, and checks that both runs removed the same
channels (the arena estimates they steer by must agree).

Usage:
    python benchmarks/tf_child.py --before /tmp/kprune_before [--reps 1]
Writes benchmarks/results/tf_child.json and tf_child.md, and the section at
the end of backends.md (benchmarks/backends.py keeps it when it rewrites that
file).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
MARK = "## Device budgets on JAX: one TensorFlow child per run"


def worker(out_path, target):
    """One run on JAX in this interpreter (kprune from PYTHONPATH)."""
    import numpy as np

    import keras
    import kprune
    from kprune.methods import device_budget
    from kprune.zoo import lenet5

    starts = []
    original = subprocess.Popen.__init__

    def counting(self, args, *a, **kw):
        if any("kprune.export._tf_child" in str(p) for p in (args if isinstance(
                args, (list, tuple)) else [args])):
            starts.append(time.time())
        original(self, args, *a, **kw)

    subprocess.Popen.__init__ = counting
    budgets = []
    init = device_budget.DeviceBudget.__init__

    def keep(self, *a, **kw):
        init(self, *a, **kw)
        budgets.append(self)

    device_budget.DeviceBudget.__init__ = keep

    rng = np.random.default_rng(0)
    x = rng.random((256, 28, 28, 1)).astype("float32") * 0.3
    y = rng.integers(0, 4, 256)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * 14:(r + 1) * 14, q * 14:(q + 1) * 14] += 0.7
    model = lenet5(num_classes=4)
    wrng = np.random.default_rng(42)
    model.set_weights([wrng.normal(0, 0.2, w.shape).astype("float32")
                       for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t = time.perf_counter()
    res = kprune.prune(model, "iap", train_data=(x, y), val_data=(x[:64], y[:64]),
                       rounds=2, rate=0.3, epochs=1, seed=0, calibration_samples=64,
                       target_arena_bytes=target)
    wall = time.perf_counter() - t
    widths = {l.name: int(l.kernel.shape[-1]) for l in res.model.layers
              if hasattr(l, "kernel")}
    result = {"backend": keras.backend.backend(), "kprune": os.path.dirname(
        os.path.dirname(os.path.abspath(kprune.__file__))), "wall_s": wall,
        "child_starts": len(starts), "conversions": sum(b.conversions for b in budgets),
        "convert_s": sum(b.seconds["convert"] for b in budgets), "widths": widths,
        "rounds": [e["round"] for e in res.history], "arena": [
            e.get("arena_bytes") for e in res.history]}
    with open(out_path, "w") as f:
        json.dump(result, f)


def run_one(label, tree, target, tmp):
    out = os.path.join(tmp, f"{label}.json")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", out,
                           "--target", str(target)], env=env, cwd=tmp,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed:\n{proc.stderr[-4000:]}")
    with open(out) as f:
        r = json.load(f)
    r.update(label=label, load_at_start=round(load, 1))
    print(json.dumps(r), flush=True)
    return r


def write(results, target, reps):
    sys.path.insert(0, ROOT)
    from kprune.atomic import atomic_write_text

    atomic_write_text(os.path.join(RESULTS, "tf_child.json"),
                      json.dumps({"target_arena_bytes": target, "runs": results}, indent=1))
    same = len({json.dumps(r["widths"], sort_keys=True) for r in results}) == 1
    lines = [MARK, "",
             f"Command: `python benchmarks/tf_child.py --before <checkout of 5367e1c> --reps "
             f"{reps}`", "",
             "IAP on the JAX backend (LeNet-5, 4 classes, 256 toy images, 2 rounds of 1 epoch "
             f"at rate 0.3, `target_arena_bytes={target}`): every int8 conversion runs in a "
             "TensorFlow child. Before: a child per conversion; now: one persistent child per "
             "run. Runs one after the other in their own interpreters on the same shared "
             "2-core machine (load average at each start in the table). Children counted as "
             "`subprocess.Popen` calls of `kprune.export._tf_child`; conversions from "
             "`DeviceBudget.conversions`.", "",
             "| kprune | child starts | conversions | conversion s | run wall s | load avg |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['label']} | {r['child_starts']} | {r['conversions']} | "
                     f"{r['convert_s']:.0f} | {r['wall_s']:.0f} | {r['load_at_start']} |")
    lines += ["", f"Both kprune trees removed the same channels: {'yes' if same else 'NO'} "
                  f"(final widths {results[-1]['widths']})."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(os.path.join(RESULTS, "tf_child.md"), text)
    path = os.path.join(RESULTS, "backends.md")
    with open(path) as f:
        old = f.read()
    if MARK in old:
        old = old[:old.index(MARK)].rstrip("\n") + "\n"
    atomic_write_text(path, old + "\n" + text)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", help="a kprune tree with a child per conversion")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--target", type=int, default=8000)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.target)
        return
    import tempfile

    results = []
    with tempfile.TemporaryDirectory(prefix="kprune_tf_child_bench_") as tmp:
        for rep in range(args.reps):  # interleaved: before, now, before, now, ...
            if args.before:
                results.append(run_one(f"child per conversion (rep {rep})", args.before,
                                       args.target, tmp))
            results.append(run_one(f"persistent child (rep {rep})", ROOT, args.target, tmp))
    write(results, args.target, args.reps)


if __name__ == "__main__":
    main()
