"""Interleaved timing shared by the benchmarks.

Runs are timed round-robin, with the order reversed every other round, so drift in the
machine's load and any first-in-round effect hit every run alike. On shared machines the
run-to-run noise (±10–25% here) can exceed the effects measured: ``paired_ratio`` gives the
spread of per-round ratios (each round's time of a run over the baseline's in the same round),
so a report can say how far its figures can be trusted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_times(runs: dict[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each run, per round, after ``warmup`` untimed rounds."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(warmup + rounds):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            runs[name]()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(times: dict[str, list[float]], name: str, baseline: str) -> tuple[float, float, float]:
    """Median and interquartile range (p25, p75) of the per-round ratios name / baseline."""
    ratios = sorted(t / b for t, b in zip(times[name], times[baseline]))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return statistics.median(ratios), quartiles[0], quartiles[2]
