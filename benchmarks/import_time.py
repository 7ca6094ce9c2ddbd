"""`import qsim` against `import torch`: the extra seconds qsim costs a script that only imports it, and
the start-up of the `qsim` command (`qsim --help`: its parser, which imports no subcommand's module).

    python benchmarks/import_time.py [--repeat 7]

Each import runs in a fresh interpreter, alternating the two, so load on the machine falls on both alike;
the medians and their differences are printed (target: within 0.3 s of torch's)."""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def seconds(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    seconds("import torch, qsim")  # warm the file cache
    torch_only, with_qsim, command = [], [], []
    for _ in range(args.repeat):
        torch_only.append(seconds("import torch"))
        with_qsim.append(seconds("import torch, qsim"))
        command.append(seconds("from qsim.cli import build_parser; build_parser([]).format_help()"))
    a, b, c = statistics.median(torch_only), statistics.median(with_qsim), statistics.median(command)
    print(f"import torch: {a:.2f} s   import torch, qsim: {b:.2f} s   qsim adds {b - a:+.2f} s   "
          f"qsim --help: {c:.2f} s ({c - a:+.2f} s) (medians of {args.repeat})")


if __name__ == "__main__":
    main()
