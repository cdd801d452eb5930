"""Surgery cost: dependency analysis + rewrite against a plain Keras clone.

For each model, in one process: the median time of
  (a) `keras.models.clone_model(model)` + `set_weights(model.get_weights())`
  (b) `kprune.analyze(model)` + `kprune.remove_channels(...)` removing about
      30 percent of every prunable group,
and their ratio (target: at most 1.5). Peak resident memory is measured in
separate child processes (one per operation) as ru_maxrss.

    python benchmarks/surgery.py [--repeats 5] [--out benchmarks/results]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODELS = ("ResNet50", "MobileNetV2")


def _build(name):
    import keras

    return getattr(keras.applications, name)(weights=None)


def _clone(model):
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _prune(model):
    import kprune
    from kprune.testing import random_removal

    analysis = kprune.analyze(model)
    removal = random_removal(model, fraction=0.3, seed=0, analysis=analysis)
    return kprune.remove_channels(model, removal, analysis=analysis)


def _timed(fn, model, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(model)
        times.append(time.perf_counter() - start)
    return times


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(name, op):
    model = _build(name)
    base = _status_mib("VmRSS")
    try:  # reset the high-water mark so it measures the operation only
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    (_clone if op == "clone" else _prune)(model)
    peak = _status_mib("VmHWM")
    print(json.dumps({"rss_after_build_mib": base, "peak_rss_mib": peak,
                      "ru_maxrss_mib": resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import kprune

    rows = []
    for name in MODELS:
        model = _build(name)
        _clone(model), _prune(model)  # warm-up: imports, tracing caches
        clone_t, prune_t = [], []
        for _ in range(args.repeats):  # interleaved, so load hits both alike
            clone_t += _timed(_clone, model, 1)
            prune_t += _timed(_prune, model, 1)
        start = time.perf_counter()
        analysis = kprune.analyze(model)
        analysis_t = time.perf_counter() - start
        pruned = _prune(model)
        mem = {}
        for op in ("clone", "prune"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, op],
                capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..")})
            mem[op] = json.loads(out.stdout.strip().splitlines()[-1])
        row = {
            "model": name,
            "params": model.count_params(),
            "pruned_params": pruned.count_params(),
            "groups": len(analysis.groups),
            "clone_s_median": statistics.median(clone_t),
            "kprune_s_median": statistics.median(prune_t),
            "analysis_s": analysis_t,
            "ratio": statistics.median(prune_t) / statistics.median(clone_t),
            "clone_peak_rss_mib": mem["clone"]["peak_rss_mib"],
            "clone_extra_rss_mib": mem["clone"]["peak_rss_mib"] - mem["clone"]["rss_after_build_mib"],
            "kprune_extra_rss_mib": mem["prune"]["peak_rss_mib"] - mem["prune"]["rss_after_build_mib"],
            "kprune_peak_rss_mib": mem["prune"]["peak_rss_mib"],
            "rss_after_build_mib": mem["prune"]["rss_after_build_mib"],
            "repeats": args.repeats,
        }
        rows.append(row)
        print(json.dumps(row))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "surgery.json"), "w") as f:
        json.dump({"rows": rows, "command": "python benchmarks/surgery.py",
                   "cpu_count": os.cpu_count()}, f, indent=2)
    lines = ["| model | params | groups | clone+set_weights (s) | kprune analyze+rewrite (s) | ratio | peak RSS during op, clone / kprune (MiB; extra over the built model) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} -> {r['pruned_params']:,} | {r['groups']} | "
            f"{r['clone_s_median']:.2f} | {r['kprune_s_median']:.2f} (analysis {r['analysis_s']:.2f}) | "
            f"**{r['ratio']:.2f}** | {r['clone_peak_rss_mib']:.0f} / {r['kprune_peak_rss_mib']:.0f} "
            f"(+{r['clone_extra_rss_mib']:.0f} / +{r['kprune_extra_rss_mib']:.0f}) |")
    with open(os.path.join(args.out, "surgery.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
