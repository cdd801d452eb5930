"""``kprune prune``: prune a saved Keras model and retrain it."""

import math
import os
import time

from absl import flags, logging

from kprune.atomic import atomic_save_model
from kprune.cli.common import (CommandError, OutDir, load_data, load_model, parse_option,
                               write_json, write_text)

DOC = """\
kprune prune: structured (channel) pruning of a saved Keras model.

  kprune prune --model in.keras --method iap --data fashion_mnist --out runs/lenet \\
      --epochs 2 --rounds 5 --target accuracy_loss=0.01 --tensorboard

Writes under --out only: pruned.keras (the returned model), result.json (every
round), summary.txt (before/after table), checkpoints/ (rerun the same command
to resume an interrupted run), tensorboard/ (--tensorboard), history.png and
widths.png (--plots, needs matplotlib).
"""

OUTPUTS = ("pruned.keras", "result.json", "summary.txt", "checkpoints", "tensorboard",
           "history.png", "widths.png")


def registered():
    """(methods, criteria, complexity modes) from the registries; third-party
    methods named in KPRUNE_PLUGINS or the 'kprune.methods' entry points are
    imported first."""
    from kprune.core.complexity_weights import MODES
    from kprune.methods import METHODS
    from kprune.methods.registry import load_plugins
    from kprune.scoring.criteria import CRITERIA

    try:
        load_plugins()
    except ImportError as e:
        raise CommandError(str(e)) from e
    return dict(METHODS), sorted(CRITERIA), list(MODES) + ["latency"]


def define_flags(fv):
    methods, criteria, modes = registered()
    flags.DEFINE_string("model", None, "the trained model to prune: a .keras or .h5 file",
                        flag_values=fv)
    names = ["iap"] + sorted(m for m in methods if m != "iap")
    flags.DEFINE_enum("method", "iap", names,
                      "pruning method: " + "; ".join(
                          f"{m} ({methods[m].summary.rstrip('.')})" for m in names),
                      flag_values=fv)
    flags.DEFINE_string("data", None,
                        "'fashion_mnist' or a .npz file with x_train, y_train and "
                        "optionally x_val, y_val, x_test, y_test", flag_values=fv)
    flags.DEFINE_string("out", None, "output directory; nothing is written elsewhere",
                        flag_values=fv)
    flags.DEFINE_integer("epochs", 1, "retraining epochs per round", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("rounds", 10, "number of rounds (aiap: maximum rounds)",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_string("target", None,
                        "stopping target: a number (allowed accuracy loss, e.g. 0.01), "
                        "accuracy_loss=0.01, params_reduction=0.8, macs_reduction=0.5, or "
                        "'none' (run every round); default: the method's own",
                        flag_values=fv)
    flags.DEFINE_float("rate", None, "ilp/iap: fraction of the channels removed per round "
                       "(default 0.1)", flag_values=fv)
    flags.DEFINE_enum("criterion", None, criteria,
                      "importance criterion of ilp / iap / aiap (default: the method's)",
                      flag_values=fv)
    flags.DEFINE_string("metric", None, "the validation metric every decision uses: "
                        "'accuracy' (default), a compiled result name ('loss', 'mae', "
                        "'<output>_accuracy') or a Keras metric name; a target other than "
                        "a [0, 1] accuracy is metric_loss=D or metric_loss_relative=F",
                        flag_values=fv)
    flags.DEFINE_enum("metric_direction", None, ["max", "min"],
                      "whether higher (max) or lower (min) --metric is better (default: "
                      "inferred from its name)", flag_values=fv)
    flags.DEFINE_list("ignored_layers", [], "comma-separated layer names never pruned",
                      flag_values=fv)
    flags.DEFINE_integer("min_channels", None, "keep at least this many channels per layer",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("round_to", None, "keep channel counts multiples of N",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", 32, "training batch size", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "random seed (data split, training, tie breaks)",
                         flag_values=fv)
    flags.DEFINE_enum("mode", None, modes + ["flops"],
                      "complexity method: what to reduce (parameters, MACs ('flops' is "
                      "read as MACs), peak activation memory, measured latency with "
                      "--option target_latency_ms=...)", flag_values=fv)
    flags.DEFINE_integer("target_memory_bytes", None,
                         "complexity method: peak activation memory budget in bytes "
                         "(e.g. a microcontroller's tensor arena)", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_multi_string("option", [],
                              "any other kprune.prune option as KEY=VALUE (VALUE read as a "
                              "Python literal), repeatable: --option max_fraction=0.5",
                              flag_values=fv)
    flags.DEFINE_float("val_fraction", 0.1, "validation fraction split off the training data "
                       "when the data has no x_val (seeded)", flag_values=fv)
    flags.DEFINE_integer("train_samples", 0, "use only the first N training samples "
                         "(0 = all)", lower_bound=0, flag_values=fv)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate, used only when the model "
                       "file holds no compiled optimizer", flag_values=fv)
    flags.DEFINE_string("loss", "sparse_categorical_crossentropy",
                        "loss, used only when the model file is not compiled", flag_values=fv)
    flags.DEFINE_bool("tensorboard", False, "write TensorBoard summaries to OUT/tensorboard",
                      flag_values=fv)
    flags.DEFINE_bool("plots", True, "write history.png and widths.png (needs matplotlib)",
                      flag_values=fv)
    flags.DEFINE_bool("progress", True, "show Keras progress output while retraining",
                      flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "write into an --out that holds other files, the "
                      "input, or another run's results (never over the input itself)",
                      flag_values=fv)
    flags.DEFINE_bool("unsafe_load", False,
                      "allow model files that run code when loaded (Lambda layers); only "
                      "for files you trust", flag_values=fv)


def parse_target(text):
    """'0.01' | 'none' | 'kind=value' -> a kprune.prune target."""
    if text is None or text == "":
        return None
    if text.lower() == "none":
        return "none"
    if "=" in text:
        kind, value = text.split("=", 1)
        try:
            return {kind.strip(): float(value)}
        except ValueError:
            raise CommandError(f"--target '{text}': the value after '=' must be a number") \
                from None
    try:
        return float(text)
    except ValueError:
        raise CommandError(f"--target '{text}': use a number, KIND=VALUE (accuracy_loss, "
                           "params_reduction, macs_reduction, metric_loss, "
                           "metric_loss_relative) or 'none'") from None


def _round_line(entry, baseline):
    acc = entry.get("val_accuracy")
    parts = [f"round {entry['round']} {entry.get('status', '')}:"]
    if acc is not None and math.isfinite(acc):
        parts.append(f"val_accuracy {acc:.4f}")
        if baseline is not None and entry["round"] != 0:
            parts.append(f"({100 * (acc - baseline['val_accuracy']):+.2f} pt)")
    if "params" in entry:
        parts.append(f"params {entry['params']:,}")
        if baseline is not None and entry["round"] != 0:
            parts.append(f"({baseline['params'] / max(entry['params'], 1):.2f}x smaller)")
    if "macs" in entry:
        parts.append(f"MACs {entry['macs']:,}")
    if entry.get("removed"):
        parts.append(f"removed {entry['removed']} channels")
    if entry.get("time_s") is not None:
        parts.append(f"[{entry['time_s']:.1f}s]")
    return " ".join(parts)


def execute(fv) -> int:
    import sys

    import keras

    from kprune.prune import prune
    from kprune.data import as_data, evaluate_accuracy

    model = load_model(fv.model, fv.unsafe_load)     # the inputs first, then --out
    data = load_data(fv.data, fv.val_fraction, fv.seed, fv.train_samples)
    out = OutDir(fv.out, "prune", OUTPUTS, inputs=[fv.model] + (
        [fv.data] if fv.data and os.path.isfile(fv.data) else []), overwrite=fv.overwrite)
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        logging.info("the model file holds no compiled optimizer: compiling with Adam(%g), "
                     "loss %s, metric accuracy", fv.learning_rate, fv.loss)
        model.compile(keras.optimizers.Adam(fv.learning_rate), fv.loss, metrics=["accuracy"])
    options = {"batch_size": fv.batch_size, "seed": fv.seed}
    for key in ("rate", "criterion", "min_channels", "round_to", "mode",
                "target_memory_bytes", "metric", "metric_direction"):
        if fv[key].value is not None:
            options[key] = fv[key].value
    if fv.ignored_layers:
        options["ignored_layers"] = list(fv.ignored_layers)
    for text in fv.option:
        key, value = parse_option(text)
        options[key] = value
    options["verbose"] = (1 if sys.stdout.isatty() else 2) if fv.progress else 0
    baseline = {}

    def on_round(entry, _model=None):
        if entry["round"] == 0:
            baseline.update(entry)
        logging.info("%s", _round_line(entry, baseline or None))

    logging.info("pruning '%s' (%s, %s parameters) with %s", fv.model, model.name,
                 f"{model.count_params():,}", fv.method)
    test = as_data(data["test"], fv.batch_size) if data["test"] is not None else None
    test_before = evaluate_accuracy(model, test) if test is not None else None
    t0 = time.time()
    try:
        result = prune(model, fv.method, train_data=data["train"], val_data=data["val"],
                       epochs=fv.epochs, rounds=fv.rounds, target=parse_target(fv.target),
                       out_dir=out("checkpoints"), on_round=on_round,
                       tensorboard_dir=out("tensorboard") if fv.tensorboard else None,
                       **options)
    except (TypeError, ValueError, NotImplementedError, FloatingPointError) as e:
        raise CommandError(f"kprune prune: {e}") from e
    elapsed = time.time() - t0
    record = result.to_dict()
    record.update({"model_file": os.path.abspath(fv.model), "data": fv.data,
                   "elapsed_s": elapsed})
    if test is not None:
        record["test_accuracy"] = {"before": test_before,
                                   "after": evaluate_accuracy(result.model, test)}
    atomic_save_model(result.model, out("pruned.keras"))
    write_json(out("result.json"), record)
    summary = result.summary()
    if "test_accuracy" in record:
        t = record["test_accuracy"]
        summary += (f"\ntest accuracy: {t['before']:.4f} -> {t['after']:.4f} "
                    f"({100 * (t['after'] - t['before']):+.2f} pt)")
    write_text(out("summary.txt"), summary + "\n")
    print(summary)
    if fv.plots:
        try:
            from kprune.reporting.plots import plot_history, plot_widths

            plot_history(result, out("history.png"))
            plot_widths(result.baseline["widths"], result.final["widths"], out("widths.png"))
        except ImportError as e:
            logging.warning("no plots written: %s", e)
    logging.info("done in %.1fs; wrote %s", elapsed, out.path)
    return 0
