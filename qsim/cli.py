"""The `qsim` command (also `python -m qsim`). Each subcommand lives in its own module, which exposes
`add_arguments(parser)` and `run(args) -> int`; this file only wires them.

Errors reach the user as one line, `qsim: error: ...`, never a traceback (`--debug` or QSIM_DEBUG=1
shows it): exit status 2 for a mistake in what was asked (a bad value, a missing file), 1 for a failure
while running, 130 on Ctrl-C (sweeps have stored every configuration that finished by then)."""
import argparse
import importlib
import os
import sys

# name: (module, one line of help). The module exposes add_arguments(parser) and run(args) -> int; it is
# imported only when its command runs, so `qsim --help` and each command load nothing of the others.
SUBCOMMANDS = {
    "formats": ("qsim.formats_cli", "list the named formats, their limits, and their error on a built-in tensor"),
    "hw": ("qsim.hw.cli", "Cycles, stalls, utilisation and energy of a network on a systolic-array accelerator."),
    "sweep": ("qsim.sweep.cli", "run a precision sweep (default: a small CNN on sklearn digits) and show its "
                                "error/cost Pareto frontier"),
    "gating": ("qsim.hw.gating_cli", "Channel gating end to end: train a gated CNN on digits, measure its gates, "
                                     "simulate the accelerator."),
    "asgd": ("qsim.hw.asgd_cli", "Asynchronous low-precision SGD on a multicore with coherent (or obstinate) "
                                 "caches: time and energy to target."),
    "overq": ("qsim.overq_cli", "OverQ vs clipping and OCS: PTQ of a CNN on scikit-learn digits, outlier coverage, "
                                "hardware cost"),
}


# What a user gets wrong (bad values, unknown names, missing files); anything else failed while running.
USER_ERRORS = (ValueError, TypeError, LookupError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its own mistakes (a bad option value, a missing argument) reported in the
    same `qsim: error:` line as every other mistake."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"qsim: error: {message}\n")


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The parser of `qsim`, with the options of the command named in `argv` (default sys.argv)."""
    from importlib.metadata import version

    # --version, --debug and --help take no value, so the first word that is not an option is the command
    chosen = next((word for word in (sys.argv[1:] if argv is None else argv) if not word.startswith("-")), None)
    parser = _Parser(prog="qsim", description="Low-precision arithmetic simulator for PyTorch.")
    parser.add_argument("--version", action="version", version=f"qsim {version('qsim')}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, (module_name, help_line) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_line, description=help_line)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(handler=module.run)
    return parser


def main(argv=None) -> int:
    # User code named as module:callable (qsim hw mymod:build, qsim sweep --job mymod:train) is found in the
    # current directory, as `python -m` finds it.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    args = build_parser(argv).parse_args(argv)
    debug = args.debug or os.environ.get("QSIM_DEBUG", "") not in ("", "0")
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("qsim: interrupted (what finished is stored; run the same command again to continue)",
              file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the command line reports every failure in one line
        if debug:
            raise
        user = isinstance(err, USER_ERRORS)
        detail = str(err) if user else f"{type(err).__name__}: {err}"
        print(f"qsim: error: {detail}" + ("" if user else " (--debug shows the traceback)"), file=sys.stderr)
        return 2 if user else 1


if __name__ == "__main__":
    sys.exit(main())
