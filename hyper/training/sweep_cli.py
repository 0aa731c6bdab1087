"""``train.py sweep`` and ``train.py plot``: compression curves from the command line.

    python train.py sweep --config configs/sweeps/digits.yaml [--shard 2/4] [--out DIR] [--set KEY=VALUE ...]
    python train.py sweep --config ... --launcher slurm --slurm.time 600 [--slurm.KEY VALUE] [--tasks N] [--wait]
    python train.py plot results/digits [--metric test_acc] [--x params|bytes|both] [--compare-to METHOD] [--out curve.png]

Every point of a sweep is a train.py config run in this process through the same code as a
single run (``hyper_cli.run_config``); its report row is appended to the results file as it
finishes. Every point is built and checked before the first one runs, so a sweep with a bad
point stops before it trains anything. With ``--launcher`` the points run in the tasks of a job
array instead, each task a shard run by the same code (``hyper.sweeps.launchers``).
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
from hyper.sweeps.summary import default_tolerance, smallest_within
from hyper.sweeps.grid import Point, set_path
from hyper.sweeps.launchers import LAUNCHERS, launch, split_slurm_options, wait
from hyper.sweeps.plot import default_axes, plot_curves
from hyper.training.errors import USER_ERRORS, one_line
from hyper.training.folders import check_output_folder
from hyper.training.hyper_cli import check_config, run_config


def point_config(point: Point, run_dir: Path) -> dict[str, Any]:
    """The train.py config a point runs: its seed, and its run folder under the sweep's."""
    config = copy.deepcopy(point.config)
    config["seed_everything"] = point.seed
    set_path(config, "trainer.default_root_dir", str(run_dir))
    return config


def run_point(point: Point, run_dir: Path, resume: Path | None) -> dict[str, Any]:
    """Train and test one point in ``run_dir`` (resumed from ``resume``); its report row."""
    return run_config(point_config(point, run_dir), ckpt_path=resume)


def check_point(point: Point, run_dir: Path) -> None:
    """Build and check one point (its files included) without running it; one line naming it."""
    try:
        check_config(point_config(point, run_dir))
    except USER_ERRORS as error:
        raise ValueError(f"sweep point {point.label}: {one_line(error)}") from None


# A cluster task's accelerator, devices and nodes are its own: points are checked here on this CPU.
HERE = {"trainer.accelerator": "cpu", "trainer.devices": 1, "trainer.num_nodes": 1, "trainer.strategy": "auto",
        "trainer.precision": "32-true"}


def check_point_here(point: Point, run_dir: Path) -> None:
    """``check_point`` on this machine's CPU, before a launcher submits the point elsewhere."""
    config = copy.deepcopy(point.config)
    for path, value in HERE.items():
        set_path(config, path, value)
    check_point(replace(point, config=config), run_dir)


def sweep_command(args: Sequence[str], *, config_dir: Path = Path("configs")) -> None:
    parser = argparse.ArgumentParser(
        prog="train.py sweep", description="Run a sweep: every point trained and tested, results appended.",
        exit_on_error=False,
    )
    parser.add_argument("--config", help="a sweep file (configs/sweeps/NAME.yaml)")
    parser.add_argument("--shard", help="run shard i of n (1-based), e.g. 2/4; shards' results merge")
    parser.add_argument("--out", help="results folder (default: results/NAME)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key of every point, as the sweep's overrides do (VALUE is YAML), "
        "e.g. --set data.init_args.path=tinyshakespeare.txt",
    )
    parser.add_argument("--launcher", choices=LAUNCHERS, help="submit the points as a job array through submitit "
                        "(slurm; local: subprocesses here) instead of running them in this process; "
                        "--slurm.KEY VALUE sets submitit's SlurmExecutor parameter KEY (docs/cli.md)")
    parser.add_argument("--tasks", type=int, help="with --launcher: the array's size, the sweep in that many "
                        "shards (default: one point per task)")
    parser.add_argument("--wait", action="store_true", help="with --launcher: wait for every task, then summarize")
    slurm, args = split_slurm_options(args)
    options = _parse(parser, args, required={"config": "--config SWEEP.yaml"})
    _check_launch_options(options, slurm)
    sweep = load_sweep(_sweep_file(options.config, config_dir))
    sweep = replace(sweep, overrides={**sweep.overrides, **dict(_key_value(item) for item in options.set)})
    shard_spec = parse_shard(options.shard) if options.shard else None
    folder = Path(options.out or Path("results") / sweep.name)
    check_output_folder(folder, flag="sweep --out" if options.out else "the results folder")
    if options.launcher is None:
        run_sweep(sweep, folder, run_point, shard_spec, check_point=check_point)
    else:
        jobs = launch(sweep, folder, run_point, launcher=options.launcher, options=slurm, tasks=options.tasks,
                      check_point=check_point, check_here=check_point_here)
        if not options.wait:
            print(f"rows go to {folder}/results.shard-*.jsonl as points finish; then: python train.py plot {folder}")
            return
        wait(jobs)
    finish(sweep.name, folder, sweep.metric, compare_to=sweep.compare_to)


def _check_launch_options(options: argparse.Namespace, slurm: dict[str, str]) -> None:
    given = [flag for flag, on in (("--tasks", options.tasks is not None), ("--wait", options.wait),
                                   ("--slurm.*", bool(slurm))) if on]
    if options.launcher is None and given:
        raise ValueError(f"{' and '.join(given)} go with --launcher slurm (or local)")
    if options.launcher is not None and options.shard:
        raise ValueError("--launcher makes the shards itself, one per task: give --tasks N instead of --shard")


def _key_value(item: str) -> tuple[str, Any]:
    key, equals, value = item.partition("=")
    if not equals or not key:
        raise ValueError(f"--set takes KEY=VALUE (a dotted config key), got {item!r}")
    return key, yaml.safe_load(value)


def plot_command(args: Sequence[str], *, config_dir: Path = Path("configs")) -> None:
    parser = argparse.ArgumentParser(
        prog="train.py plot", description="Redraw a sweep's curve and table from its results.", exit_on_error=False
    )
    parser.add_argument("results", nargs="?", help="a results folder or one results*.jsonl file")
    parser.add_argument("--metric", default="test_acc", help="the metric to plot (test_acc, test_bpc, ...)")
    parser.add_argument("--x", choices=("params", "bytes", "both"), default="both",
                        help="compression axis: parameters, bytes, or both side by side (default; "
                        "params only for results without byte counts)")
    parser.add_argument("--compare-to", help="measure compression against this method's network (a sweep's compare_to)")
    parser.add_argument("--within", type=float, help="the tolerance of the smallest-size table: how much "
                        "worse than plain counts as as good (default: 1 point of error for accuracies, "
                        "0.1 of other metrics, e.g. bits per character)")
    parser.add_argument("--out", help="the PNG to write (default: beside the results)")
    options = _parse(parser, args, required={"results": "a results folder (results/NAME)"})
    source = Path(options.results)
    entries = summarize(read_rows(source), options.metric, compare_to=options.compare_to)
    if not entries:
        raise ValueError(f"no row in {source} has the metric {options.metric!r}")
    print(summary_table(entries, options.metric))
    within = smallest_within(entries, points=options.within if options.within is not None else default_tolerance(options.metric))
    if within:
        print(f"\n{within}")
    folder = source if source.is_dir() else source.parent
    png = Path(options.out) if options.out else folder / f"{folder.name}.png"
    check_output_folder(png.parent, flag="plot --out")
    axes = default_axes(entries) if options.x == "both" else (options.x,)
    print(f"plot: {plot_curves(entries, options.metric, png, title=folder.name, axes=axes)}")


def _parse(parser: argparse.ArgumentParser, args: Sequence[str], required: dict[str, str]) -> argparse.Namespace:
    """Options, or ValueError in one line (argparse would print its usage and exit)."""
    try:
        options, unknown = parser.parse_known_args(args)
    except argparse.ArgumentError as error:
        raise ValueError(f"{parser.prog}: {error}") from None
    if unknown:
        raise ValueError(f"{parser.prog} does not take {' '.join(unknown)} (see {parser.prog} --help)")
    missing = [shown for name, shown in required.items() if getattr(options, name) is None]
    if missing:
        raise ValueError(f"{parser.prog} needs {' and '.join(missing)}")
    return options


def _sweep_file(name: str, config_dir: Path) -> Path:
    """``name`` as given, else under the repository (``configs/sweeps/x.yaml`` from anywhere)."""
    given = Path(name)
    return next((p for p in (given, config_dir.parent / given) if p.is_file()), given)


COMMANDS = {"sweep": sweep_command, "plot": plot_command}
