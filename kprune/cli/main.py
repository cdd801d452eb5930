"""Entry point of the ``kprune`` console script: subcommand dispatch, absl
flag parsing and logging."""

import os
import sys
from typing import Optional, Sequence

from absl import flags, logging

from kprune.cli import bench_cmd, export_cmd, prune_cmd
from kprune.cli.common import CommandError, format_help, new_flag_values

COMMANDS = {"prune": prune_cmd, "bench": bench_cmd, "export": export_cmd}

USAGE = """\
usage: kprune <command> [--flag=value ...]

Structured (channel) pruning for Keras models.

commands:
  prune    prune a saved model with a registered method and retrain it
  bench    LiteRT latency, TFLite-Micro arena, sizes and accuracy of a model
  export   int8 TFLite flatbuffer and C array for TFLite-Micro

'kprune <command> --help' lists every flag of a command.
"""

_HELP = ("--help", "-h", "--helpfull", "-help", "--helpshort")


def _setup_logging():
    # absl logging reads its flags; the global FLAGS holds only absl's own
    # (--verbosity is shared into every subcommand's flags).
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    logging.use_absl_handler()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``kprune`` with `argv` (``argv[0]`` is the program name); returns the
    exit status: 0 done, 2 usage or input error, 1 unexpected failure.

    Example:
        >>> main(["kprune", "export", "--model", "pruned.keras",
        ...       "--data", "fashion_mnist", "--out", "firmware"])
        0
    """
    argv = list(sys.argv if argv is None else argv)
    prog = "kprune"
    args = argv[1:]
    if not args or args[0] in _HELP or args[0] == "help":
        if len(args) > 1 and args[0] == "help" and args[1] in COMMANDS:
            args = [args[1], "--help"]
        else:
            print(USAGE)
            return 0 if args else 2
    command = args[0]
    if command not in COMMANDS:
        sys.stderr.write(f"{prog}: unknown command '{command}'\n\n{USAGE}")
        return 2
    module = COMMANDS[command]
    fv = new_flag_values()
    try:
        module.define_flags(fv)
    except CommandError as e:
        sys.stderr.write(f"{prog} {command}: error: {e}\n")
        return 2
    if any(a in _HELP for a in args[1:]):
        print(format_help(f"{prog} {command}", module.DOC, fv))
        return 0
    # --qat-epochs is --qat_epochs: absl flag names use underscores.
    args = [_underscored(a) for a in args]
    try:
        rest = fv([f"{prog} {command}"] + args[1:])
    except flags.Error as e:
        sys.stderr.write(f"{prog} {command}: {e}\n(see '{prog} {command} --help')\n")
        return 2
    if len(rest) > 1:
        sys.stderr.write(f"{prog} {command}: unexpected arguments {rest[1:]}; every input "
                         f"is a --flag (see '{prog} {command} --help')\n")
        return 2
    _setup_logging()
    if fv["verbosity"].present == 0:
        logging.set_verbosity(logging.INFO)
    try:
        return int(module.execute(fv) or 0)
    except CommandError as e:
        logging.error("%s", e)
        sys.stderr.write(f"{prog} {command}: error: {e}\n")
        return 2


def _underscored(arg: str) -> str:
    if not arg.startswith("--") or arg == "--":
        return arg
    name, eq, value = arg[2:].partition("=")
    return "--" + name.replace("-", "_") + eq + value


def run():
    """Console-script entry point (``kprune``, declared in setup.cfg)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())


#: Flags of the former argparse ``kprune-bench`` and what replaced them.
#: (Dashed spellings of current flags, e.g. --eval-samples, are accepted as they are.)
_OLD_BENCH_FLAGS = {"--eval-data": "--data", "--json": "--out (writes OUT/bench.json)",
                    "--calibration-data": "--data", "--no-tflm": "--notflm",
                    "--no-min-arena": "--nomin_arena"}


def bench_main(argv: Optional[Sequence[str]] = None) -> int:
    """``kprune-bench MODEL [--flag ...]``: the same command as ``kprune bench``
    (one set of flags), with the model as an optional first argument.

    Example:
        >>> bench_main(["kprune-bench", "pruned.keras", "--compare", "lenet.keras",
        ...             "--data", "fashion_mnist"])
        0
    """
    argv = list(sys.argv if argv is None else argv)
    args = argv[1:]
    for a in args:
        old = a.split("=", 1)[0]
        if old in _OLD_BENCH_FLAGS:
            sys.stderr.write(f"kprune-bench: {old} is now {_OLD_BENCH_FLAGS[old]}; "
                             "kprune-bench takes the flags of 'kprune bench' "
                             "(see 'kprune bench --help')\n")
            return 2
    if args and not args[0].startswith("-"):
        args = ["--model", args[0]] + args[1:]
    return main(["kprune", "bench"] + args)


def run_bench():
    """Console-script entry point of ``kprune-bench``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(bench_main())


if __name__ == "__main__":
    run()
