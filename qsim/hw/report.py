"""The result of running a workload on an accelerator: per-layer table, totals, assumptions.

Exports `Report`: `.to_dataframe()`, `.to_csv(path)`, `.totals()`, a rich rendering (`print(report)`
via `rich`, or `.render()`), and `.plot(path)` (per-layer cycles and energy breakdown, PNG or SVG).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .energy import ENERGY_COMPONENTS


@dataclass(frozen=True, eq=False)
class Report:
    """Per-layer rows (one DataFrame) plus what produced them and what the model leaves out."""

    accelerator: object  # Accelerator (kept untyped here to avoid an import cycle)
    workload_name: str
    frame: pd.DataFrame
    assumptions: tuple[str, ...]
    batch: int = 1
    fpga: object = None  # qsim.hw.fpga.FpgaEstimate when run for an FPGA device
    asic: object = None  # qsim.hw.area.AsicEstimate when run for an ASIC node

    @classmethod
    def from_rows(cls, rows: list[dict], accelerator, workload, assumptions) -> "Report":
        frame = pd.DataFrame(rows).set_index("layer")
        return cls(accelerator, workload.name, frame, tuple(assumptions), workload.batch)

    def to_dataframe(self) -> pd.DataFrame:
        return self.frame.copy()

    def to_csv(self, path) -> Path:
        path = Path(path)
        self.frame.to_csv(path)
        return path

    def totals(self) -> dict:
        """Whole-network figures: cycles, latency, throughput at the clock, utilisation, energy."""
        f, accel = self.frame, self.accelerator
        cycles = int(f["total_cycles"].sum())
        seconds = cycles / (accel.clock_mhz * 1e6)
        peak = accel.pes * f["macs_per_pe_cycle"]
        totals = {
            "layers": len(f), "macs": int(f["macs"].sum()),
            "compute_cycles": int(f["compute_cycles"].sum()), "stall_cycles": int(f["stall_cycles"].sum()),
            "total_cycles": cycles, "latency_ms": seconds * 1e3,
            "inferences_per_s": self.batch / seconds,
            "compute_utilization": float(f["macs"].sum() / (f["compute_cycles"] * peak).sum()),
            "overall_utilization": float(f["macs"].sum() / (f["total_cycles"] * peak).sum()),
            "dram_bytes": float(f["dram_read_bytes"].sum() + f["dram_write_bytes"].sum()),
        }
        totals.update({f"energy_{c}_uj": float(f[f"energy_{c}_pj"].sum()) * 1e-6 for c in ENERGY_COMPONENTS})
        totals["energy_uj"] = float(f["energy_pj"].sum()) * 1e-6
        totals["energy_per_inference_uj"] = totals["energy_uj"] / self.batch
        for estimate in (self.fpga, self.asic):
            if estimate is not None:
                totals.update(estimate.totals(totals))
        return totals

    # --- rendering ------------------------------------------------------------------------------
    def render(self, assumptions: bool = True):
        """A rich renderable: the per-layer table, the totals and (unless `assumptions` is False) the
        assumptions."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        accel = self.accelerator
        title = (f"{self.workload_name} on {accel.name}: {accel.array.rows}x{accel.array.cols} "
                 f"{accel.array.dataflow.upper()}, {accel.clock_mhz:g} MHz, energy: {accel.energy.name}")
        table = Table(title=title, show_footer=True)
        t = self.totals()
        columns = [("layer", "total"), ("MMAC", f"{t['macs'] / 1e6:,.1f}"), ("w/a bits", ""),
                   ("cycles", f"{t['total_cycles']:,}"), ("stall", f"{t['stall_cycles']:,}"),
                   ("compute util", f"{t['compute_utilization']:.1%}"),
                   ("overall util", f"{t['overall_utilization']:.1%}"), ("energy µJ", f"{t['energy_uj']:,.1f}"),
                   ("DRAM share", f"{t['energy_dram_uj'] / t['energy_uj']:.0%}")]
        for i, (header, footer) in enumerate(columns):
            table.add_column(header, footer=footer, justify="left" if i == 0 else "right", overflow="fold")
        for name, r in self.frame.iterrows():
            table.add_row(str(name), f"{r.macs / 1e6:,.1f}", f"{r.weight_bits:g}/{r.act_bits:g}",
                          f"{int(r.total_cycles):,}", f"{int(r.stall_cycles):,}",
                          f"{r.compute_utilization:.1%}", f"{r.overall_utilization:.1%}",
                          f"{r.energy_pj * 1e-6:,.2f}", f"{r.energy_dram_pj / r.energy_pj:.0%}")
        breakdown = ", ".join(f"{c} {t[f'energy_{c}_uj']:,.1f}" for c in ENERGY_COMPONENTS)
        summary = Text(f"latency {t['latency_ms']:.3f} ms, {t['inferences_per_s']:,.1f} inferences/s, "
                       f"{t['energy_per_inference_uj']:,.1f} µJ/inference ({breakdown} µJ), "
                       f"DRAM traffic {t['dram_bytes'] / 2**20:,.2f} MiB")
        for estimate in (self.fpga, self.asic):
            if estimate is not None:
                summary.append("\n" + estimate.summary(t))
        notes = Text("Assumptions:\n" + "\n".join(f"  - {a}" for a in self.assumptions), style="dim")
        return Group(table, summary, *([notes] if assumptions else []))

    def __rich__(self):
        return self.render()

    def plot(self, path) -> Path:
        """Per-layer cycles (compute vs stall) above per-layer energy by component; PNG or SVG."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        f = self.frame
        x = range(len(f))
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.45 * len(f) + 3), 7.5), sharex=True)
        top.bar(x, f["compute_cycles"] / 1e3, label="compute", color="#4C72B0")
        top.bar(x, f["stall_cycles"] / 1e3, bottom=f["compute_cycles"] / 1e3, label="stall (DRAM)", color="#DD8452")
        top.set_ylabel("cycles (thousands)")
        top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        accel, t = self.accelerator, self.totals()
        top.set_title(f"{self.workload_name} on {accel.name} ({accel.array.rows}x{accel.array.cols} "
                      f"{accel.array.dataflow.upper()}): {t['total_cycles']:,} cycles, utilisation "
                      f"{t['compute_utilization']:.1%} of compute cycles, {t['overall_utilization']:.1%} overall")
        bottom_acc = 0
        colors = {"mac": "#55A868", "register": "#8172B2", "sram": "#CCB974", "dram": "#C44E52"}
        for c in ENERGY_COMPONENTS:
            values = f[f"energy_{c}_pj"] * 1e-6
            bottom.bar(x, values, bottom=bottom_acc, label=c, color=colors[c])
            bottom_acc = bottom_acc + values
        bottom.set_ylabel("energy (µJ)")
        bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        bottom.set_xticks(list(x), [str(i) for i in f.index], rotation=60, ha="right", fontsize=8)
        for axis in (top, bottom):
            axis.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
