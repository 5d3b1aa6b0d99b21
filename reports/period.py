"""Period and OverlapScore per chunk, against max(stage0, stage1), the serial sum and the bound.

Does the period sit on max(stage0, stage1) (the stages overlap) or on their sum (they
do not)? The reference lines use the trace's median busy times over the steady-state
window, exactly the ``stage0_ms``/``stage1_ms`` of its metrics; the analytic bound is
drawn when the caller knows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipefill.reports.inputs import Run
from pipefill.reports.series import chunk_series, cut_chunks, warmup_of
from pipefill.reports.style import MARK_STYLES, REF_STYLES, new_figure, no_data, role_style

#: the seed's pass gate for OverlapScore
OVERLAP_GATE = 0.30
MARKER_LIMIT = 200


@dataclass(frozen=True)
class PeriodData:
    """One run's per-chunk series and the reference levels drawn over it.

    ``series``: :func:`pipefill.reports.series.chunk_series`; ``max_stage_ms`` =
    max(stage0_ms, stage1_ms) and ``serial_sum_ms`` = stage0_ms + stage1_ms of the
    metrics (None when missing); ``cuts``: chunks starting a new epoch.
    """

    label: str
    role: str
    series: pd.DataFrame
    period_ms: float | None
    overlap_score: float | None
    max_stage_ms: float | None
    serial_sum_ms: float | None
    cuts: list[int]
    warmup: int


def period_data(runs: list[Run]) -> list[PeriodData]:
    out = []
    for run in runs:
        m = run.metrics
        s0, s1 = m.get("stage0_ms"), m.get("stage1_ms")
        high = max(s0, s1) if s0 is not None and s1 is not None else None
        total = s0 + s1 if s0 is not None and s1 is not None else None
        out.append(PeriodData(
            run.label, run.role, chunk_series(run.trace), m.get("period_ms"),
            m.get("overlap_score"), high, total, cut_chunks(run.trace), warmup_of(run.trace)))
    return out


def _cuts(ax: Axes, data: list[PeriodData], label: bool) -> None:
    cuts = sorted({c for d in data for c in d.cuts})
    for i, c in enumerate(cuts):
        ax.axvline(c, label="hard cut" if label and i == 0 else None, **MARK_STYLES["hard_cut"])


def _period_panel(ax: Axes, data: list[PeriodData], bound_ms: float | None) -> None:
    for d in data:
        style = role_style(d.role)
        ax.plot(d.series["chunk"], d.series["period_ms"], color=style["color"], linewidth=1.0,
                marker=_marker(d), markersize=3, label=f"{d.label}: period_k "
                f"(mean {_ms(d.period_ms)})")
        for key, value, text in (("max_stage", d.max_stage_ms, "max(stage0, stage1)"),
                                 ("serial_sum", d.serial_sum_ms, "stage0 + stage1")):
            if value is not None:
                ax.axhline(value, color=style["color"], label=f"{text} = {_ms(value)}",
                           **REF_STYLES[key])
    if bound_ms is not None:
        on = on_max_stage(data, bound_ms)
        label = f"analytic bound = {_ms(bound_ms)}"
        # coinciding lines: the bound is drawn as a wide band under the dashed max line
        style = REF_STYLES["bound_under" if on else "bound"]
        if on:
            label += f" (on max(stage0, stage1) = {_ms(on)}: the wide band)"
        ax.axhline(bound_ms, label=label, **style)
    _cuts(ax, data, label=True)
    ax.set_ylabel("period (ms)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7.5, loc="lower right", ncol=2 if len(data) > 1 else 1)


#: reference lines closer than this (relative) are drawn as coinciding
COINCIDE = 0.01


def on_max_stage(data: list[PeriodData], bound_ms: float) -> float | None:
    """The max(stage0, stage1) level the bound line would hide (within COINCIDE), if any."""
    for d in data:
        if d.max_stage_ms is not None and abs(d.max_stage_ms - bound_ms) <= COINCIDE * bound_ms:
            return d.max_stage_ms
    return None


def _overlap_panel(ax: Axes, data: list[PeriodData]) -> None:
    for d in data:
        style = role_style(d.role)
        win = d.series[d.series["in_window"]]
        score = "missing" if d.overlap_score is None else f"{d.overlap_score:.2f}"
        if d.overlap_score is not None and d.overlap_score > 1:
            score += ", > 1: not one chunk at a time"
        ax.plot(win["chunk"], win["overlap"], color=style["color"], linewidth=1.0,
                marker=_marker(d), markersize=3,
                label=f"{d.label}: OverlapScore_k (median {score})")
    ax.axhline(OVERLAP_GATE, label=f"pass gate {OVERLAP_GATE:.2f}", **REF_STYLES["gate"])
    _cuts(ax, data, label=False)
    ax.set_ylabel("hidden / min(stage0, stage1)")
    ax.set_xlabel("chunk (emission order)")
    top = max([1.0, *(float(d.series["overlap"].max()) for d in data
                      if d.series["overlap"].notna().any())])
    ax.set_ylim(-0.05, 1.08 * top)
    ax.legend(fontsize=7.5, loc="lower right")


def draw_period(data: list[PeriodData], bound_ms: float | None = None) -> Figure:
    fig = new_figure(12, 6.5)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    if all(d.series.empty for d in data):
        no_data(top, "no emitted chunks")
        bottom.set_axis_off()
        return fig
    _period_panel(top, data, bound_ms)
    _overlap_panel(bottom, data)
    top.set_title(f"Period per chunk (all chunks; warm-up = first {data[0].warmup} "
                  "excluded from medians and from the OverlapScore panel)", loc="left",
                  fontsize=10)
    for ax in (top, bottom):
        ax.axvspan(data[0].series["chunk"].min() - 0.5,
                   data[0].series["chunk"].iloc[min(data[0].warmup, len(data[0].series) - 1)]
                   - 0.5, color="#EEEEEE", zorder=0)
        ax.grid(color="#E6E6E6", linewidth=0.6)
    return fig


def _marker(d: PeriodData) -> str | None:
    """Dots per chunk help up to a few hundred chunks; beyond, they only add noise."""
    return "." if len(d.series) <= MARKER_LIMIT else None


def _ms(value: float | None) -> str:
    return "missing" if value is None else f"{value:,.1f} ms"
