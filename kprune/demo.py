"""End-to-end demo: ``python -m kprune.demo``.

Trains LeNet-5 briefly on Fashion-MNIST (set up offline from the Debian
package when installed, downloaded by Keras otherwise), prunes it with IAP
(kprune's default: first-order Taylor scores ranked globally) for a few
rounds, keeping the smallest model within 1 point of validation accuracy,
prints the before/after table (parameters, MACs, accuracy), saves the pruned
model as a plain ``.keras`` file with the accuracy-vs-compression plot of its
rounds (``rounds.png``, validation and test), converts it to a full-int8
TFLite flatbuffer and a C array for TFLite-Micro, and benchmarks original vs
pruned on LiteRT and TFLite-Micro (size, latency, arena, int8 accuracy).
About three minutes on two CPU cores.

Options: ``--out DIR`` (default ``kprune_demo``), ``--rounds``, ``--epochs``,
``--train-samples``, ``--method``, ``--rate``.
"""

import argparse
import os
import time

from kprune.atomic import atomic_path, atomic_save_model


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kprune.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="kprune_demo", help="output directory")
    ap.add_argument("--method", default="iap", help="ilp | iap | aiap")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--rate", type=float, default=0.3, help="fraction of units removed per round")
    ap.add_argument("--epochs", type=int, default=1, help="retraining epochs per round")
    ap.add_argument("--train-samples", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import keras
    import numpy as np

    from kprune.datasets import load_fashion_mnist
    from kprune.core.profile import profile
    from kprune.prune import prune
    from kprune.data import as_data, evaluate_accuracy
    from kprune.zoo import lenet5

    t_start = time.time()
    print("[1/5] Fashion-MNIST ...", flush=True)
    (x, y), (xt, yt) = load_fashion_mnist()
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(x))
    n = min(args.train_samples, len(x) - 5000)
    xtr, ytr = x[idx[:n]], y[idx[:n]]
    xv, yv = x[idx[-5000:]], y[idx[-5000:]]
    test = as_data((xt, yt))

    print(f"[2/5] training LeNet-5 on {n} images (3 epochs) ...", flush=True)
    keras.utils.set_random_seed(args.seed)
    model = lenet5()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(xtr, ytr, batch_size=128, epochs=3, verbose=0)
    base_test = evaluate_accuracy(model, test)

    print(f"[3/5] pruning with {args.method.upper()} ({args.rounds} rounds, "
          f"{args.epochs} retraining epoch(s) each) ...", flush=True)
    test_acc = {}

    def on_round(entry, m):  # test accuracy of every round, for the plot only
        if m is not None and entry["status"] in ("baseline", "accepted", "finetuned"):
            test_acc[entry["round"]] = evaluate_accuracy(m, test)
        if entry.get("val_accuracy") is not None:
            print(f"      round {entry['round']}: {entry['params']:,} parameters, "
                  f"validation {100 * entry['val_accuracy']:.2f}% ({entry['status']})",
                  flush=True)

    opts = {} if args.method == "aiap" else {"rate": args.rate}
    result = prune(model, args.method, train_data=(xtr, ytr), val_data=(xv, yv),
                   epochs=args.epochs, rounds=args.rounds, seed=args.seed, batch_size=128,
                   target={"accuracy_loss": 0.01}, verbose=0, on_round=on_round, **opts)
    final_test = evaluate_accuracy(result.model, test)
    print()
    print(result.summary())
    print(f"test accuracy (10k)     | {base_test:.4f} -> {final_test:.4f} "
          f"({100 * (final_test - base_test):+.2f} pt)")

    print("[4/5] saving ...", flush=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "lenet5_pruned.keras")
    atomic_save_model(result.model, path)
    reloaded = keras.saving.load_model(path)
    p = profile(reloaded)
    print(f"saved {path}: {p.params:,} parameters, {p.macs:,} MACs "
          f"({os.path.getsize(path) / 1024:.0f} KiB)")
    plot = _plot_rounds(result, test_acc, os.path.join(args.out, "rounds.png"))
    if plot:
        print(f"accuracy vs compression of the rounds: {plot}")

    print("[5/5] converting for TFLite / TFLite-Micro and benchmarking "
          "original vs pruned ...", flush=True)
    from kprune import bench, export

    calib = xtr[:200]
    firmware = export.to_micro(reloaded, "lenet5_pruned",
                               os.path.join(args.out, "firmware"),
                               representative_data=calib)
    print(f"wrote {firmware.cc} and {firmware.h} (int8 model "
          f"{firmware.model_bytes:,} bytes, kTensorArenaSize {firmware.arena_bytes:,})")
    comparison = bench.compare(model, reloaded, eval_data=(xt, yt),
                               representative_data=calib, eval_samples=None,  # all 10k
                               runs=100, rounds=3, names=("original", "pruned"))
    print(comparison)
    import json

    from kprune.atomic import atomic_write_text

    atomic_write_text(os.path.join(args.out, "bench.json"),
                      json.dumps(comparison.to_dict(), indent=2, default=str))
    print(f"benchmark JSON: {os.path.join(args.out, 'bench.json')}; "
          f"total time {time.time() - t_start:.0f} s")
    return result


def _plot_rounds(result, test_acc, path):
    """Validation and test accuracy against compression, one point per round."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    base = result.baseline["params"]
    rounds = [e for e in result.history if e["round"] in test_acc]
    xs = [base / e["params"] for e in rounds]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [100 * e["val_accuracy"] for e in rounds], "o-", label="validation")
    ax.plot(xs, [100 * test_acc[e["round"]] for e in rounds], "s-", label="test")
    ax.axhline(100 * (test_acc[0] - 0.01), color="gray", ls="--", lw=0.8,
               label="baseline test - 1 point")
    final = base / result.final["params"]
    ax.axvline(final, color="k", ls=":", lw=0.8, label=f"returned: {final:.1f}x")
    for x, e in zip(xs, rounds):
        ax.annotate(str(e["round"]), (x, 100 * e["val_accuracy"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.set_xlabel("compression (parameters before / after)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"LeNet-5 / Fashion-MNIST, {result.method.upper()} rounds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
