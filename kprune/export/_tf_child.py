"""The TensorFlow child process of `kprune.export.to_tflite` on the JAX and
PyTorch backends (its parent-side handle: `kprune.export.tf_child`).

The parent saves the model as ``.keras`` (the same weights, bit for bit), the
calibration arrays as ``.npz`` and the arguments as ``args.json`` in a work
directory; `main` loads them, runs `to_tflite` on the TensorFlow backend and
writes ``model.tflite``, or the conversion error's type and message as
``error.json``, there. `serve` is the persistent child: one work directory per
stdin line, ``done <status>`` per request on a protocol pipe of its own.

Usage (by `kprune.export.tf_child` only):
    python -m kprune.export._tf_child --serve     # the persistent child
    python -m kprune.export._tf_child WORKDIR     # one conversion, then exit
"""


import json
import os
import sys


def main(workdir: str) -> int:
    """Converts the request in `workdir`; 0 when model.tflite was written,
    1 when error.json was (the conversion error's type and message)."""
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
    finally:
        keras.backend.clear_session()  # a persistent child does not grow per request
    with open(os.path.join(workdir, "model.tflite"), "wb") as f:
        f.write(flat)
    return 0


def serve() -> int:
    """The persistent child: one work directory per stdin line, ``done
    <status>`` per request on the protocol pipe (the original stdout);
    everything else the process prints goes to stderr. Ends at stdin's EOF
    (the parent closed it or died)."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # converter and C++ prints must not reach the protocol pipe
    sys.stdout = sys.stderr
    import kprune.export.tflite  # noqa: F401 - TensorFlow and Keras loaded once

    for line in sys.stdin:
        workdir = line.strip()
        if not workdir:
            continue
        try:
            status = main(workdir)
        except Exception as err:  # noqa: BLE001 - unreadable request: reported, served on
            print(f"kprune TF child: {type(err).__name__}: {err}", file=sys.stderr)
            status = 2
        protocol.write(f"done {status}\n")
    return 0


if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    if sys.argv[1] == "--serve":
        sys.exit(serve())
    sys.exit(main(sys.argv[1]))
