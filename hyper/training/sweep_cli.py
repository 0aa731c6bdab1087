"""``train.py sweep`` and ``train.py plot``: compression curves from the command line.

    python train.py sweep --config configs/sweeps/digits.yaml [--shard 2/4] [--out DIR] [--set KEY=VALUE ...]
    python train.py plot results/digits [--metric test_acc] [--compare-to METHOD] [--out curve.png]

Every point of a sweep is a train.py config run in this process through the same code as a
single run (``run_config``); its report row is appended to the results file as it finishes.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from hyper.sweeps import finish, load_sweep, parse_shard, read_rows, run_sweep, summarize, summary_table
from hyper.sweeps.grid import Point, set_path
from hyper.sweeps.plot import plot_curves


def run_point(point: Point, run_dir: Path) -> dict[str, Any]:
    """Train and test one point in ``run_dir``; its report row.

    The point's config is written to ``run_dir/point.yaml`` and run from there, as
    ``train.py run --config`` would: jsonargparse resolves a ``class_path`` nested under a
    union-typed argument (``CharRNN(core=...)`` given a built core) from a file, not from a
    dict (it flattens the dict into keys the default value's type does not have).
    """
    from hyper.training.cli import HyperCLI  # Lightning and the CLI only when a point runs

    config = copy.deepcopy(point.config)
    config["seed_everything"] = point.seed
    set_path(config, "trainer.default_root_dir", str(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "point.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return HyperCLI(args=["run", "--config", str(path)]).report


def sweep_command(args: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="train.py sweep", description="Run a sweep: every point trained and tested, results appended.")
    parser.add_argument("--config", required=True, help="a sweep file (configs/sweeps/NAME.yaml)")
    parser.add_argument("--shard", help="run shard i of n (1-based), e.g. 2/4; shards' results merge")
    parser.add_argument("--out", help="results folder (default: results/NAME)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key of every point, as the sweep's overrides do (VALUE is YAML), "
        "e.g. --set data.init_args.path=tinyshakespeare.txt",
    )
    options = parser.parse_args(args)
    sweep = load_sweep(options.config)
    sweep = replace(sweep, overrides={**sweep.overrides, **dict(_key_value(item) for item in options.set)})
    shard_spec = parse_shard(options.shard) if options.shard else None
    folder = Path(options.out or Path("results") / sweep.name)
    run_sweep(sweep, folder, run_point, shard_spec)
    finish(sweep.name, folder, sweep.metric, compare_to=sweep.compare_to)


def _key_value(item: str) -> tuple[str, Any]:
    key, equals, value = item.partition("=")
    if not equals or not key:
        raise ValueError(f"--set takes KEY=VALUE (a dotted config key), got {item!r}")
    return key, yaml.safe_load(value)


def plot_command(args: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="train.py plot", description="Redraw a sweep's curve and table from its results.")
    parser.add_argument("results", help="a results folder or one results*.jsonl file")
    parser.add_argument("--metric", default="test_acc", help="the metric to plot (test_acc, test_bpc, ...)")
    parser.add_argument("--compare-to", help="measure compression against this method's network (a sweep's compare_to)")
    parser.add_argument("--out", help="the PNG to write (default: beside the results)")
    options = parser.parse_args(args)
    source = Path(options.results)
    entries = summarize(read_rows(source), options.metric, compare_to=options.compare_to)
    if not entries:
        raise ValueError(f"no row in {source} has the metric {options.metric!r}")
    print(summary_table(entries, options.metric))
    folder = source if source.is_dir() else source.parent
    png = Path(options.out) if options.out else folder / f"{folder.name}.png"
    print(f"plot: {plot_curves(entries, options.metric, png, title=folder.name)}")


COMMANDS = {"sweep": sweep_command, "plot": plot_command}
