"""Interleaved timing shared by the benchmarks.

Runs are timed round-robin, with the order reversed every other round, so drift in the
machine's load and any first-in-round effect hit every run alike. On shared machines the
run-to-run noise (±10–25% here) can exceed the effects measured: ``paired_ratio`` gives the
spread of per-round ratios (each round's time of a run over the baseline's in the same round),
so a report can say how far its figures can be trusted; ``ratio_interval`` bootstraps the ratio
of medians over rounds, and ``verdict`` judges a target only when that interval lies on one side.
"""

from __future__ import annotations

import random
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


def ratio_interval(
    times: dict[str, list[float]], name: str, baseline: str, *, confidence: float = 0.9, resamples: int = 2000
) -> tuple[float, float, float]:
    """Ratio of medians name / baseline and its bootstrap interval (rounds resampled in pairs).

    Returns (ratio, low, high): the interval holds ``confidence`` of the resampled ratios.
    """
    generator = random.Random(0)
    ours, theirs = times[name], times[baseline]
    rounds = range(len(ours))
    ratios = []
    for _ in range(resamples):
        picked = [generator.choice(rounds) for _ in rounds]
        ratios.append(statistics.median(ours[i] for i in picked) / statistics.median(theirs[i] for i in picked))
    ratios.sort()
    tail = (1 - confidence) / 2
    low, high = ratios[int(tail * resamples)], ratios[min(int((1 - tail) * resamples), resamples - 1)]
    return statistics.median(ours) / statistics.median(theirs), low, high


def verdict(low: float, high: float, target: float) -> str:
    """A verdict no finer than the noise: met / not met only when the interval is on one side."""
    if high <= target:
        return f"met (the whole interval is <= {target})"
    if low > target:
        return f"NOT met (the whole interval is > {target})"
    return f"within noise (the interval spans the target {target})"
