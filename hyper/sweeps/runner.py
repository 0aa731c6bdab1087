"""Run a sweep's points, skipping finished ones, then print the summary and draw the plot.

Nothing is lost or done twice when a sweep is killed and run again:

- a finished point has its row in the results file and is skipped;
- a point whose run finished but whose row was not written yet (killed in between) gets its row
  from the run's ``report.json``;
- a point killed while training resumes from its run's ``checkpoints/last.ckpt``, in its folder;
- a point killed before its first checkpoint starts afresh (its run folder is removed first).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hyper.sweeps.grid import Point, Sweep, set_path, shard
from hyper.sweeps.plot import default_axes, plot_curves
from hyper.sweeps.results import append_row, done_keys, read_rows, repair, results_path
from hyper.sweeps.summary import summarize, summary_table

RunPoint = Callable[[Point, Path, "Path | None"], dict[str, Any]]
CheckPoint = Callable[[Point, Path], None]


def run_sweep(
    sweep: Sweep,
    folder: Path,
    run_point: RunPoint,
    shard_spec: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
    check_point: CheckPoint | None = None,
) -> list[dict[str, Any]]:
    """Run this shard's unfinished points; returns the rows this call added.

    Args:
        sweep: the loaded sweep.
        folder: where results, per-point runs and the plot go.
        run_point: trains and tests one point in ``folder/runs/KEY`` (resuming from the
            checkpoint given, if any); returns the report row (``trainable_params``,
            ``compression_ratio``, metrics, wall time...).
        shard_spec: ``(i, n)`` to run only shard i of n.
        log: where progress lines go.
        check_point: raises ValueError for a point that cannot run; every point to run is
            checked before the first runs.
    """
    points = sweep.points()
    mine = shard(points, *shard_spec) if shard_spec else points
    done = done_keys(folder)
    todo = [p for p in mine if p.key not in done]
    for point in todo if check_point is not None else ():
        check_point(point, folder / "runs" / point.key)
    log(f"sweep {sweep.name}: {len(points)} points, {len(mine)} in this shard, "
        f"{len(mine) - len(todo)} already done, {len(todo)} to run -> {folder}")
    path, added = results_path(folder, shard_spec), []
    if repair(path):
        log(f"{path}: cut off a partial last line (a write interrupted by a crash)")
    for n, point in enumerate(todo, start=1):
        log(f"[{n}/{len(todo)}] {point.label}")
        start = time.perf_counter()
        report = _report(with_teacher(point, folder), folder / "runs" / point.key, run_point, sweep.metric, log)
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


def _report(point: Point, run_dir: Path, run_point: RunPoint, metric: str, log: Callable[[str], None]) -> dict[str, Any]:
    """The point's report: from a run that finished earlier, else by running (or resuming) it."""
    report_file, checkpoint = _earlier_run(run_dir)
    if report_file is not None:
        report = json.loads(report_file.read_text())
        if report.get("status") == "finished" and metric in report:
            log(f"  finished earlier: {report_file}")
            return report
    if checkpoint is not None:
        log(f"  resuming from {checkpoint}")
        return run_point(point, run_dir, checkpoint)
    if run_dir.exists():  # killed before its first checkpoint: nothing to keep
        shutil.rmtree(run_dir)
    return run_point(point, run_dir, None)


def _earlier_run(run_dir: Path) -> tuple[Path | None, Path | None]:
    """An earlier attempt's ``report.json`` and ``checkpoints/last.ckpt`` in ``run_dir``, if any."""
    versions = sorted(run_dir.glob("*/version_*"), key=lambda p: p.stat().st_mtime)
    if not versions:
        return None, None
    latest = versions[-1]
    report, last = latest / "report.json", latest / "checkpoints" / "last.ckpt"
    return (report if report.is_file() else None), (last if last.is_file() else None)


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
    png = plot_curves(entries, metric, folder / f"{sweep_name}.png", title=sweep_name, axes=default_axes(entries))
    log(f"plot: {png}")
    return png
