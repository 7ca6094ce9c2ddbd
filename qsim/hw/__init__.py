"""qsim.hw: how a (quantized) network runs on an accelerator: cycles, stalls, traffic, energy.

    workload(model, example_input, precision=..., rules=...)   -> Workload (layers, shapes, bit widths)
    read_topology(path) / write_topology(workload, path)        SCALE-Sim topology CSV files
    load_accelerator(name_or_path, **changes)                   -> Accelerator (hw_models/*.toml)
    simulate(workload, accelerator, scalesim_compat=False)      -> Report (table, totals, CSV, plot)
    resnet18() / BUILTIN_MODELS                                  built-in networks (no weights needed)
    simulate_cache(addresses, size_bytes, line_bytes, ways)    -> {"hits", "misses"} of one LRU cache
    qsim.hw.fpga: estimate / largest_array / simulate / verilog  FPGA resources, fit, fmax, RTL (docs/fpga.md)
    qsim.hw.area: estimate / simulate                            ASIC mm² per component and power
"""
from .energy import ArithEnergy, EnergyTable, load_energy_table
from .extract import workload
from .layers import Layer, Workload
from .memory import MemoryLevel
from .models import BUILTIN_MODELS, resnet18
from .report import Report
from .spec import Accelerator, ArraySpec, MemorySpec, PESpec, load_accelerator
from .systolic import (DATAFLOW_CLASSES, InputStationary, OutputStationary, SystolicArray,
                       WeightStationary, simulate)
from .topology import read_topology, scalesim_conv, write_topology
from .toml_spec import available as available_descriptions
from .coherence import load_multicore, simulate_cache, simulate_coherence

__all__ = [
    "Accelerator", "ArithEnergy", "ArraySpec", "BUILTIN_MODELS", "DATAFLOW_CLASSES", "EnergyTable", "InputStationary", "Layer",
    "MemoryLevel", "MemorySpec", "OutputStationary", "PESpec", "Report", "SystolicArray", "WeightStationary",
    "Workload", "available_descriptions", "load_accelerator", "load_energy_table", "read_topology",
    "resnet18", "scalesim_conv", "simulate", "workload", "write_topology",
    "load_multicore", "simulate_cache", "simulate_coherence",
]
