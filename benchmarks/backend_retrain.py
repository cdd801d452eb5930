"""Is kprune's retraining the same on every Keras backend? ILP from one baseline, many seeds.

``benchmarks/backends.py`` showed ILP on JAX below TensorFlow at 2x (3 seeds,
each backend training its own baseline). This benchmark takes the baseline
out of the comparison: one LeNet-5 is trained on TensorFlow (Fashion-MNIST,
3,000 training images, 3 epochs, seed 0) and saved as ``.keras``; then, in
one interpreter per backend (``KERAS_BACKEND`` set), from that same file:

* **no shuffle**: the L1-pruned model (30% of every group, the channels ILP's
  first round removes) is retrained 1 epoch by kprune's trainer
  (``fit_once``, Adam 1e-3, batch 128) with ``shuffle=False``. Same weights,
  same batches: the validation accuracy must agree to float rounding;
* **ILP round 1, seeds 0..N-1**: ``kprune.prune(..., 'ilp', rounds=1,
  rate=0.3, seed=s)``, validation top-1 after the round's retraining epoch.
  kprune shuffles numpy data itself (one numpy permutation per epoch from the
  round's seed), so a seed gives the same batches on every backend; the
  per-seed difference is then float rounding carried through training, and
  the spread over seeds is the retraining's own noise.

Validation: the first 5,000 training images; training: the next 3,000 (the
backends benchmark's split). Writes ``results/backend_retrain.json`` and
``.md``.

``--cross DIR`` adds the other half of the question: the baselines that
``benchmarks/backends.py --work-dir DIR`` trained on each backend
(``DIR/<backend>/lenet_fmnist_3000_3_s<seed>.keras``, Keras' own ``fit``
there) are each pruned by ILP's first round on TensorFlow *and* on JAX;
test change from each baseline (10,000 test images).

Usage:
    python benchmarks/backend_retrain.py                 # tf, jax, torch; 8 seeds
    python benchmarks/backend_retrain.py --seeds 4 --backends tensorflow,jax
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
BACKENDS = ("tensorflow", "jax", "torch")


def _data():
    from kprune import datasets

    (x, y), _ = datasets.load_fashion_mnist()
    return x[5000:8000], y[5000:8000], x[:5000], y[:5000]


def _test():
    from kprune import datasets

    _, (xt, yt) = datasets.load_fashion_mnist()
    return xt, yt


def _compile(model):
    import keras

    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def child(args):
    """One backend: both measurements from the shared baseline -> JSON on stdout's last line."""
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np

    import kprune
    import kprune.scoring
    from kprune.data import as_data, evaluate_accuracy
    from kprune.methods.trainer import fit_once

    assert keras.backend.backend() == args.backend
    x, y, xv, yv = _data()
    val = as_data((xv, yv), batch_size=1000)
    base = keras.saving.load_model(args.baseline, compile=False)
    scores = kprune.scoring.score_groups(base, "l1")
    removal = {}
    for g in kprune.dependency_groups(base):
        s = np.asarray(scores[g.index])
        removal[g.name] = [int(i) for i in np.argsort(s, kind="stable")[:int(round(0.3 * len(s)))]]
    out = {"backend": args.backend, "removal": {k: len(v) for k, v in removal.items()}}
    small = _compile(kprune.remove_channels(base, removal))
    out["pruned_val"] = evaluate_accuracy(small, val)
    keras.utils.set_random_seed(0)
    fit_once(small, as_data((x, y), batch_size=128), 1, small.get_compile_config(),
             shuffle=False)
    out["no_shuffle_val"] = evaluate_accuracy(small, val)
    out["cross"] = []
    for src, seed, path in args.cross_files:
        cb = keras.saving.load_model(path, compile=False)
        test = as_data(_test(), batch_size=1000)
        m = keras.models.clone_model(cb)
        m.set_weights(cb.get_weights())
        before = evaluate_accuracy(m, test)
        res = kprune.prune(_compile(m), "ilp", train_data=(x, y), val_data=(xv, yv),
                           rounds=1, rate=0.3, target="none", seed=seed, batch_size=128,
                           verbose=0)
        out["cross"].append({"baseline_from": src, "seed": seed, "baseline_test": before,
                             "round1_test": evaluate_accuracy(res.model, test)})
    out["ilp_val"], out["ilp_widths"], out["ilp_wall_s"] = [], [], []
    for s in range(args.seeds):
        model = keras.models.clone_model(base)
        model.set_weights(base.get_weights())
        t0 = time.time()
        res = kprune.prune(_compile(model), "ilp", train_data=(x, y), val_data=(xv, yv),
                           rounds=1, rate=0.3, target="none", seed=s, batch_size=128,
                           verbose=0)
        out["ilp_wall_s"].append(time.time() - t0)
        out["ilp_val"].append(res.history[-1]["val_accuracy"])
        out["ilp_widths"].append(res.history[-1]["widths"])
    print(json.dumps(out))


def baseline(path):
    """The shared baseline, trained on TensorFlow in a child (seed 0)."""
    code = ("import sys, keras; sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r});"
            "import backend_retrain as b; from kprune import zoo;"
            "x, y, _, _ = b._data(); keras.utils.set_random_seed(0);"
            "m = b._compile(zoo.lenet5()); m.fit(x, y, batch_size=128, epochs=3, verbose=0);"
            "m.save({path!r})").format(root=ROOT, here=HERE, path=path)
    subprocess.run([sys.executable, "-c", code], check=True,
                   env=dict(os.environ, KERAS_BACKEND="tensorflow"))


def report(runs, command):
    import numpy as np

    from kprune.atomic import atomic_write_text

    tf = runs.get("tensorflow")
    lines = ["# Retraining on each Keras backend from one baseline", "",
             f"Command: `{command}`", "",
             "LeNet-5 trained once on TensorFlow (3,000 Fashion-MNIST images, 3 epochs, seed 0); "
             "every backend loads the same `.keras` file. Validation top-1 % on 5,000 images. "
             "'no shuffle': the L1-pruned model (30% of every group) retrained 1 epoch in "
             "order. 'ILP round 1': `prune(..., 'ilp', rounds=1, rate=0.3, seed=s)`, "
             "mean ± std over seeds; 'max |diff| vs TF': the largest per-seed difference "
             "from TensorFlow's run of the same seed.", "",
             "| backend | pruned, before retraining | no shuffle | ILP round 1 (seeds) "
             "| max abs diff vs TF, points | ILP wall s per run |",
             "|---|---:|---:|---:|---:|---:|"]
    for b in BACKENDS:
        r = runs.get(b)
        if r is None:
            continue
        v = 100 * np.asarray(r["ilp_val"])
        diff = (f"{np.max(np.abs(v - 100 * np.asarray(tf['ilp_val']))):.2f}"
                if tf is not None and b != "tensorflow" else "")
        lines.append(f"| {b} | {100 * r['pruned_val']:.2f} | {100 * r['no_shuffle_val']:.2f} "
                     f"| {v.mean():.2f} ± {v.std(ddof=1):.2f} ({len(v)}) | {diff} "
                     f"| {np.median(r['ilp_wall_s']):.1f} |")
    lines += ["", "Per-seed ILP round-1 validation top-1 %:", ""]
    for b in BACKENDS:
        if b in runs:
            lines.append(f"- {b}: " + ", ".join(f"{100 * v:.2f}" for v in runs[b]["ilp_val"]))
    cross = {b: {(c["baseline_from"], c["seed"]): c for c in r.get("cross", [])}
             for b, r in runs.items()}
    keys = sorted({k for c in cross.values() for k in c})
    if keys:
        on = [b for b in BACKENDS if cross.get(b)]
        lines += ["", "Baselines trained by `benchmarks/backends.py` on each backend (Keras' "
                  "own `fit`), ILP round 1 (rate 0.3, the seed's own) on each backend: test "
                  "change in points from that baseline (10,000 test images).", "",
                  "| baseline trained on | seed | baseline test % | "
                  + " | ".join(f"pruned on {b}" for b in on) + " |",
                  "|---|---:|---:|" + "---:|" * len(on)]
        for k in keys:
            c0 = next(cross[b][k] for b in on if k in cross[b])
            lines.append(f"| {k[0]} | {k[1]} | {100 * c0['baseline_test']:.2f} | " + " | ".join(
                f"{100 * (cross[b][k]['round1_test'] - cross[b][k]['baseline_test']):+.2f}"
                if k in cross[b] else "" for b in on) + " |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(os.path.join(RESULTS, "backend_retrain.md"), text)
    atomic_write_text(os.path.join(RESULTS, "backend_retrain.json"),
                      json.dumps({"command": command, "runs": runs}, indent=1))
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--cross", help="a backends.py --work-dir: prune its baselines on "
                    "TensorFlow and JAX too")
    ap.add_argument("--cross-seeds", default="3,4,5")
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--baseline", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.cross_files = []
    if args.cross:
        for src in BACKENDS:
            for seed in [int(v) for v in args.cross_seeds.split(",")]:
                path = os.path.join(args.cross, src, f"lenet_fmnist_3000_3_s{seed}.keras")
                if os.path.exists(path):
                    args.cross_files.append((src, seed, path))
    if args.backend:
        return child(args)
    command = "python benchmarks/backend_retrain.py " + " ".join(sys.argv[1:])
    sys.path.insert(0, ROOT)
    work = tempfile.mkdtemp(prefix="kprune_backend_retrain_")
    path = os.path.join(work, "lenet5_tf_s0.keras")
    baseline(path)
    runs = {}
    for b in args.backends.split(","):
        print(f"{b} ...", flush=True)
        cross = (["--cross", args.cross, "--cross-seeds", args.cross_seeds]
                 if args.cross and b in ("tensorflow", "jax") else [])
        proc = subprocess.run([sys.executable, __file__, "--backend", b, "--baseline", path,
                               "--seeds", str(args.seeds), *cross],
                              env=dict(os.environ, KERAS_BACKEND=b), check=True,
                              capture_output=True, text=True)
        runs[b] = json.loads(proc.stdout.strip().splitlines()[-1])
    report(runs, command.strip())


if __name__ == "__main__":
    main()
