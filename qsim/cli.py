"""The `qsim` command. Each subcommand lives in its own module, which exposes
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int`; this file only wires them."""
import argparse
import importlib
import sys

SUBCOMMANDS = {
    "formats": "qsim.formats_cli",
    "hw": "qsim.hw.cli",
    "sweep": "qsim.sweep.cli",
}
SUBCOMMANDS["overq"] = "qsim.overq_cli"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qsim", description="Low-precision arithmetic simulator for PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
