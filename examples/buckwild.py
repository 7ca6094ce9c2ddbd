"""Buckwild! (De Sa, Feldman, Ré, Olukotun, ISCA 2017) on simulated multicores: three findings.

    python examples/buckwild.py --out buckwild_out        # about 3-5 minutes on a laptop core

1. Precision in the bandwidth-bound regime: one worker streams a dense data set larger than a 1 MiB
   last-level cache (multicore_4_a72). Narrower D and M move fewer lines and fill more SIMD lanes, so
   cycles per iteration fall while iterations to target stay put -- until M is too coarse for the model.
2. The obstinate cache: 16 workers on the small digits model (multicore_16) fight over a few model lines;
   ignoring invalidations with probability q cuts coherence misses, costs statistical efficiency, and
   the net time to target shows where it pays and where it stops.
3. The roofline: every table's `bound` column says which of compute, bandwidth and communication limits
   each configuration; the sparse problem shows how it moves with workers and precision.
"""
import argparse
from pathlib import Path

from rich.console import Console

from qsim.hw import asgd


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("buckwild_out"), help="folder for CSV files and plots")
    parser.add_argument("--iterations", type=int, default=4000, help="SGD iterations per configuration")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    console = Console(width=200)
    studies = {
        "1_precision_bandwidth_bound": asgd.run(
            asgd.dense_problem(), workers=[1, 4], accelerator="multicore_4_a72", iterations=args.iterations,
            dmgc=["D32M32G32C32", "D16M16G16C16", "D8M16G16C16", "D8M8G16C8"]),
        "2_obstinate_cache_digits": asgd.run(
            asgd.digits_problem(), workers=16, accelerator="multicore_16", iterations=args.iterations,
            dmgc=["D32M32G32C32", "D8M16G16C16"], obstinate_q=[0.0, 0.5, 0.9, 1.0]),
        "3_roofline_sparse": asgd.run(  # its loss falls slowly: twice the iterations, so every run can reach it
            asgd.sparse_problem(), workers=[1, 4, 16], accelerator="multicore_16", iterations=2 * args.iterations,
            dmgc=["D32M32G32C32", "D8M16G16C16"], obstinate_q=[0.0, 0.9]),
    }
    for name, report in studies.items():
        console.rule(name)
        console.print(report.render().renderables[0])
        report.to_csv(args.out / f"{name}.csv")
        report.plot(args.out / f"{name}.png")
    console.print("Assumptions:", *(f"  - {a}" for a in report.assumptions[:5]), sep="\n", style="dim")
    console.print(f"CSV files and plots in {args.out}/")


if __name__ == "__main__":
    main()
