"""Run a sweep's points, skipping finished ones, then print the summary and draw the plot."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hyper.sweeps.grid import Point, Sweep, set_path, shard
from hyper.sweeps.plot import plot_curves
from hyper.sweeps.results import append_row, done_keys, read_rows, results_path
from hyper.sweeps.summary import summarize, summary_table

RunPoint = Callable[[Point, Path], dict[str, Any]]


def run_sweep(
    sweep: Sweep,
    folder: Path,
    run_point: RunPoint,
    shard_spec: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run this shard's unfinished points; returns the rows this call added.

    Args:
        sweep: the loaded sweep.
        folder: where results, per-point runs and the plot go.
        run_point: trains and tests one point in ``folder/runs/KEY``; returns the report row
            (``trainable_params``, ``compression_ratio``, metrics, wall time...).
        shard_spec: ``(i, n)`` to run only shard i of n.
        log: where progress lines go.
    """
    points = sweep.points()
    mine = shard(points, *shard_spec) if shard_spec else points
    done = done_keys(folder)
    todo = [p for p in mine if p.key not in done]
    log(f"sweep {sweep.name}: {len(points)} points, {len(mine)} in this shard, "
        f"{len(mine) - len(todo)} already done, {len(todo)} to run -> {folder}")
    path, added = results_path(folder, shard_spec), []
    for n, point in enumerate(todo, start=1):
        log(f"[{n}/{len(todo)}] {point.label}")
        start = time.perf_counter()
        report = run_point(with_teacher(point, folder), folder / "runs" / point.key)
        row = {
            **report,
            "source_knobs": report.get("knobs", {}),  # the source's full configuration
            "key": point.key,
            "method": point.method,
            "knobs": point.knobs,  # what this sweep varied
            "seed": point.seed,
            "sweep_wall_time_s": time.perf_counter() - start,
        }
        append_row(path, row)
        added.append(row)
    return added


def with_teacher(point: Point, folder: Path) -> Point:
    """``point`` with ``model.init_args.teacher`` set to its ``teacher_from`` method's tested
    checkpoint of the same seed (the point's key, its identity, is unchanged)."""
    if point.teacher_from is None:
        return point
    try:
        rows = read_rows(folder)
    except FileNotFoundError:
        rows = []
    found = [r for r in rows if r["method"] == point.teacher_from and r["seed"] == point.seed and r.get("tested_checkpoint")]
    if not found:
        raise ValueError(
            f"{point.label} distils from method {point.teacher_from!r} (seed {point.seed}), which has no finished "
            f"point in {folder} yet: run it first (with --shard, the shard that holds it)"
        )
    config = copy.deepcopy(point.config)
    set_path(config, "model.init_args.teacher", found[0]["tested_checkpoint"])
    return replace(point, config=config)


def finish(
    sweep_name: str, folder: Path, metric: str, log: Callable[[str], None] = print, compare_to: str | None = None
) -> Path:
    """Summarize every results file in ``folder``: print the table, write the PNG beside it."""
    entries = summarize(read_rows(folder), metric, compare_to=compare_to)
    if not entries:
        raise ValueError(f"no finished point in {folder} has the metric {metric!r}")
    log(summary_table(entries, metric))
    png = plot_curves(entries, metric, folder / f"{sweep_name}.png", title=sweep_name)
    log(f"plot: {png}")
    return png
