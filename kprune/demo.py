"""End-to-end demo: ``python -m kprune.demo``.

Trains LeNet-5 briefly on Fashion-MNIST (set up offline from the Debian
package when installed, downloaded by Keras otherwise), then prunes it twice
with IAP (kprune's default: first-order Taylor scores ranked globally), each
time keeping the smallest model within 1 point of validation accuracy:

* **size**: units ranked by importance alone, which spends the cuts where the
  parameters are (the Dense layers): the smallest file;
* **speed**: units ranked by importance per MAC (``cost='macs'``), which
  spends them where the arithmetic is (the convolutions): the fastest model.

It prints each run's summary, saves both as plain ``.keras`` files with the
accuracy-vs-compression plot of their rounds (``rounds.png``, validation and
test), converts the speed variant to a full-int8 TFLite flatbuffer and a C
array for TFLite-Micro, and benchmarks the original and both variants on
LiteRT and TFLite-Micro (parameters, MACs, size, latency, arena, int8
accuracy) side by side. About four minutes on two CPU cores.

Options: ``--out DIR`` (default ``kprune_demo``), ``--goal size|speed|both``
(default both), ``--rounds``, ``--epochs``, ``--train-samples``, ``--method``,
``--rate``, ``--seed``.
"""

import argparse
import os
import time

from kprune.atomic import atomic_path, atomic_save_model

#: variant name -> the prune options it adds (``--goal both`` runs both).
VARIANTS = {"size": {}, "speed": {"cost": "macs"}}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kprune.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="kprune_demo", help="output directory")
    ap.add_argument("--goal", default="both", choices=("size", "speed", "both"),
                    help="size: fewest parameters; speed: fewest MACs (cost='macs'); both")
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

    goals = ["size", "speed"] if args.goal == "both" else [args.goal]
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

    results, test_accs = {}, {}
    for goal in goals:
        print(f"[3/5] pruning for {goal} with {args.method.upper()} ({args.rounds} rounds, "
              f"{args.epochs} retraining epoch(s) each"
              f"{', cost=' + repr(VARIANTS[goal]['cost']) if VARIANTS[goal] else ''}) ...",
              flush=True)
        test_acc = test_accs[goal] = {}

        def on_round(entry, m, test_acc=test_acc):  # test accuracy of every round: plot only
            if m is not None and entry["status"] in ("baseline", "accepted", "finetuned"):
                test_acc[entry["round"]] = evaluate_accuracy(m, test)
            if entry.get("val_accuracy") is not None:
                print(f"      round {entry['round']}: {entry['params']:,} parameters, "
                      f"{entry['macs']:,} MACs, validation {100 * entry['val_accuracy']:.2f}% "
                      f"({entry['status']})", flush=True)

        opts = {} if args.method == "aiap" else {"rate": args.rate}
        keras.utils.set_random_seed(args.seed)
        result = results[goal] = prune(
            model, args.method, train_data=(xtr, ytr), val_data=(xv, yv),
            epochs=args.epochs, rounds=args.rounds, seed=args.seed, batch_size=128,
            target={"accuracy_loss": 0.01}, verbose=0, on_round=on_round,
            **opts, **VARIANTS[goal])
        final_test = evaluate_accuracy(result.model, test)
        print()
        print(result.summary())
        print(f"test accuracy (10k)     | {base_test:.4f} -> {final_test:.4f} "
              f"({100 * (final_test - base_test):+.2f} pt)\n")

    print("[4/5] saving ...", flush=True)
    os.makedirs(args.out, exist_ok=True)
    reloaded = {}
    for goal, result in results.items():
        path = os.path.join(args.out, f"lenet5_{goal}.keras")
        atomic_save_model(result.model, path)
        reloaded[goal] = keras.saving.load_model(path)
        p = profile(reloaded[goal])
        print(f"saved {path}: {p.params:,} parameters, {p.macs:,} MACs "
              f"({os.path.getsize(path) / 1024:.0f} KiB)")
    plot = _plot_rounds(results, test_accs, os.path.join(args.out, "rounds.png"))
    if plot:
        print(f"accuracy vs compression of the rounds: {plot}")

    print("[5/5] converting for TFLite / TFLite-Micro and benchmarking "
          "the original and the pruned models ...", flush=True)
    from kprune import bench, export

    calib = xtr[:200]
    firmware_goal = goals[-1]  # the speed variant when both ran
    firmware = export.to_micro(reloaded[firmware_goal], f"lenet5_{firmware_goal}",
                               os.path.join(args.out, "firmware"),
                               representative_data=calib)
    print(f"wrote {firmware.cc} and {firmware.h} ({firmware_goal} variant: int8 model "
          f"{firmware.model_bytes:,} bytes, kTensorArenaSize {firmware.arena_bytes:,})")
    names = ["original"] + goals
    measured = bench.measure_many([model] + [reloaded[g] for g in goals], names=names,
                                  eval_data=(xt, yt), representative_data=calib,
                                  eval_samples=None, runs=100, rounds=3)  # all 10k
    print()
    print(bench.format_side_by_side(measured))
    comparison = bench.Comparison(measured[0], measured[-1])
    print()
    print(comparison)
    import json

    from kprune.atomic import atomic_write_text

    atomic_write_text(os.path.join(args.out, "bench.json"), json.dumps(
        {"models": {m.name: m.to_dict() for m in measured},
         "ratios": {m.name: bench.Comparison(measured[0], m).ratios for m in measured[1:]}},
        indent=2, default=str))
    print(f"benchmark JSON: {os.path.join(args.out, 'bench.json')}; "
          f"total time {time.time() - t_start:.0f} s")
    return results


def _plot_rounds(results, test_accs, path):
    """Validation and test accuracy against MAC compression, one point per
    round, one colour per variant."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (goal, result), colour in zip(results.items(), ("tab:blue", "tab:orange")):
        test_acc = test_accs[goal]
        base = result.baseline["macs"]
        rounds = [e for e in result.history if e["round"] in test_acc]
        xs = [base / e["macs"] for e in rounds]
        ax.plot(xs, [100 * e["val_accuracy"] for e in rounds], "o-", color=colour,
                label=f"{goal}: validation")
        ax.plot(xs, [100 * test_acc[e["round"]] for e in rounds], "s--", color=colour,
                alpha=0.7, label=f"{goal}: test")
        final = base / result.final["macs"]
        ax.axvline(final, color=colour, ls=":", lw=0.8, label=f"{goal} returned: {final:.1f}x")
        for x, e in zip(xs, rounds):
            ax.annotate(str(e["round"]), (x, 100 * e["val_accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    first = next(iter(test_accs.values()))
    ax.axhline(100 * (first[0] - 0.01), color="gray", ls="--", lw=0.8,
               label="baseline test - 1 point")
    ax.set_xscale("log")
    ax.set_xlabel("MAC compression (MACs before / after)")
    ax.set_ylabel("top-1 accuracy (%)")
    method = next(iter(results.values())).method.upper()
    ax.set_title(f"LeNet-5 / Fashion-MNIST, {method} rounds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
