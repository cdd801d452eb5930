"""Child process for `kprune.export.to_tflite` on the JAX and PyTorch backends.

The LiteRT converter traces TensorFlow graphs, so a model that lives on the
JAX or PyTorch backend is converted by a Python child with
``KERAS_BACKEND=tensorflow``: the parent saves the model as ``.keras`` (the
same weights, bit for bit) and the calibration arrays as ``.npz``; this
module loads both, runs `to_tflite` with the same arguments and writes the
flatbuffer, or the conversion error's type and message, to files.

Usage (by `kprune.export.tflite` only):
    python -m kprune.export._tf_child WORKDIR
"""

import json
import os
import sys


def main(workdir: str) -> int:
    import keras
    import numpy as np

    from kprune.export.tflite import to_tflite

    with open(os.path.join(workdir, "args.json")) as f:
        args = json.load(f)
    calib = None
    if os.path.exists(os.path.join(workdir, "calibration.npz")):
        with np.load(os.path.join(workdir, "calibration.npz")) as z:
            calib = [z[f"a{i}"] for i in range(len(z.files))]
        calib = calib[0] if len(calib) == 1 else calib
    try:
        # The parent wrote this file from its own model a moment ago.
        model = keras.saving.load_model(os.path.join(workdir, "model.keras"), compile=False,
                                        safe_mode=False)
        flat = to_tflite(model, args["quantization"], calib, args["batch_size"],
                         per_channel=args["per_channel"])
    except Exception as err:  # noqa: BLE001 - handed back to the parent whole
        with open(os.path.join(workdir, "error.json"), "w") as f:
            json.dump({"type": type(err).__name__, "message": str(err)}, f)
        return 1
    with open(os.path.join(workdir, "model.tflite"), "wb") as f:
        f.write(flat)
    return 0


if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    sys.exit(main(sys.argv[1]))
