"""Distributions: latency CDF over the steady-state window, and per-phase durations.

For a pair, both runs are drawn on the same axes so predicted and measured can be read
off against each other; phase boxes are coloured by the phase registry and the
measured box is hatched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipefill.reports.inputs import Run
from pipefill.reports.series import chunk_series
from pipefill.reports.style import new_figure, no_data, phase_colour, role_style

PERCENTILES = (50, 95, 99)
#: lanes whose spans are grouped by (phase, stage): a send from stage0 is an envelope,
#: one from stage1 a result, and they have different sizes
PER_STAGE_LANES = ("comm",)


@dataclass(frozen=True)
class LatencyData:
    """Sorted latencies (ms) of the window's chunks and the metric percentiles."""

    label: str
    role: str
    latencies_ms: np.ndarray
    percentiles: dict[int, float | None]
    missing: str | None


def latency_data(runs: list[Run]) -> list[LatencyData]:
    out = []
    for run in runs:
        s = chunk_series(run.trace)
        lat = np.sort(s.loc[s["in_window"], "latency_ms"].dropna().to_numpy())
        pct = {q: run.metrics.get(f"latency_p{q}_ms") for q in PERCENTILES}
        reason = run.metrics.get("missing", {}).get("latency_p50_ms")
        out.append(LatencyData(run.label, run.role, lat, pct, reason))
    return out


def draw_latency(data: list[LatencyData]) -> Figure:
    fig = new_figure(9, 4.8)
    ax = fig.subplots()
    drawn = [d for d in data if len(d.latencies_ms)]
    if not drawn:
        no_data(ax, "; ".join(f"{d.label}: {d.missing}" for d in data))
        return fig
    for d in drawn:
        style = role_style(d.role)
        y = np.arange(1, len(d.latencies_ms) + 1) / len(d.latencies_ms)
        pct = ", ".join(f"p{q} {v:,.1f}" for q, v in d.percentiles.items() if v is not None)
        x = np.append(d.latencies_ms[0], d.latencies_ms)  # the CDF starts at 0
        ax.step(x, np.append(0.0, y), where="post", color=style["color"],
                label=f"{d.label}: {len(d.latencies_ms)} chunks; {pct} ms")
        for q, v in d.percentiles.items():
            if v is not None:
                ax.plot([v], [q / 100], marker="o", color=style["color"], markersize=4)
    ax.set_xlabel("latency: emit time - input available (ms)")
    ax.set_ylabel("fraction of chunks")
    ax.set_ylim(0, 1.02)
    ax.set_title("Latency CDF (steady-state window; dots at p50/p95/p99)", loc="left",
                 fontsize=10)
    ax.grid(color="#E6E6E6", linewidth=0.6)
    ax.legend(fontsize=8, loc="lower right")
    return fig


@dataclass(frozen=True)
class PhaseDurations:
    """Span durations (ms) per phase key, one dict per run, keys in draw order."""

    keys: list[str]
    runs: list[tuple[str, str, dict[str, np.ndarray]]]  # (label, role, key -> durations)


def phase_key(name: str, stage: str, lane: str) -> str:
    return f"{name} ({stage})" if lane in PER_STAGE_LANES else name


def phase_durations(runs: list[Run]) -> PhaseDurations:
    per_run = []
    keys: dict[str, None] = {}
    for run in runs:
        sp = run.trace.spans
        k = [phase_key(str(n), str(s), str(la))
             for n, s, la in zip(sp["name"], sp["stage"], sp["lane"], strict=True)]
        dur = (sp["end_ms"] - sp["start_ms"]).to_numpy()
        groups: dict[str, list[float]] = {}
        for key, d in zip(k, dur, strict=True):
            groups.setdefault(key, []).append(float(d))
        per_run.append((run.label, run.role, {g: np.array(v) for g, v in groups.items()}))
        keys.update(dict.fromkeys(sorted(groups)))
    return PhaseDurations(list(keys), per_run)


def _base(key: str) -> str:
    return key.split(" (")[0]


#: how each role's histogram is drawn (predicted filled, measured outlined, same colour)
HIST_STYLES: dict[str, dict[str, Any]] = {
    "predicted": {"histtype": "stepfilled", "alpha": 0.6},
    "measured": {"histtype": "step", "linewidth": 1.8},
}


LEGEND_LABELS = {"predicted": "predicted (filled)", "measured": "measured (outline)"}


def _hist_panel(ax: Axes, key: str, data: PhaseDurations) -> dict[str, Any]:
    """Draw one phase's histograms; returns one drawn patch per role (for the legend)."""
    series = [(label, role, g[key]) for label, role, g in data.runs if key in g]
    lo = min(float(v.min()) for _, _, v in series)
    hi = max(float(v.max()) for _, _, v in series)
    if hi - lo < 1e-6 * max(1.0, abs(hi)):  # constant durations: one centred bin
        lo, hi = lo * 0.9 - 1e-6, hi * 1.1 + 1e-6
    bins = list(np.linspace(lo, hi, 30))
    medians = []
    drawn: dict[str, Any] = {}
    for _label, role, values in series:
        _, _, patches = ax.hist(values, bins=bins, color=phase_colour(_base(key)),
                                **HIST_STYLES[role])
        # step histograms draw one Polygon per data set (a list when several)
        drawn.setdefault(role, patches[0] if isinstance(patches, list) else patches)
        medians.append(f"{role} {np.median(values):,.2f}")
    ax.set_title(f"{key}: median " + " / ".join(medians) + " ms", fontsize=8.5)
    ax.set_xlabel("duration (ms)", fontsize=8)
    ax.set_ylabel("spans", fontsize=8)
    ax.tick_params(labelsize=7.5)
    ax.ticklabel_format(axis="x", useOffset=False)
    return drawn


def draw_phase_durations(data: PhaseDurations) -> Figure:
    cols = min(4, max(1, len(data.keys)))
    rows = max(1, -(-len(data.keys) // cols))
    fig = new_figure(3.6 * cols + 0.4, 2.6 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    if not data.keys:
        no_data(axes[0], "the trace has no spans")
        return fig
    drawn: dict[str, Any] = {}
    for ax, key in zip(axes, data.keys, strict=False):
        for role, patch in _hist_panel(ax, key, data).items():
            drawn.setdefault(role, patch)
    for ax in axes[len(data.keys):]:
        ax.set_axis_off()
    # legend keys are the drawn bars themselves (first panel with that role)
    handles = [drawn[role] for role in HIST_STYLES if role in drawn]
    labels = [LEGEND_LABELS[role] for role in HIST_STYLES if role in drawn]
    counts = "; ".join(f"{label}: {sum(len(v) for v in g.values())} spans"
                       for label, _role, g in data.runs)
    fig.suptitle(f"Per-phase span durations ({counts}); colour = phase", fontsize=10,
                 x=0.01, ha="left")
    fig.legend(handles=handles, labels=labels, loc="outside lower center", ncol=2, fontsize=8,
               frameon=False)
    return fig
