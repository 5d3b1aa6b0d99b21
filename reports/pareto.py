"""The sweep's memory/period Pareto view: every grid point, the front, error bars.

A point run to a precision carries its period's 95% half-width (``period_ci_ms``), drawn
as an error bar; one that hit its cap without meeting it (``converged`` false) is drawn
hollow in red, so no imprecise point passes for a precise one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipefill.reports.inputs import Sweep
from pipefill.reports.intervals import precision_cells
from pipefill.reports.style import new_figure, no_data
from pipefill.reports.sweep import MIB, _stalled, axis_label
from pipefill.traces.pareto import pareto_mask


@dataclass(frozen=True)
class ParetoData:
    """Grid points with both values; ``frontier`` marks those no other point dominates.

    ``points``: one row per grid point (``label`` = its axis values as a tuple in the
    order of ``axes``), ``mem_mib``, ``period_ms``, ``frontier``, ``ci_ms`` (the period's
    95% half-width, NaN without one) and ``unconverged``.
    """

    axes: list[str]
    points: pd.DataFrame


def pareto_data(sweep: Sweep) -> ParetoData:
    t = sweep.table[~_stalled(sweep.table)]
    mem = _numeric(t, "peak_bytes_in_flight") / MIB
    period = _numeric(t, "period_ms")
    labels = ["(" + ", ".join(str(r[a]) for a in sweep.axes) + ")" for _, r in t.iterrows()]
    ci, late = precision_cells("period_ms", t)
    pts = pd.DataFrame({"label": labels, "mem_mib": mem.to_numpy(),
                        "period_ms": period.to_numpy()})
    pts["ci_ms"], pts["unconverged"] = ci.to_numpy(), late.to_numpy()
    pts = pts.dropna(subset=["mem_mib", "period_ms"]).reset_index(drop=True)
    pts["frontier"] = pareto_mask(pts["mem_mib"], pts["period_ms"])
    return ParetoData(list(sweep.axes), pts)


def _numeric(t: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as numbers; all missing (NaN) when the table has no such column
    (an older or hand-made table)."""
    if column not in t.columns:
        return pd.Series(np.nan, index=t.index, dtype=float)
    return pd.to_numeric(t[column], errors="coerce")


def _group_label(labels: list[str], limit: int = 4) -> str:
    """Grid points that land on the same spot share one label."""
    more = f" +{len(labels) - limit} more" if len(labels) > limit else ""
    return " ".join(labels[:limit]) + more


def draw_pareto(data: ParetoData) -> Figure:
    fig = new_figure(9, 5.5)
    ax = fig.subplots()
    pts = data.points
    if pts.empty:
        no_data(ax, "no grid point has both peak_bytes_in_flight and period_ms")
        return fig
    ax.scatter(pts["mem_mib"], pts["period_ms"], color="#9A9A9A", s=22, label="grid point")
    _error_bars(ax, pts)
    front = pts[pts["frontier"]].sort_values("mem_mib")
    ax.step(front["mem_mib"], front["period_ms"], where="post", color="#1F4E9A",
            linewidth=1.2, label="Pareto frontier (no point is smaller and faster)")
    ax.scatter(front["mem_mib"], front["period_ms"], color="#1F4E9A", s=40, zorder=3)
    ax.margins(x=0.15, y=0.08)  # room for the labels of the outermost points
    ax.set_xlabel("peak bytes in flight (MiB)")
    ax.set_ylabel("period (ms)")
    ax.grid(color="#E6E6E6", linewidth=0.6)
    ax.legend(fontsize=8)
    names = ", ".join(axis_label(a) for a in data.axes)
    title = f"Sweep: memory in flight vs period ({len(pts)} points; front labels are ({names})"
    ax.set_title(title + ")", loc="left", fontsize=10)
    left_out = _label_front(fig, ax, front)
    if left_out:
        ax.set_title(f"{title}; {left_out} crowded front labels left out)", loc="left",
                     fontsize=10)
    return fig


#: label offsets (points) tried in turn, so front labels never overlap one another
LABEL_OFFSETS = ((6, 6), (6, -14), (6, 20), (6, -28), (6, 34), (6, -42))


def _label_front(fig: Figure, ax: Axes, front: pd.DataFrame) -> int:
    """Label each front position at the first offset whose text overlaps no earlier
    label; returns how many positions found no free offset (left unlabelled)."""
    fig.canvas.draw()  # settle the constrained layout, then keep it: extents are final
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    placed: list[Any] = []
    left_out = 0
    for (mem, per), grp in front.groupby(["mem_mib", "period_ms"], sort=True):
        for offset in LABEL_OFFSETS:
            ann = ax.annotate(_group_label(list(grp["label"]), limit=3), (mem, per),
                              textcoords="offset points", xytext=offset, fontsize=7.5)
            ann.set_in_layout(False)
            box = ann.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                placed.append(box)
                break
            ann.remove()
        else:
            left_out += 1
    return left_out


def _error_bars(ax: Axes, pts: pd.DataFrame) -> None:
    """The period's 95% interval of each point run to a precision, and the points that
    stopped at their cap without meeting it (hollow, red)."""
    if "ci_ms" not in pts.columns:
        return
    has = pts["ci_ms"].notna()
    if has.any():
        ax.errorbar(pts.loc[has, "mem_mib"], pts.loc[has, "period_ms"],
                    yerr=pts.loc[has, "ci_ms"], fmt="none", ecolor="#6F6F6F", elinewidth=0.8,
                    capsize=2, label="95% interval of the period")
    late = pts[pts["unconverged"]]
    if len(late):
        ax.scatter(late["mem_mib"], late["period_ms"], facecolors="none", edgecolors="#C0392B",
                   s=60, linewidths=1.2, zorder=4,
                   label="not converged: stopped at run.chunks, interval wider than asked")
