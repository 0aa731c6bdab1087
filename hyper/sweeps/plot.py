"""The compression-curve plot: cost against compression, one line per method.

x: compression on a log axis, by parameters (plain-equivalent ÷ trainable), by bytes (fp32
plain-equivalent bytes ÷ stored bytes), or both side by side sharing the y axis; y: error (%)
or the metric (log too when it spans more than 10×), with error bars of one standard deviation
over the seeds; every point labelled with its knob; the Pareto front drawn as a dashed staircase
(the best cost reachable at each compression or more) through ringed points.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hyper.sweeps.summary import Axis, Entry, cost_name, pareto_front

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

AXIS_LABELS = {
    "params": "compression (plain-equivalent / trainable parameters)",
    "bytes": "compression in bytes (plain fp32 bytes / stored bytes)",
}
FRONT_LABEL = "Pareto front"
MARKERS = "osD^vP*X<>"


def default_axes(entries: list[Entry]) -> tuple[Axis, ...]:
    """Both axes when every entry has its bytes (results from before the byte count: params)."""
    return ("params", "bytes") if all(e.compression_bytes is not None for e in entries) else ("params",)


def draw_curves(entries: list[Entry], metric: str, title: str = "", axes: Sequence[Axis] = ("params",)) -> Figure:
    """The figure, one panel per axis in ``axes``: a line per method (labelled with the method),
    the front's staircase (labelled ``FRONT_LABEL``), a knob label per point. Not saved."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend

    fig = Figure(figsize=(8 * len(axes), 5.5), dpi=120)
    panels = fig.subplots(1, len(axes), sharey=True, squeeze=False)[0]
    for ax, axis in zip(panels, axes):
        _draw(ax, entries, axis)
        ax.set_xlabel(AXIS_LABELS[axis])
    panels[0].set_ylabel(cost_name(metric))
    # Beside the last panel, not over the points: a sweep has many methods.
    panels[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.suptitle(title or "compression curve")
    fig.tight_layout()
    return fig


def plot_curves(
    entries: list[Entry], metric: str, path: Path, title: str = "", axes: Sequence[Axis] = ("params",)
) -> Path:
    """Write the PNG of ``draw_curves`` and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_curves(entries, metric, title, axes).savefig(path, bbox_inches="tight")  # the legend included
    return path


def _draw(ax: Axes, entries: list[Entry], axis: Axis) -> None:
    from matplotlib import colormaps

    colors = colormaps["tab20"].colors  # 20 colours, and a marker each: a sweep has many methods
    for i, method in enumerate(dict.fromkeys(e.method for e in entries)):
        line = sorted((e for e in entries if e.method == method), key=lambda e: e.compression(axis))
        xs, ys = [e.compression(axis) for e in line], [e.cost for e in line]
        ax.errorbar(xs, ys, yerr=[e.cost_std for e in line], marker=MARKERS[i % len(MARKERS)], capsize=3,
                    color=colors[i % len(colors)], label=method)
        for e in line:
            ax.annotate(e.knob_label, (e.compression(axis), e.cost), textcoords="offset points",
                        xytext=(4, 5), fontsize=7)
    front = pareto_front(entries, axis)
    ax.step([e.compression(axis) for e in front], [e.cost for e in front], where="pre",
            linestyle="--", color="black", linewidth=1, label=FRONT_LABEL)
    ax.scatter([e.compression(axis) for e in front], [e.cost for e in front], s=140,
               facecolors="none", edgecolors="black", linewidths=1)
    ax.set_xscale("log")
    costs = [e.cost for e in entries]
    if min(costs) > 0 and max(costs) / min(costs) > 10:
        ax.set_yscale("log")  # a collapsed point (chance level) would squash the rest to the floor
    ax.grid(True, which="both", alpha=0.3)
