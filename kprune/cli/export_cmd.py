"""``kprune export``: a Keras model to a LiteRT flatbuffer or TFLite-Micro C
sources, via `kprune.export`."""

import os

from absl import flags, logging

from kprune.cli import qat
from kprune.cli.common import (CommandError, OutDir, c_identifier, load_data, load_model,
                               write_json)

DOC = """\
kprune export: deploy a (pruned) Keras model (kprune.export).

  kprune export --model runs/lenet/pruned.keras --data fashion_mnist --out firmware/

--format micro (default): int8 flatbuffer + C array for TFLite-Micro, writes
OUT/NAME.tflite, OUT/NAME.cc and OUT/NAME.h (with the recommended tensor arena
size). --format tflite: OUT/NAME.tflite in the chosen --quantization.
int8 needs calibration inputs: --data (its training inputs are used).
--qat_epochs N (or --qat-epochs N): quantization-aware training with tfmot on
--data for N epochs first, then int8 from the QAT model (kprune[qat]).
Also writes OUT/export.json (paths and sizes).
"""


def define_flags(fv):
    flags.DEFINE_string("model", None, "the Keras model to export (.keras or .h5)",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "output directory; nothing is written elsewhere",
                        flag_values=fv)
    flags.DEFINE_enum("format", "micro", ["micro", "tflite"],
                      "micro: int8 flatbuffer + C source for TFLite-Micro; tflite: a "
                      "LiteRT flatbuffer", flag_values=fv)
    flags.DEFINE_enum("quantization", "int8", ["float32", "dynamic", "float16", "int8"],
                      "--format tflite: weight/activation types (micro is always int8)",
                      flag_values=fv)
    flags.DEFINE_string("data", None, "int8 calibration data: 'fashion_mnist' or a .npz "
                        "with x_train", flag_values=fv)
    flags.DEFINE_integer("calibration_samples", 200, "int8 calibration samples",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_string("name", None, "C identifier / file stem (default: from the model "
                        "file name)", flag_values=fv)
    flags.DEFINE_integer("arena_size", None, "micro: tensor arena size to write instead of "
                         "the measured one", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "write into an --out that holds other files, the "
                      "input, or another run's results (never over the input itself)",
                      flag_values=fv)
    qat.define_flags(fv)
    flags.DEFINE_bool("unsafe_load", False, "allow model files that run code when loaded "
                      "(Lambda layers); only for files you trust", flag_values=fv)


def execute(fv) -> int:
    from kprune.runtime.tflm import TFLMError
    from kprune.export import to_micro, to_tflite

    name = fv.name or c_identifier(os.path.splitext(os.path.basename(fv.model or ""))[0])
    model = load_model(fv.model, fv.unsafe_load, compile=fv.qat_epochs > 0)  # before --out
    out = OutDir(fv.out, "export", [name + ext for ext in (".tflite", ".cc", ".h")]
                 + ["export.json"], inputs=[fv.model] + ([fv.data] if fv.data and
                                                         os.path.isfile(fv.data) else []),
                 overwrite=fv.overwrite, exclusive=False)
    int8 = fv.format == "micro" or fv.quantization == "int8"
    if fv.format == "micro" and fv.quantization != "int8":
        raise CommandError("--format micro is always int8 (TFLite-Micro); drop "
                           f"--quantization {fv.quantization} or use --format tflite")
    calibration = None
    if int8:
        if not fv.data:
            raise CommandError("int8 export needs calibration inputs: pass --data "
                               "(fashion_mnist or a .npz with x_train)")
        data = load_data(fv.data)
        calibration = data["train"][0][:fv.calibration_samples]
        model = qat.maybe_quantize_aware(model, fv, data)
    elif fv.qat_epochs:
        raise CommandError(f"--qat_epochs trains for int8: it does not apply to "
                           f"--quantization {fv.quantization}")
    record = {"model": os.path.abspath(fv.model), "format": fv.format, "name": name,
              "qat_epochs": fv.qat_epochs}
    try:
        if fv.format == "micro":
            files = to_micro(model, name, out(), calibration, arena_size=fv.arena_size)
            record.update({"tflite": out(name + ".tflite"), "cc": files.cc, "h": files.h,
                           "model_bytes": files.model_bytes,
                           "arena_bytes": files.arena_bytes, "quantization": "int8"})
            logging.info("wrote %s, %s and %s: %d bytes model, %d bytes tensor arena",
                         record["tflite"], files.cc, files.h, files.model_bytes,
                         files.arena_bytes)
        else:
            quant = None if fv.quantization == "float32" else fv.quantization
            path = out(name + ".tflite")
            flat = to_tflite(model, quant, representative_data=calibration, path=path)
            record.update({"tflite": path, "model_bytes": len(flat),
                           "quantization": fv.quantization})
            logging.info("wrote %s (%s, %d bytes)", path, fv.quantization, len(flat))
    except (TypeError, ValueError, TFLMError) as e:
        raise CommandError(f"kprune export: {e}") from e
    write_json(out("export.json"), record)
    print("\n".join(f"{k}: {v}" for k, v in record.items()))
    return 0
