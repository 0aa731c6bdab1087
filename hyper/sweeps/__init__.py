"""Sweeps: grids of runs over knobs and sources, resumable and shardable, with curves."""

from hyper.sweeps.grid import Point, Sweep, load_sweep, parse_shard, shard
from hyper.sweeps.results import append_row, read_rows
from hyper.sweeps.runner import finish, run_sweep
from hyper.sweeps.summary import Entry, pareto_front, summarize, summary_table

__all__ = [
    "Entry",
    "Point",
    "Sweep",
    "append_row",
    "finish",
    "load_sweep",
    "pareto_front",
    "parse_shard",
    "read_rows",
    "run_sweep",
    "shard",
    "summarize",
    "summary_table",
]
