"""Summaries of sweep results: one entry per (method, knobs), seeds averaged; the Pareto front.

Two compression axes, both higher-is-better: ``params`` (the parameter ratio) and ``bytes``
(fp32 bytes of the plain-equivalent ÷ the stored size, ``compression_bytes``). The quality axis is the metric turned into a
lower-is-better "cost": error in % for accuracies (``*acc``), the metric itself otherwise
(bits per character, loss).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any, Literal

Axis = Literal["params", "bytes"]
AXES = ("params", "bytes")


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
    size_bytes: int | None = None
    compression_bytes: float | None = None

    def compression(self, axis: Axis = "params") -> float:
        """The compression on ``axis``: the parameter ratio or the byte ratio."""
        if axis == "params":
            return self.compression_ratio
        if self.compression_bytes is None:
            raise ValueError(f"{self.method} ({self.knob_label}) has no compression_bytes: rerun it, or plot --x params")
        return self.compression_bytes

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
            trainable=_mean_or_none(group, "trainable_params", round),
            compression_ratio=_ratio(group, "compression_ratio", "trainable_params", reference),
            cost=statistics.fmean(costs),
            cost_std=statistics.stdev(costs) if len(costs) > 1 else 0.0,
            seeds=len(group),
            size_bytes=_mean_or_none(group, "size_bytes", round),
            # against the reference network stored in fp32, 4 bytes a parameter
            compression_bytes=_ratio(group, "compression_bytes", "size_bytes", reference and 4 * reference),
        ))
    return sorted(entries, key=lambda e: (e.method, e.compression_ratio))


def _mean_or_none(group: list[dict[str, Any]], key: str, kind: Any = float) -> Any:
    """The seeds' mean of ``key`` (sizes differ by seed when pruning or channel removal decides
    them); None when a row lacks it (results written before the byte count existed)."""
    values = [row.get(key) for row in group]
    return None if any(v is None for v in values) else kind(statistics.fmean(values))


def _ratio(group: list[dict[str, Any]], key: str, size: str, reference: float | None) -> float | None:
    """The seeds' mean compression: the rows' own ``key``, or ``reference`` ÷ the mean ``size``."""
    if reference is None:
        return _mean_or_none(group, key)
    mean = _mean_or_none(group, size)
    return None if mean is None else reference / mean


def _reference_params(rows: list[dict[str, Any]], method: str) -> int:
    counts = {row["plain_equivalent_params"] for row in rows if row["method"] == method}
    if not counts:
        raise ValueError(f"compare_to: method {method!r} has no finished point to compare with")
    return max(counts)


def pareto_front(entries: list[Entry], axis: Axis = "params") -> list[Entry]:
    """Entries no other entry beats on both axes (more compression on ``axis``, lower cost)."""
    front = []
    for e in entries:
        dominated = any(
            o.compression(axis) >= e.compression(axis) and o.cost <= e.cost
            and (o.compression(axis) > e.compression(axis) or o.cost < e.cost)
            for o in entries
        )
        if not dominated:
            front.append(e)
    return sorted(front, key=lambda e: e.compression(axis))


def summary_table(entries: list[Entry], metric: str) -> str:
    """A Markdown table, one row per entry, mean ± std over seeds; ``*`` marks the Pareto
    front on parameters, ``b`` on bytes (when every entry has its bytes)."""
    fronts = {"*": {id(e) for e in pareto_front(entries)}}
    with_bytes = all(e.compression_bytes is not None for e in entries)
    if with_bytes:
        fronts["b"] = {id(e) for e in pareto_front(entries, "bytes")}
    lines = [
        f"| method | knobs | trainable | compression | bytes | byte compression | {cost_name(metric)} | seeds | front |",
        "|---|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for e in entries:
        spread = f" ± {e.cost_std:.2f}" if e.seeds > 1 else ""
        knobs = ", ".join(f"{k}={v}" for k, v in e.knobs.items()) or "-"
        size = f"{e.size_bytes:,}" if e.size_bytes is not None else "-"
        ratio = f"{e.compression_bytes:.2f}x" if e.compression_bytes is not None else "-"
        marks = "".join(mark for mark, front in fronts.items() if id(e) in front)
        lines.append(
            f"| {e.method} | {knobs} | {e.trainable:,} | {e.compression_ratio:.2f}x | {size} | {ratio} | "
            f"{e.cost:.2f}{spread} | {e.seeds} | {marks} |"
        )
    return "\n".join(lines)


def default_tolerance(metric: str) -> float:
    """How much worse than the reference counts as as good: 1 point of error for accuracies,
    0.1 otherwise (bits per character: about 5% of a character model's)."""
    return 1.0 if metric.endswith("acc") else 0.1


def smallest_within(entries: list[Entry], *, reference: str = "plain", points: float = 1.0) -> str:
    """A Markdown table: for each method, its smallest stored size (bytes) whose mean cost is
    within ``points`` of the ``reference`` method's best mean cost ("-" where none is)."""
    base = [e.cost for e in entries if e.method == reference]
    if not base or any(e.size_bytes is None for e in entries):
        return ""
    limit = min(base) + points
    lines = [
        f"| method | smallest bytes within {points:g} of {reference}'s {min(base):.2f} | knobs | byte compression |",
        "|---|---:|---|---:|",
    ]
    for method in dict.fromkeys(e.method for e in entries):
        good = [e for e in entries if e.method == method and e.cost <= limit]
        best = min(good, key=lambda e: e.size_bytes, default=None)
        if best is None:
            lines.append(f"| {method} | - | - | - |")
        else:
            knobs = ", ".join(f"{k}={v}" for k, v in best.knobs.items()) or "-"
            lines.append(f"| {method} | {best.size_bytes:,} | {knobs} | {best.compression_bytes:.2f}x |")
    return "\n".join(lines)
