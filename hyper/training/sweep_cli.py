"""``train.py sweep`` and ``train.py plot``: compression curves from the command line.

    python train.py sweep --config configs/sweeps/digits.yaml [--shard 2/4] [--out DIR]
    python train.py plot results/digits [--metric test_acc] [--x params|bytes|both] [--out curve.png]

Every point of a sweep is a train.py config run in this process through the same code as a
single run (``run_config``); its report row is appended to the results file as it finishes.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hyper.sweeps import finish, load_sweep, parse_shard, read_rows, run_sweep, summarize, summary_table
from hyper.sweeps.summary import smallest_within
from hyper.sweeps.grid import Point, set_path
from hyper.sweeps.plot import default_axes, plot_curves


def run_point(point: Point, run_dir: Path) -> dict[str, Any]:
    """Train and test one point in ``run_dir``; its report row."""
    from hyper.training.cli import run_config  # Lightning and the CLI only when a point runs

    config = copy.deepcopy(point.config)
    config["seed_everything"] = point.seed
    set_path(config, "trainer.default_root_dir", str(run_dir))
    return run_config(config)


def sweep_command(args: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="train.py sweep", description="Run a sweep: every point trained and tested, results appended.")
    parser.add_argument("--config", required=True, help="a sweep file (configs/sweeps/NAME.yaml)")
    parser.add_argument("--shard", help="run shard i of n (1-based), e.g. 2/4; shards' results merge")
    parser.add_argument("--out", help="results folder (default: results/NAME)")
    options = parser.parse_args(args)
    sweep = load_sweep(options.config)
    shard_spec = parse_shard(options.shard) if options.shard else None
    folder = Path(options.out or Path("results") / sweep.name)
    run_sweep(sweep, folder, run_point, shard_spec)
    finish(sweep.name, folder, sweep.metric)


def plot_command(args: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="train.py plot", description="Redraw a sweep's curve and table from its results.")
    parser.add_argument("results", help="a results folder or one results*.jsonl file")
    parser.add_argument("--metric", default="test_acc", help="the metric to plot (test_acc, test_bpc, ...)")
    parser.add_argument("--x", choices=("params", "bytes", "both"), default="both",
                        help="compression axis: parameters, bytes, or both side by side (default; "
                        "params only for results without byte counts)")
    parser.add_argument("--out", help="the PNG to write (default: beside the results)")
    options = parser.parse_args(args)
    source = Path(options.results)
    entries = summarize(read_rows(source), options.metric)
    if not entries:
        raise ValueError(f"no row in {source} has the metric {options.metric!r}")
    print(summary_table(entries, options.metric))
    within = smallest_within(entries)
    if within:
        print(f"\n{within}")
    folder = source if source.is_dir() else source.parent
    png = Path(options.out) if options.out else folder / f"{folder.name}.png"
    axes = default_axes(entries) if options.x == "both" else (options.x,)
    print(f"plot: {plot_curves(entries, options.metric, png, title=folder.name, axes=axes)}")


COMMANDS = {"sweep": sweep_command, "plot": plot_command}
