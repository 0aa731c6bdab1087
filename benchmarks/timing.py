"""Interleaved timing shared by the benchmarks: every run timed round-robin, so drift in the
machine's load hits all of them alike; compare medians as ratios within one run."""

from __future__ import annotations

import time
from collections.abc import Callable


def interleaved_times(runs: dict[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each run, timed round-robin after ``warmup`` untimed rounds."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(warmup + rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times
