"""The compression-curve plot: cost against compression ratio, one line per method.

x: compression ratio on a log axis; y: error (%) or the metric (log too when it spans more than
10×); every point labelled with its knob; the Pareto front drawn as a dashed step line through
ringed points.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hyper.sweeps.summary import Entry, cost_name, pareto_front

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FRONT_LABEL = "Pareto front"


def draw_curves(entries: list[Entry], metric: str, title: str = "") -> Figure:
    """The figure, one Axes: a line per method (labelled with the method), the front's step line
    (labelled ``FRONT_LABEL``), a knob label per point. Not saved: see ``plot_curves``."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend

    fig = Figure(figsize=(8, 5.5), dpi=120)
    ax = fig.subplots()
    for method in dict.fromkeys(e.method for e in entries):
        line = sorted((e for e in entries if e.method == method), key=lambda e: e.compression_ratio)
        xs, ys = [e.compression_ratio for e in line], [e.cost for e in line]
        ax.errorbar(xs, ys, yerr=[e.cost_std for e in line], marker="o", capsize=3, label=method)
        for e in line:
            ax.annotate(e.knob_label, (e.compression_ratio, e.cost), textcoords="offset points",
                        xytext=(4, 5), fontsize=7)
    front = pareto_front(entries)
    ax.step([e.compression_ratio for e in front], [e.cost for e in front], where="pre",
            linestyle="--", color="black", linewidth=1, label=FRONT_LABEL)
    ax.scatter([e.compression_ratio for e in front], [e.cost for e in front], s=140,
               facecolors="none", edgecolors="black", linewidths=1)
    ax.set_xscale("log")
    costs = [e.cost for e in entries]
    if min(costs) > 0 and max(costs) / min(costs) > 10:
        ax.set_yscale("log")  # a collapsed point (chance level) would squash the rest to the floor
    ax.set_xlabel("compression ratio (plain-equivalent / trainable parameters)")
    ax.set_ylabel(cost_name(metric))
    ax.set_title(title or "compression curve")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_curves(entries: list[Entry], metric: str, path: Path, title: str = "") -> Path:
    """Write the PNG of ``draw_curves`` and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_curves(entries, metric, title).savefig(path)
    return path
