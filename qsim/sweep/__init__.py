"""Precision sweeps: run one job under many precision configurations and find the error/cost frontier.

    from qsim.sweep import load_sweep, run_sweep, ResultStore, frontier
    spec = load_sweep("examples/sweep_space.toml")
    with ResultStore("results.db") as store:
        run_sweep(spec.job, spec.space.configs(), store, seed=spec.seed)   # resumable
        table = frontier(store.to_dataframe(spec.job.name), spec.objectives)

Modules: space (configurations and the TOML schema), costs (memory and bit-operations from the model),
job (Job, seeds, result keys), jobs (built-in digits and matmul jobs), store (SQLite), runner (any
concurrent.futures executor or dask Client), frontier (Pareto mask, table, comparison), plot,
budget (active frontier estimation), sweepfile (sweep TOML files), cli (`qsim sweep`),
meta (frontiers of a new task from a few evaluations and earlier tasks: PEPPP), meta_tasks (the
tasks of the shipped meta-training matrix).
"""
from .budget import BudgetResult, active_frontier
from .costs import DEFAULT_COSTS, Cost, LayerProfile, ModelProfile, profile_model
from .frontier import compare_frontiers, frontier, frontier_table, pareto_mask
from .job import Job, config_seed, result_key
from .plot import plot_frontier
from .runner import SweepSummary, default_executor, run_sweep
from .space import ROLES, Config, Space, grid_space, space_from_dict
from .store import Record, ResultStore
from .sweepfile import SweepSpec, load_sweep
from .meta import MetaData, MetaEstimate, load_meta, meta_frontier, meta_metrics

__all__ = ["BudgetResult", "active_frontier", "DEFAULT_COSTS", "Cost", "LayerProfile", "ModelProfile",
           "profile_model", "compare_frontiers", "frontier", "frontier_table", "pareto_mask", "Job", "config_seed",
           "result_key", "plot_frontier", "SweepSummary", "default_executor", "run_sweep", "ROLES", "Config",
           "Space", "grid_space", "space_from_dict", "Record", "ResultStore", "SweepSpec", "load_sweep",
           "MetaData", "MetaEstimate", "load_meta", "meta_frontier", "meta_metrics"]
