"""Where a pruning run's training time goes (issue 20, item 5): the cost of one
train step of each round's pruned model against the unpruned one, and
kprune's retraining path against a plain ``model.fit``.

Two measurements, each in one process with its variants interleaved, timed in
process CPU seconds (robust to other jobs on the machine; TensorFlow runs
with 1 intra-op and 1 inter-op thread):

1. **Step cost of the round models.** ILP and IAP (``target='none'``, the
   default rates, no retraining: ``fit_fn`` does nothing) are run for 1, 2
   and 3 rounds from the same briefly trained ResNet-20 (28x28x1); each
   returned model and the unpruned one run ``--steps`` train steps of one
   batch of 128, ``--reps`` interleaved repetitions, median per step. The
   table gives each model's MACs and step time as fractions of the unpruned
   model's. Uniform ResNet-20s of width 16 / 15 / 14 / 13 / 12 / 8 (16/32/64
   ... 8/16/32) show the effect of widths that are not multiples of 8.
2. **Retraining path.** ``kprune.methods.trainer.fit_once`` (fresh
   compile, per-epoch ``fit`` calls on kprune's seeded shuffle, the NaN and
   step-clock callbacks) against ``model.fit`` of the same epochs on the same
   unpruned model and data.

Usage:
    python benchmarks/train_step_cost.py [--steps 6] [--reps 3] [--fit-images 1024]
Writes benchmarks/results/train_step_cost.json and .md.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kprune  # noqa: E402
from kprune import zoo  # noqa: E402
from kprune.atomic import atomic_write_text  # noqa: E402
from kprune.data import as_data  # noqa: E402
from kprune.datasets import load_fashion_mnist  # noqa: E402
from kprune.methods import trainer  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def compiled(model):
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def resnet(width=16):
    keras.utils.set_random_seed(0)
    return compiled(zoo.resnet20(input_shape=(28, 28, 1), width=width))


def cpu_seconds(fn):
    t = time.process_time()
    fn()
    return time.process_time() - t


def round_models(base, x, y):
    """{label: (model, MAC fraction, widths)} of ILP / IAP after 1-3 rounds."""
    out = {}
    for method in ("ilp", "iap"):
        for r in (1, 2, 3):
            model = resnet()
            model.set_weights(base.get_weights())
            res = kprune.prune(model, method, train_data=(x[:2000], y[:2000]),
                               val_data=(x[2000:2500], y[2000:2500]), rounds=r,
                               target="none", seed=0, verbose=0,
                               fit_fn=lambda m, d, e: None)
            out[f"{method} round {r}"] = (compiled(res.model),
                                          res.final["macs"] / res.baseline["macs"],
                                          sorted(set(res.final["widths"].values())))
    return out


def step_costs(models, xb, yb, steps, reps):
    for m in models.values():  # traced and warm
        m.train_on_batch(xb, yb)
        m.train_on_batch(xb, yb)
    per = {k: [] for k in models}
    for _ in range(reps):
        for k, m in models.items():
            per[k].append(cpu_seconds(lambda: [m.train_on_batch(xb, yb)
                                               for _ in range(steps)]) / steps)
    return {k: float(np.median(v)) for k, v in per.items()}


def fit_paths(x, y, reps):
    def plain():
        resnet().fit(x, y, batch_size=128, epochs=3, verbose=0)

    def kprune_fit():
        m = resnet()
        trainer.fit_once(m, as_data((x, y), batch_size=128), 3,
                         trainer.compile_config_of(m), shuffle_seed=0)

    plain()  # warm-up
    got = {"plain model.fit": [], "kprune fit_once": []}
    for _ in range(reps):
        got["plain model.fit"].append(cpu_seconds(plain))
        got["kprune fit_once"].append(cpu_seconds(kprune_fit))
    return {k: float(np.median(v)) for k, v in got.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--fit-images", type=int, default=1024)
    args = ap.parse_args()
    (x, y), _ = load_fashion_mnist()
    base = resnet()
    base.fit(x[:1024], y[:1024], batch_size=128, epochs=1, verbose=0)
    xb, yb = x[:128], y[:128]

    rounds = round_models(base, x, y)
    models = {"unpruned": base, **{k: v[0] for k, v in rounds.items()}}
    steps = step_costs(models, xb, yb, args.steps, args.reps)
    widths = {f"uniform width {w}": resnet(w) for w in (16, 15, 14, 13, 12, 8)}
    wsteps = step_costs(widths, xb, yb, args.steps, args.reps)
    fits = fit_paths(x[:args.fit_images], y[:args.fit_images], args.reps)

    full = steps["unpruned"]
    rows = [{"model": "unpruned", "macs": 1.0, "step": 1.0, "widths": [16, 32, 64]}]
    rows += [{"model": k, "macs": v[1], "step": steps[k] / full, "widths": v[2]}
             for k, v in rounds.items()]
    w16 = wsteps["uniform width 16"]
    rows += [{"model": k, "macs": (int(k.split()[-1]) / 16) ** 2, "step": s / w16,
              "widths": [int(k.split()[-1]) * f for f in (1, 2, 4)]}
             for k, s in wsteps.items()]
    cmd = "python benchmarks/train_step_cost.py " + " ".join(sys.argv[1:])
    doc = {"command": cmd.strip(), "protocol": __doc__.split("Usage:")[0].strip(),
           "step_s_unpruned": full, "rows": rows, "fit_cpu_s": fits}
    atomic_write_text(os.path.join(RESULTS, "train_step_cost.json"), json.dumps(doc, indent=1))
    lines = ["# Train-step cost of pruned ResNet-20s, and kprune's retraining path", "",
             f"Command: `{cmd.strip()}` (CPU seconds, 1 thread, batch 128, median of "
             f"{args.reps} interleaved repetitions of {args.steps} steps)", "",
             "| model | widths | MACs / unpruned | train step / unpruned |",
             "|---|---|---:|---:|"]
    lines += [f"| {r['model']} | {', '.join(map(str, r['widths']))} | {r['macs']:.2f} | "
              f"{r['step']:.2f} |" for r in rows]
    lines += ["", f"Retraining path, 3 epochs of {args.fit_images} images, same unpruned "
              "model (CPU s): " + ", ".join(f"{k} {v:.1f}" for k, v in fits.items()), ""]
    md = "\n".join(lines)
    atomic_write_text(os.path.join(RESULTS, "train_step_cost.md"), md)
    print(md)


if __name__ == "__main__":
    main()
