"""Summaries of sweep results: one entry per (method, knobs), seeds averaged; the Pareto front.

The compression axis is higher-is-better; the quality axis is the metric turned into a
lower-is-better "cost": error in % for accuracies (``*acc``), the metric itself otherwise
(bits per character, loss).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One (method, knobs) of a sweep, averaged over its seeds."""

    method: str
    knobs: dict[str, Any]
    trainable: int
    compression_ratio: float
    cost: float
    cost_std: float
    seeds: int

    @property
    def knob_label(self) -> str:
        if len(self.knobs) == 1:
            return str(next(iter(self.knobs.values())))
        return ",".join(f"{k}={v}" for k, v in self.knobs.items())


def cost_name(metric: str) -> str:
    return f"{metric.removesuffix('_acc')} error (%)" if metric.endswith("acc") else metric


def to_cost(metric: str, value: float) -> float:
    return 100.0 * (1.0 - value) if metric.endswith("acc") else value


def summarize(rows: list[dict[str, Any]], metric: str, compare_to: str | None = None) -> list[Entry]:
    """Average the rows that share method and knobs; rows without the metric are left out.

    ``compare_to``: a method whose network's parameter count every row's compression is
    measured against (that count ÷ the row's trainable parameters) instead of the row's own
    plain-equivalent, so that smaller networks share the axis with compressed ones.
    """
    reference = _reference_params(rows, compare_to) if compare_to else None
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get(metric) is not None:
            key = (row["method"], json.dumps(row.get("knobs", {}), sort_keys=True))
            groups.setdefault(key, []).append(row)
    entries = []
    for (method, knobs), group in groups.items():
        costs = [to_cost(metric, r[metric]) for r in group]
        entries.append(Entry(
            method=method,
            knobs=json.loads(knobs),
            trainable=group[0]["trainable_params"],
            compression_ratio=(
                group[0]["compression_ratio"] if reference is None else reference / group[0]["trainable_params"]
            ),
            cost=statistics.fmean(costs),
            cost_std=statistics.stdev(costs) if len(costs) > 1 else 0.0,
            seeds=len(group),
        ))
    return sorted(entries, key=lambda e: (e.method, e.compression_ratio))


def _reference_params(rows: list[dict[str, Any]], method: str) -> int:
    counts = {row["plain_equivalent_params"] for row in rows if row["method"] == method}
    if not counts:
        raise ValueError(f"compare_to: method {method!r} has no finished point to compare with")
    return max(counts)


def pareto_front(entries: list[Entry]) -> list[Entry]:
    """Entries no other entry beats on both axes (more compression and lower cost)."""
    front = []
    for e in entries:
        dominated = any(
            o.compression_ratio >= e.compression_ratio and o.cost <= e.cost
            and (o.compression_ratio > e.compression_ratio or o.cost < e.cost)
            for o in entries
        )
        if not dominated:
            front.append(e)
    return sorted(front, key=lambda e: e.compression_ratio)


def summary_table(entries: list[Entry], metric: str) -> str:
    """A Markdown table, one row per entry; ``*`` marks the Pareto front."""
    front = {id(e) for e in pareto_front(entries)}
    lines = [
        f"| method | knobs | trainable | compression | {cost_name(metric)} | seeds | front |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    for e in entries:
        spread = f" ± {e.cost_std:.2f}" if e.seeds > 1 else ""
        knobs = ", ".join(f"{k}={v}" for k, v in e.knobs.items()) or "-"
        lines.append(
            f"| {e.method} | {knobs} | {e.trainable:,} | {e.compression_ratio:.2f}x | "
            f"{e.cost:.2f}{spread} | {e.seeds} | {'*' if id(e) in front else ''} |"
        )
    return "\n".join(lines)
