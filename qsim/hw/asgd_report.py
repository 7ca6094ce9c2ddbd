"""The result of an asynchronous-SGD study: one row per (workers, DMGC, q), time and energy to target.

Exports `AsgdReport`: `.to_dataframe()`, `.to_csv(path)`, a rich rendering (`print` via rich, or
`.render()`), `.plot(path)` (loss against simulated time per precision and q; throughput against
cores) and `.curves()` (every loss curve in one long table).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True, eq=False)
class AsgdReport:
    problem: str
    machine: object        # coherence.MulticoreSpec
    traces: list           # asgd.Trace per configuration
    target_loss: float
    assumptions: tuple[str, ...]

    def row(self, t) -> dict:
        """One configuration's columns (see the module docstring)."""
        hz = t.clock_ghz * 1e9
        n = t.iterations
        c = t.counters
        per_iteration_pj = sum(t.energy_pj.values()) / n
        iterations_to = t.iterations_to(self.target_loss)
        cycles_to = t.cycles_to(self.target_loss)
        return {
            "workers": t.workers, "dmgc": t.dmgc.signature, "q": t.obstinate_q, "rounding": t.rounding,
            "iterations": n, "iterations_to_target": iterations_to,
            "cycles_per_iteration": t.total_cycles / n,
            "coherence_misses_per_iteration": c["coherence_miss"] / n,
            "invalidations_per_iteration": c["invalidation_sent"] / n,
            "ignored_per_iteration": c["invalidation_ignored"] / n,
            "stale_read_fraction": t.staleness[1:].sum() / max(t.staleness.sum(), 1),
            "dram_bytes_per_iteration": t.extra["dram_bytes"] / n,
            "bound": t.bound,
            "iterations_per_s": n / (t.total_cycles / hz),
            "time_to_target_ms": cycles_to / hz * 1e3,
            "energy_per_iteration_nj": per_iteration_pj * 1e-3,
            "energy_to_target_uj": (per_iteration_pj * iterations_to * 1e-6 if math.isfinite(iterations_to)
                                    else math.inf),
            "final_loss": float(t.loss[-1]),
        }

    def to_dataframe(self) -> pd.DataFrame:
        return pd.DataFrame([self.row(t) for t in self.traces])

    def to_csv(self, path) -> Path:
        path = Path(path)
        self.to_dataframe().to_csv(path, index=False)
        return path

    def curves(self) -> pd.DataFrame:
        """Every record of every run: workers, dmgc, q, iterations, simulated seconds, loss."""
        frames = [pd.DataFrame({"workers": t.workers, "dmgc": t.dmgc.signature, "q": t.obstinate_q,
                                "iterations": t.iterations_done, "seconds": t.cycles_at / (t.clock_ghz * 1e9),
                                "loss": t.loss}) for t in self.traces]
        return pd.concat(frames, ignore_index=True)

    def render(self, assumptions: bool = True):
        """A rich renderable: the table per (workers, DMGC, q) and (unless `assumptions` is False) the assumptions."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        f = self.to_dataframe()
        table = Table(title=f"{self.problem} on {self.machine.name}: target loss {self.target_loss:.4f}")
        columns = [("W", "workers", "{:d}"), ("DMGC", "dmgc", "{}"), ("q", "q", "{:g}"),
                   ("iters to target", "iterations_to_target", "{:,.0f}"),
                   ("cycles/iter", "cycles_per_iteration", "{:,.0f}"),
                   ("coh. miss/iter", "coherence_misses_per_iteration", "{:.2f}"),
                   ("inval/iter", "invalidations_per_iteration", "{:.2f}"),
                   ("stale reads", "stale_read_fraction", "{:.1%}"), ("bound", "bound", "{}"),
                   ("Miter/s", "iterations_per_s", "{:.2f}"), ("ms to target", "time_to_target_ms", "{:.3f}"),
                   ("µJ to target", "energy_to_target_uj", "{:,.1f}"), ("final loss", "final_loss", "{:.4f}")]
        for i, (header, _, _) in enumerate(columns):
            table.add_column(header, justify="left" if i < 2 else "right", overflow="fold")
        for _, row in f.iterrows():
            cells = []
            for _, key, fmt in columns:
                value = row[key] / 1e6 if key == "iterations_per_s" else row[key]
                cells.append("never" if isinstance(value, float) and math.isinf(value) else fmt.format(value))
            table.add_row(*cells)
        notes = Text("Assumptions:\n" + "\n".join(f"  - {a}" for a in self.assumptions), style="dim")
        return Group(table, *([notes] if assumptions else []))

    def __rich__(self):
        return self.render()

    def plot(self, path) -> Path:
        """Left: loss vs simulated time per (DMGC, q) at the most workers; right: throughput vs cores."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        f = self.to_dataframe()
        most = f["workers"].max()
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        for t in self.traces:
            if t.workers == most:
                left.plot(t.cycles_at / (t.clock_ghz * 1e9) * 1e3, t.loss,
                          label=f"{t.dmgc.signature} q={t.obstinate_q:g}")
        left.axhline(self.target_loss, color="grey", linestyle=":", label="target")
        left.set_xlabel("simulated time (ms)")
        left.set_ylabel("training loss")
        left.set_title(f"{self.problem}, {most} workers")
        left.legend(fontsize=8)
        for (dmgc, q), group in f.groupby(["dmgc", "q"]):
            group = group.sort_values("workers")
            right.plot(group["workers"], group["iterations_per_s"] / 1e6, marker="o", label=f"{dmgc} q={q:g}")
        right.set_xlabel("workers (cores)")
        right.set_ylabel("throughput (M iterations/s)")
        right.set_title(f"throughput on {self.machine.name}")
        right.legend(fontsize=8)
        for axis in (left, right):
            axis.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
