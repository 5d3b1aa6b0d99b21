"""One look for every figure: phase colours, mark styles, run styles, PNG rendering.

Every figure colours a phase through :func:`phase_colour`, so ``decode`` is the same
orange in the Gantt, the duration plots and the legend of every report.
"""

from __future__ import annotations

import io
import zlib
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: phase -> colour (the single registry every figure uses)
PHASE_COLOURS: dict[str, str] = {
    "build": "#4C72B0",
    "denoise": "#55A868",
    "recompute": "#8172B2",
    "decode": "#DD8452",
    "anchor_decode": "#CCB974",
    "encode": "#64B5CD",
    "send": "#8C8C8C",
    "recv": "#B8B8B8",
}
#: colours for phases a trace may carry that the registry does not know (e.g. from exec)
_SPARE = ("#937860", "#DA8BC3", "#8C613C", "#6ACC64", "#D65F5F", "#956CB4")

#: instant marks -> matplotlib style (hard cuts and drops must be visible)
MARK_STYLES: dict[str, dict[str, Any]] = {
    "hard_cut": {"color": "#C00000", "linestyle": "--", "linewidth": 1.4},
    "drop": {"color": "#C00000", "marker": "X", "markersize": 8, "linestyle": "none"},
    "emit": {"color": "#222222", "marker": "v", "markersize": 4, "linestyle": "none"},
}
#: bubbles (idle gaps on a compute lane)
IDLE_STYLE: dict[str, Any] = {"facecolor": "none", "edgecolor": "#D0A0A0", "hatch": "////",
                              "linewidth": 0.0}

#: a run's role in a report -> line style (predicted and measured differ everywhere alike)
ROLE_STYLES: dict[str, dict[str, Any]] = {
    "predicted": {"color": "#1F4E9A", "linestyle": "-"},
    "measured": {"color": "#E07B00", "linestyle": "-"},
}
#: reference lines of the period figure
REF_STYLES: dict[str, dict[str, Any]] = {
    "max_stage": {"linestyle": "--", "linewidth": 1.2},
    "serial_sum": {"linestyle": ":", "linewidth": 1.5},
    "bound": {"color": "black", "linestyle": "-.", "linewidth": 1.3},
    # the bound when it coincides with max(stage0, stage1): a translucent band beneath it
    "bound_under": {"color": "black", "linestyle": "-", "linewidth": 6.0, "alpha": 0.18,
                    "zorder": 1},
    "gate": {"color": "#C00000", "linestyle": ":", "linewidth": 1.0},
}

DPI = 110


def phase_colour(name: str) -> str:
    """The registry colour, or a stable spare one (same name -> same colour in every run)."""
    if name in PHASE_COLOURS:
        return PHASE_COLOURS[name]
    return _SPARE[zlib.crc32(name.encode()) % len(_SPARE)]


def role_style(role: str) -> dict[str, Any]:
    return ROLE_STYLES.get(role, ROLE_STYLES["predicted"])


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def no_data(ax: Axes, reason: str) -> None:
    """Say on the panel why there is nothing to draw (a missing metric is never shown as 0)."""
    ax.text(0.5, 0.5, f"no data: {reason}", ha="center", va="center", transform=ax.transAxes,
            fontsize=9, color="#666666", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # no timestamp metadata: the same input gives the same PNG bytes
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
