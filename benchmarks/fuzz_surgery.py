"""Surgery fuzzing at scale: many random graphs (`tests/random_graphs.py`),
each pruned and checked against the masked reference, the unchanged input
model and the `.keras` round trip (`tests/surgery_fuzz.py`).

    python benchmarks/fuzz_surgery.py --graphs 2000 --seed 0 [--jobs 2] \
        [--failures benchmarks/results/fuzz_failures] [--out benchmarks/results]

Graph k is built from seed `seed + k`, so any failure is reproduced with
`tests.surgery_fuzz.check_seed(seed + k)`; its model (`model.keras`, config
and weights), removal and traceback are written under `--failures`. Writes
`fuzz_surgery.json` and `fuzz_surgery.md` under `--out`, with the resident
memory (RSS) at the start and at the end: the Keras session is cleared after
every graph so that memory stays flat.
"""

import argparse
import collections
import gc
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rss_mib() -> float:
    """Current resident set size (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(graphs: int, seed: int, failure_dir: str, log_every: int = 100,
        collect_every: int = 25) -> dict:
    import keras

    from tests.surgery_fuzz import FAILURES, check_seed

    counts = collections.Counter()
    failures = []
    rss = []
    start = time.time()
    for k in range(graphs):
        result = check_seed(seed + k, failure_dir)
        counts[result["status"]] += 1
        if result["status"] in FAILURES or result["status"] == "generator_error":
            failures.append({key: result.get(key) for key in
                             ("seed", "status", "error", "removal")})
        # Each graph's layers go; a full collection (slow: about a second
        # with TensorFlow loaded) every `collect_every` graphs.
        keras.backend.clear_session(free_memory=False)
        if (k + 1) % collect_every == 0:
            gc.collect()
        if k == 0 or (k + 1) % log_every == 0 or k + 1 == graphs:
            rss.append((k + 1, round(_rss_mib(), 1)))
            print(f"{k + 1}/{graphs} graphs, {dict(counts)}, "
                  f"rss {rss[-1][1]} MiB, {time.time() - start:.0f} s",
                  flush=True)
    return {"graphs": graphs, "seed": seed, "counts": dict(counts),
            "failures": failures, "seconds": round(time.time() - start, 1),
            "rss_mib": rss, "rss_start_mib": rss[0][1], "rss_end_mib": rss[-1][1]}


def run_parallel(graphs: int, seed: int, failure_dir: str, jobs: int) -> dict:
    """`run` split over `jobs` worker processes, each on a consecutive block
    of seeds; RSS figures are per worker."""
    import subprocess
    import tempfile

    start = time.time()
    sizes = [graphs // jobs + (1 if k < graphs % jobs else 0) for k in range(jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        procs, first = [], seed
        for k, n in enumerate(sizes):
            out = os.path.join(tmp, str(k))
            procs.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--graphs", str(n),
                 "--seed", str(first), "--failures", failure_dir, "--out", out]))
            first += n
        for proc in procs:
            proc.wait()
        parts = []
        for k in range(jobs):
            with open(os.path.join(tmp, str(k), "fuzz_surgery.json")) as f:
                parts.append(json.load(f))
    counts = collections.Counter()
    for part in parts:
        counts.update(part["counts"])
    return {"graphs": graphs, "seed": seed, "jobs": jobs, "counts": dict(counts),
            "failures": [f for part in parts for f in part["failures"]],
            "seconds": round(time.time() - start, 1),
            "rss_mib": [part["rss_mib"] for part in parts],
            "rss_start_mib": [part["rss_start_mib"] for part in parts],
            "rss_end_mib": [part["rss_end_mib"] for part in parts]}


def _markdown(summary, command) -> str:
    counts = summary["counts"]
    n = summary["graphs"]
    bad = sum(counts.get(s, 0) for s in ("mismatch", "crash", "generator_error"))
    lines = [
        "# Surgery fuzzing (`benchmarks/fuzz_surgery.py`)", "",
        f"Command: `{command}`", "",
        f"- graphs: {n} (seeds {summary['seed']} to {summary['seed'] + n - 1})",
        f"- failures (mismatch, crash, generator error): {bad}",
        "- outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        f"- time: {summary['seconds']} s wall ({summary['seconds'] / max(n, 1):.2f} s "
        f"per graph) with {summary.get('jobs', 1)} worker process(es)",
        f"- resident memory (per worker): {summary['rss_start_mib']} MiB after "
        f"the first graph, {summary['rss_end_mib']} MiB at the end", "",
        "Each graph comes from `tests/random_graphs.py` (1-D and 2-D "
        "convolutions with strides, dilation and padding variants, transposed, "
        "depthwise and separable ones with multipliers; every normalization "
        "with and without center/scale, also over other axes; softmax-like "
        "activations; merges over 2-4 branches; self-concatenation; keras.ops "
        "with constants; nested Functional/Sequential models called once or "
        "twice with pass-through inputs; shared layers; several inputs and "
        "outputs; boundaries). A random 20-70 percent of every exact prunable "
        "group is removed.", "",
        "'ok': the pruned model equals the masked reference, the input model "
        "is unchanged and the `.keras` round trip gives the same outputs; "
        "'vacuous': the same, but masking did not change the outputs; "
        "'no_removal': the graph has no exact prunable group (everything "
        "frozen or inexact). A failure's model, removal and traceback go to "
        "`--failures`; `tests.surgery_fuzz.check_seed(seed)` reproduces it.", ""]
    for f in summary["failures"]:
        lines.append(f"- seed {f['seed']}: {f['status']}: {str(f.get('error'))[:200]}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graphs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--failures", default="benchmarks/results/fuzz_failures")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes (each on its own seeds)")
    args = parser.parse_args(argv)
    if args.jobs > 1:
        summary = run_parallel(args.graphs, args.seed, args.failures, args.jobs)
    else:
        summary = run(args.graphs, args.seed, args.failures)
    command = ("python benchmarks/fuzz_surgery.py --graphs "
               f"{args.graphs} --seed {args.seed}"
               + (f" --jobs {args.jobs}" if args.jobs > 1 else ""))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "fuzz_surgery.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    with open(os.path.join(args.out, "fuzz_surgery.md"), "w") as f:
        f.write(_markdown(summary, command))
    bad = sum(summary["counts"].get(s, 0)
              for s in ("mismatch", "crash", "generator_error"))
    print(f"{bad} failures in {args.graphs} graphs")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
