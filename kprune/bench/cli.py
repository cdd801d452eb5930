"""`kprune-bench`: measure a model (and compare it with another) on LiteRT and
TFLite-Micro from the command line.

Usage:
    kprune-bench pruned.keras --compare original.keras --eval-data fashion_mnist \
        --json out.json

MODEL and OTHER are `.keras`/`.h5` models or `.tflite` flatbuffers. With
`--compare`, OTHER is the "before" column and MODEL the "after" column.
"""

import argparse
import json
import os
import sys
from typing import Optional, Sequence

import numpy as np

_DATASETS = ("fashion_mnist", "mnist", "digits")


def _named_dataset(name: str):
    from kprune import datasets
    if name == "fashion_mnist":
        return datasets.load_fashion_mnist()
    if name == "mnist":
        return datasets.load_mnist_subset()
    if name == "digits":
        return datasets.load_digits()
    raise ValueError(name)


def _load_data(spec: str, split: str):
    """(x, y) from a dataset name (split 'train'/'test') or an .npz file with
    arrays x and y (or x_<split>/y_<split>)."""
    if spec in _DATASETS:
        (xtr, ytr), (xte, yte) = _named_dataset(spec)
        return (xtr, ytr) if split == "train" else (xte, yte)
    if not os.path.exists(spec):
        raise SystemExit(f"kprune-bench: data '{spec}' is neither one of {_DATASETS} "
                         f"nor an existing .npz file")
    with np.load(spec) as f:
        for kx, ky in ((f"x_{split}", f"y_{split}"), ("x", "y")):
            if kx in f:
                return f[kx], (f[ky] if ky in f else None)
    raise SystemExit(f"kprune-bench: '{spec}' has no array 'x' (or 'x_{split}')")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kprune-bench",
        description="Size, LiteRT latency, TFLite-Micro arena and int8 accuracy of a "
                    "model, optionally side by side with another.")
    p.add_argument("model", help="the model to measure (.keras, .h5 or .tflite)")
    p.add_argument("--compare", metavar="OTHER",
                   help="a reference model (e.g. the unpruned original) shown as 'before'")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    p.add_argument("--eval-data", metavar="DATA",
                   help=f"accuracy data: one of {', '.join(_DATASETS)} (test split) or "
                        f"an .npz with x and y")
    p.add_argument("--calibration-data", metavar="DATA",
                   help="int8 calibration inputs: dataset name (train split) or .npz "
                        "(default: train split of --eval-data's dataset, else eval inputs)")
    p.add_argument("--eval-samples", type=int, default=1000,
                   help="evaluate on the first N samples (0 = all; default 1000)")
    p.add_argument("--calibration-samples", type=int, default=200)
    p.add_argument("--quantizations", default="float32,dynamic,float16,int8",
                   help="flatbuffers to build (comma separated)")
    p.add_argument("--latency-modes", default="float32,int8",
                   help="flatbuffers to time on LiteRT (comma separated)")
    p.add_argument("--threads", type=int, default=1, help="LiteRT threads (default 1)")
    p.add_argument("--runs", type=int, default=200, help="timed invokes per model and mode")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaving rounds across models (default 5)")
    p.add_argument("--no-tflm", action="store_true", help="skip TFLite-Micro")
    p.add_argument("--no-min-arena", action="store_true",
                   help="skip the smallest-arena binary search")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from kprune.bench.measure import compare, measure

    eval_data = None
    if args.eval_data:
        x, y = _load_data(args.eval_data, "test")
        if y is None:
            raise SystemExit("kprune-bench: --eval-data needs labels (array 'y')")
        eval_data = (x, y)
    calibration = None
    source = args.calibration_data or (args.eval_data if args.eval_data in _DATASETS else None)
    if source:
        calibration = _load_data(source, "train")[0][:args.calibration_samples]
    kwargs = dict(eval_data=eval_data, representative_data=calibration,
                  quantizations=[q.strip() for q in args.quantizations.split(",") if q.strip()],
                  latency_modes=[q.strip() for q in args.latency_modes.split(",") if q.strip()],
                  num_threads=args.threads, warmup=args.warmup, runs=args.runs,
                  rounds=args.rounds, eval_samples=args.eval_samples or None,
                  tflm_arena=not args.no_tflm, min_arena=not args.no_min_arena)
    if args.compare:
        result = compare(args.compare, args.model, **kwargs)
    else:
        result = measure(args.model, **kwargs)
    print(result)
    if args.json:
        from kprune.atomic import atomic_write_text

        directory = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(directory, exist_ok=True)
        atomic_write_text(args.json, json.dumps(result.to_dict(), indent=2))
        print(f"wrote {args.json}")
    return 0


def run():
    """Console-script entry point of `kprune-bench`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())


if __name__ == "__main__":
    run()
