"""The compression-curve plot: cost against compression, one line per method.

x: compression on a log axis, by parameters (plain-equivalent ÷ trainable), by bytes (fp32
plain-equivalent bytes ÷ stored bytes), or both side by side sharing the y axis; y: error (%)
or the metric (log too when it spans more than 10×), with error bars of one standard deviation
over the seeds; every point labelled with its knob; the Pareto front drawn as a dashed step
line through ringed points.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hyper.sweeps.summary import Axis, Entry, cost_name, pareto_front

AXIS_LABELS = {
    "params": "compression (plain-equivalent / trainable parameters)",
    "bytes": "compression in bytes (plain fp32 bytes / stored bytes)",
}


def default_axes(entries: list[Entry]) -> tuple[Axis, ...]:
    """Both axes when every entry has its bytes (results from before the byte count: params)."""
    return ("params", "bytes") if all(e.compression_bytes is not None for e in entries) else ("params",)


def plot_curves(
    entries: list[Entry], metric: str, path: Path, title: str = "", axes: Sequence[Axis] = ("params",)
) -> Path:
    """Write the PNG (one panel per axis in ``axes``) and return its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, len(axes), figsize=(8 * len(axes), 5.5), dpi=120, sharey=True, squeeze=False)
    for ax, axis in zip(panels[0], axes):
        _draw(ax, entries, axis)
        ax.set_xlabel(AXIS_LABELS[axis])
    panels[0][0].set_ylabel(cost_name(metric))
    panels[0][0].legend(fontsize=8)
    fig.suptitle(title or "compression curve")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


MARKERS = "osD^vP*X<>"


def _draw(ax, entries: list[Entry], axis: Axis) -> None:  # noqa: ANN001 - a matplotlib Axes
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab20").colors  # 20 colours, and a marker each: a sweep has many methods
    for i, method in enumerate(dict.fromkeys(e.method for e in entries)):
        line = sorted((e for e in entries if e.method == method), key=lambda e: e.compression(axis))
        xs, ys = [e.compression(axis) for e in line], [e.cost for e in line]
        ax.errorbar(xs, ys, yerr=[e.cost_std for e in line], marker=MARKERS[i % len(MARKERS)], capsize=3,
                    color=colors[i % len(colors)], label=method)
        for e in line:
            ax.annotate(e.knob_label, (e.compression(axis), e.cost), textcoords="offset points",
                        xytext=(4, 5), fontsize=7)
    front = pareto_front(entries, axis)
    ax.step([e.compression(axis) for e in front], [e.cost for e in front], where="post",
            linestyle="--", color="black", linewidth=1, label="Pareto front")
    ax.scatter([e.compression(axis) for e in front], [e.cost for e in front], s=140,
               facecolors="none", edgecolors="black", linewidths=1)
    ax.set_xscale("log")
    costs = [e.cost for e in entries]
    if min(costs) > 0 and max(costs) / min(costs) > 10:
        ax.set_yscale("log")  # a collapsed point (chance level) would squash the rest to the floor
    ax.grid(True, which="both", alpha=0.3)
