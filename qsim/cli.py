"""The `qsim` command. Each subcommand lives in its own module, which exposes
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int`; this file only wires them.

Errors reach the user as one line, `qsim: error: ...`, never a traceback (`--debug` or QSIM_DEBUG=1
shows it): exit status 2 for a mistake in what was asked (a bad value, a missing file), 1 for a failure
while running, 130 on Ctrl-C (sweeps have stored every configuration that finished by then)."""
import argparse
import importlib
import os
import sys

SUBCOMMANDS = {
    "formats": "qsim.formats_cli",
    "hw": "qsim.hw.cli",
    "sweep": "qsim.sweep.cli",
    "gating": "qsim.hw.gating_cli",
    "asgd": "qsim.hw.asgd_cli",
    "overq": "qsim.overq_cli",
}


# What a user gets wrong (bad values, unknown names, missing files); anything else failed while running.
USER_ERRORS = (ValueError, TypeError, LookupError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="qsim", description="Low-precision arithmetic simulator for PyTorch.")
    parser.add_argument("--version", action="version", version=f"qsim {version('qsim')}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv=None) -> int:
    # User code named as module:callable (qsim hw mymod:build, qsim sweep --job mymod:train) is found in the
    # current directory, as `python -m` finds it.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    args = build_parser().parse_args(argv)
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
