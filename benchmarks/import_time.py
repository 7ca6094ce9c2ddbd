"""`import qsim` against `import torch`: the extra seconds qsim costs a script that only imports it.

    python benchmarks/import_time.py [--repeat 7]

Each import runs in a fresh interpreter, alternating the two, so load on the machine falls on both alike;
the medians and their difference are printed (target: within 0.3 s of torch's)."""
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
    torch_only, with_qsim = [], []
    for _ in range(args.repeat):
        torch_only.append(seconds("import torch"))
        with_qsim.append(seconds("import torch, qsim"))
    a, b = statistics.median(torch_only), statistics.median(with_qsim)
    print(f"import torch: {a:.2f} s   import torch, qsim: {b:.2f} s   qsim adds {b - a:+.2f} s "
          f"(medians of {args.repeat})")


if __name__ == "__main__":
    main()
