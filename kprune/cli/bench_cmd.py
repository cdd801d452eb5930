"""``kprune bench``: size, LiteRT latency, TFLite-Micro arena and accuracy of a
model (optionally next to another), via `kprune.bench`."""

import os

from absl import flags, logging

from kprune.cli import qat
from kprune.cli.common import (CommandError, OutDir, check_file, load_data, load_model,
                               write_json, write_text)

DOC = """\
kprune bench: measure a model on LiteRT and TFLite-Micro (kprune.bench).

  kprune bench --model runs/lenet/pruned.keras --compare lenet.keras \\
      --data fashion_mnist --out runs/lenet/bench

With --compare, that model is the 'before' column and --model the 'after'.
Prints the table; with --out also writes OUT/bench.json and OUT/bench.txt.
`kprune-bench MODEL [--flag ...]` is the same command.
--qat_epochs N (or --qat-epochs N): quantization-aware training on --data for N
epochs first; every flatbuffer is then built from the QAT model (kprune[qat]).
"""


def define_flags(fv):
    flags.DEFINE_string("model", None, "the model to measure: .keras, .h5 or .tflite",
                        flag_values=fv)
    flags.DEFINE_string("compare", None, "a reference model (e.g. the unpruned original), "
                        "shown as 'before'", flag_values=fv)
    flags.DEFINE_string("data", None, "accuracy and int8 calibration data: fashion_mnist, "
                        "mnist, digits or a .npz (x_train/y_train for calibration; "
                        "x_test/y_test, else x_val/y_val, for accuracy; or just x and y "
                        "for accuracy); omit to measure size and speed only",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "output directory for bench.json and bench.txt "
                        "(default: print only); nothing is written elsewhere",
                        flag_values=fv)
    flags.DEFINE_integer("eval_samples", 1000, "evaluate on the first N samples (0 = all)",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("calibration_samples", 200, "int8 calibration samples",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_list("quantizations", ["float32", "dynamic", "float16", "int8"],
                      "flatbuffers to build and size", flag_values=fv)
    flags.DEFINE_list("latency_modes", ["float32", "int8"],
                      "flatbuffers to time on LiteRT", flag_values=fv)
    flags.DEFINE_integer("threads", 1, "LiteRT threads", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("runs", 200, "timed invokes per model and mode", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("warmup", 20, "untimed invokes before timing", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("rounds", 5, "interleaving rounds across models", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_bool("tflm", True, "run the int8 model on TFLite-Micro (arena, accuracy)",
                      flag_values=fv)
    flags.DEFINE_bool("min_arena", True, "binary-search the smallest working TFLM arena",
                      flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "write into an --out that holds other files, the "
                      "input, or another run's results (never over the input itself)",
                      flag_values=fv)
    qat.define_flags(fv)
    flags.DEFINE_bool("unsafe_load", False, "allow model files that run code when loaded "
                      "(Lambda layers); only for files you trust", flag_values=fv)


def _model_arg(path, flag, unsafe, compile=False):
    if check_file(path, flag, (".keras", ".h5", ".tflite")) == ".tflite":
        return path
    return load_model(path, unsafe, compile=compile, flag=flag, check=False)


def execute(fv) -> int:
    from kprune.bench import TFLMError, compare, measure

    if not fv.model:
        raise CommandError("--model is required: a .keras, .h5 or .tflite file")
    # Every input is checked before --out is created.
    model = _model_arg(fv.model, "--model", fv.unsafe_load, compile=fv.qat_epochs > 0)
    other = _model_arg(fv.compare, "--compare", fv.unsafe_load) if fv.compare else None
    eval_data = calibration = None
    if fv.data:
        data = load_data(fv.data, need_train=False)
        eval_data = data["test"] if data["test"] is not None else data["val"]
        # Without training inputs, int8 calibrates on the evaluation inputs.
        calibration = (data["train"][0][:fv.calibration_samples]
                       if data["train"] is not None else None)
    if fv.qat_epochs and isinstance(model, str):
        raise CommandError(f"--qat_epochs trains a Keras model before conversion: '{fv.model}' "
                           f"is already a .tflite flatbuffer; pass the .keras or .h5 model, "
                           f"or drop --qat_epochs")
    out = OutDir(fv.out, "bench", ("bench.txt", "bench.json"),
                 inputs=[fv.model, fv.compare] + ([fv.data] if fv.data and
                                                  os.path.isfile(fv.data) else []),
                 overwrite=fv.overwrite) if fv.out else None
    if fv.qat_epochs:
        model = qat.maybe_quantize_aware(model, fv, data if fv.data else None)
    kwargs = dict(eval_data=eval_data, representative_data=calibration,
                  quantizations=[None if q == "float32" else q for q in fv.quantizations],
                  latency_modes=list(fv.latency_modes), num_threads=fv.threads,
                  warmup=fv.warmup, runs=fv.runs, rounds=fv.rounds,
                  eval_samples=fv.eval_samples or None, tflm_arena=fv.tflm,
                  min_arena=fv.min_arena)
    logging.info("measuring %s%s", fv.model, f" against {fv.compare}" if fv.compare else "")
    try:
        if other is not None:
            result = compare(other, model, names=(_stem(fv.compare), _stem(fv.model)),
                             **kwargs)
        else:
            result = measure(model, name=_stem(fv.model), **kwargs)
    except (TypeError, ValueError, TFLMError) as e:
        raise CommandError(f"kprune bench: {e}") from e
    text = str(result)
    print(text)
    if out is not None:
        write_text(out("bench.txt"), text + "\n")
        write_json(out("bench.json"), result.to_dict())
        logging.info("wrote %s", out.path)
    return 0


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]
