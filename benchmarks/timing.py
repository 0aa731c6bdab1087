"""Interleaved timing shared by the benchmarks.

Runs are timed round-robin, with the order reversed every other round, so drift in the
machine's load and any first-in-round effect hit every run alike. On shared machines the
run-to-run noise (±10–25% here) can exceed the effects measured: ``ratio_interval`` bootstraps
the ratio of medians over rounds (resampled in pairs: each round's time of a run with the
baseline's in the same round), so a report can say how far its figures can be trusted, and
``verdict`` judges a target only when that interval lies on one side.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable


def interleaved_times(
    runs: dict[str, Callable[[], None]], rounds: int, warmup: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    """Seconds per call of each run, per round, after ``warmup`` untimed rounds; ``clock`` is
    wall time by default (``time.process_time`` for CPU time)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(warmup + rounds):
        for name in names if r % 2 == 0 else reversed(names):
            start = clock()
            runs[name]()
            if r >= warmup:
                times[name].append(clock() - start)
    return times


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
