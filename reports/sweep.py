"""Sweep views: heatmaps over D_in x D_out, bubble-vs-depth curves, memory/period Pareto.

Heatmap rows are the first depth axis (``policy.d_in``) and columns the second
(``policy.d_out``); without them, the sweep's first two axes. Every other grid axis
gets one panel per value combination. A stalled grid point (its ``error`` is set) or a
missing metric is an empty, hatched cell, never a 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from pipefill.reports.inputs import Sweep
from pipefill.reports.intervals import cell_text, precision_cells, precision_note
from pipefill.reports.style import new_figure, no_data

#: preferred heatmap axes (rows, columns) when the sweep has them
DEPTH_AXES = ("policy.d_in", "policy.d_out")
AXIS_LABELS: dict[str, str] = {"policy.d_in": "D_in", "policy.d_out": "D_out"}
#: panels drawn per figure at most (one per combination of the other axes)
MAX_PANELS = 12
MIB = 2**20


@dataclass(frozen=True)
class HeatmapSpec:
    """How one metric family is drawn: column prefix or name, colour map, cell format."""

    title: str
    cmap: str
    fmt: str
    columns: tuple[str, ...] = ()
    prefix: str = ""


#: figure name -> the metric it maps (bubble: one panel row per ``bubble_<stage>`` column)
HEATMAPS: dict[str, HeatmapSpec] = {
    "period": HeatmapSpec("period (ms)", "viridis", "{:.0f}", columns=("period_ms",)),
    "overlap": HeatmapSpec("OverlapScore", "viridis_r", "{:.2f}", columns=("overlap_score",)),
    "bubble": HeatmapSpec("bubble fraction", "magma_r", "{:.0%}", prefix="bubble_"),
}


@dataclass(frozen=True)
class Layout:
    """Which axes are rows/columns and the value combinations of the other axes."""

    y: str
    x: str | None
    others: list[str]
    panels: list[dict[str, Any]]
    total_panels: int


def axis_label(field: str) -> str:
    return AXIS_LABELS.get(field, field.removeprefix("policy."))


def layout(sweep: Sweep) -> Layout:
    axes = list(sweep.axes)
    picked = [a for a in DEPTH_AXES if a in axes]
    if len(picked) < 2:
        picked = axes[:2]
    y, x = picked[0], picked[1] if len(picked) > 1 else None
    others = [a for a in axes if a not in (y, x)]
    combos = (sweep.table[others].drop_duplicates().to_dict(orient="records")
              if others else [{}])
    return Layout(y, x, others, combos[:MAX_PANELS], len(combos))


def _values(col: pd.Series) -> list[Any]:
    return list(dict.fromkeys(col.tolist()))  # grid order, as the sweep ran it


def _select(table: pd.DataFrame, combo: dict[str, Any]) -> pd.DataFrame:
    mask = np.ones(len(table), dtype=bool)
    for k, v in combo.items():
        mask &= (table[k] == v).to_numpy()
    return table[mask]


def _combo_title(combo: dict[str, Any]) -> str:
    return ", ".join(f"{axis_label(k)}={v}" for k, v in combo.items())


def _stalled(table: pd.DataFrame) -> pd.Series:
    if "error" not in table.columns:
        return pd.Series(False, index=table.index)
    err = table["error"]
    return err.notna() & (err.astype(str).str.len() > 0) & (err.astype(str) != "None")


@dataclass(frozen=True)
class HeatPanel:
    """One heatmap: ``cells[i, j]`` is ``column`` at y_values[i], x_values[j] (NaN: none)."""

    title: str
    column: str
    y_values: list[Any]
    x_values: list[Any]
    cells: np.ndarray
    stalled: np.ndarray
    #: the period's 95% half-width per cell (NaN: none) and whether a point ran to its
    #: cap without meeting its precision (period panels of a sweep run to a precision)
    ci: np.ndarray | None = None
    unconverged: np.ndarray | None = None


def metric_columns(sweep: Sweep, spec: HeatmapSpec) -> list[str]:
    if spec.prefix:
        return sorted(c for c in sweep.table.columns if c.startswith(spec.prefix))
    return [c for c in spec.columns if c in sweep.table.columns]


@dataclass(frozen=True)
class HeatmapData:
    """Everything one heatmap figure draws: ``name`` keys :data:`HEATMAPS`."""

    name: str
    y: str
    x: str | None
    panels: list[HeatPanel]
    note: str
    per_group: int = 1  # panels per metric column (one per combination of other axes)


def heatmap_data(sweep: Sweep, name: str) -> HeatmapData:
    """Panels for ``HEATMAPS[name]``: per metric column, per combination of other axes."""
    lay = layout(sweep)
    if lay.x is None:
        return HeatmapData(name, lay.y, None, [], _panel_note(lay), len(lay.panels))
    t = sweep.table
    ys, xs = _values(t[lay.y]), _values(t[lay.x])
    stalled_all = _stalled(t)
    panels = []
    for column in metric_columns(sweep, HEATMAPS[name]):
        for combo in lay.panels:
            sel = _select(t, combo)
            cells = np.full((len(ys), len(xs)), np.nan)
            stalled = np.zeros_like(cells, dtype=bool)
            ci, late = precision_cells(column, t)
            ci_cells, late_cells = np.full_like(cells, np.nan), np.zeros_like(stalled)
            for idx, row in sel.iterrows():
                i, j = ys.index(row[lay.y]), xs.index(row[lay.x])
                value = pd.to_numeric(row.get(column), errors="coerce")
                cells[i, j] = np.nan if pd.isna(value) else float(value)
                stalled[i, j] = bool(stalled_all[idx])
                ci_cells[i, j], late_cells[i, j] = ci[idx], late[idx]
            title = " | ".join(p for p in (column, _combo_title(combo)) if p)
            with_ci = column == "period_ms" and bool(np.isfinite(ci_cells).any())
            panels.append(HeatPanel(title, column, ys, xs, cells, stalled,
                                    ci_cells if with_ci else None,
                                    late_cells if with_ci else None))
    return HeatmapData(name, lay.y, lay.x, panels, _panel_note(lay), len(lay.panels))


def _placement(n_panels: int, per_group: int) -> tuple[int, int, list[int]]:
    """Grid (rows, cols) and each panel's slot: every metric column starts a new row."""
    per_group = max(1, per_group)
    cols = min(per_group, 4)
    rows_per_group = math.ceil(per_group / cols)
    groups = max(1, math.ceil(n_panels / per_group))
    slots = [(k // per_group) * rows_per_group * cols + k % per_group for k in range(n_panels)]
    return groups * rows_per_group, cols, slots


def _heat_panel(ax: Axes, p: HeatPanel, spec: HeatmapSpec, norm: Normalize,
                axes_names: tuple[str, str]) -> AxesImage:
    im = ax.imshow(np.ma.masked_invalid(p.cells), cmap=spec.cmap, norm=norm, origin="lower",
                   aspect="auto")
    for (i, j), v in np.ndenumerate(p.cells):
        if p.stalled[i, j] or not np.isfinite(v):
            ax.add_patch(_hatch(i, j))
            ax.text(j, i, "stall" if p.stalled[i, j] else "n/a", ha="center", va="center",
                    fontsize=8, color="#444444")
        else:
            r, g, b, _ = colormaps[spec.cmap](norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, cell_text(spec.fmt.format(v), p, i, j), ha="center", va="center",
                    fontsize=8 if p.ci is None else 7, color="white" if dark else "black")
    ax.set_xticks(range(len(p.x_values)), [str(v) for v in p.x_values])
    ax.set_yticks(range(len(p.y_values)), [str(v) for v in p.y_values])
    ax.set_xlabel(axis_label(axes_names[1]))
    ax.set_ylabel(axis_label(axes_names[0]))
    ax.set_title(p.title, fontsize=9)
    return im


def _hatch(i: int, j: int) -> Rectangle:
    return Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#F4F4F4", hatch="xx",
                     edgecolor="#BBBBBB", linewidth=0)


def _norm(panels: list[HeatPanel]) -> Normalize:
    """One colour scale for the whole figure, so panels compare by colour."""
    finite = np.concatenate([p.cells[np.isfinite(p.cells)] for p in panels] or [np.zeros(0)])
    if not len(finite):
        return Normalize(0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    return Normalize(lo, hi if hi > lo else lo + 1e-9)


def draw_heatmaps(data: HeatmapData) -> Figure:
    spec = HEATMAPS[data.name]
    rows, cols, slots = _placement(len(data.panels), data.per_group)
    fig = new_figure(3.6 * cols + 1.2, 3.1 * rows + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    if not data.panels or data.x is None:
        no_data(axes[0], "heatmaps need two grid axes" if data.x is None
                else f"no {spec.title} column in the sweep")
        return fig
    norm = _norm(data.panels)
    images = [_heat_panel(axes[slot], p, spec, norm, (data.y, data.x))
              for slot, p in zip(slots, data.panels, strict=True)]
    for k, ax in enumerate(axes):
        if k not in slots:
            ax.set_axis_off()
    fig.colorbar(images[0], ax=[axes[k] for k in slots], shrink=0.9, label=spec.title)
    fig.suptitle(f"Sweep: {spec.title} over {axis_label(data.y)} x {axis_label(data.x)}"
                 + data.note + precision_note(data.panels), fontsize=11, x=0.01, ha="left")
    return fig


def _panel_note(lay: Layout) -> str:
    if lay.total_panels > len(lay.panels):
        return f" (first {len(lay.panels)} of {lay.total_panels} panels)"
    return ""


@dataclass(frozen=True)
class CurvePanel:
    """Bubble fraction of ``column`` vs ``x`` axis, one line per value of the row axis."""

    title: str
    column: str
    x_values: list[Any]
    lines: dict[Any, np.ndarray]  # row-axis value (or "all") -> bubble per x value


@dataclass(frozen=True)
class CurveData:
    """Bubble curves: x axis, the axis whose values make the lines (None: one line)."""

    x: str
    line_axis: str | None
    panels: list[CurvePanel]
    note: str
    per_group: int = 1  # panels per bubble column (one per combination of other axes)


def curve_data(sweep: Sweep) -> CurveData:
    lay = layout(sweep)
    t = sweep.table
    x_axis, line_axis = (lay.x, lay.y) if lay.x is not None else (lay.y, None)
    xs = _values(t[x_axis])
    panels = []
    for column in metric_columns(sweep, HEATMAPS["bubble"]):
        for combo in lay.panels:
            sel = _select(t, combo)
            keys = _values(sel[line_axis]) if line_axis else ["all"]
            lines = {}
            for key in keys:
                part = sel[sel[line_axis] == key] if line_axis else sel
                by_x = pd.to_numeric(part.set_index(x_axis)[column], errors="coerce")
                lines[key] = by_x.reindex(xs).to_numpy(dtype=float)
            title = " | ".join(p for p in (column, _combo_title(combo)) if p)
            panels.append(CurvePanel(title, column, xs, lines))
    return CurveData(x_axis, line_axis, panels, _panel_note(lay), len(lay.panels))


#: one marker per drawn line, so lines that cross or touch stay apart
LINE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def identical_lines(lines: dict[Any, np.ndarray]) -> list[list[Any]]:
    """Keys grouped by equal curves (NaN equal to NaN), in first-seen order: a line
    drawn over an identical one would hide it, so each group is drawn once."""
    groups: list[list[Any]] = []
    for key, ys in lines.items():
        for grp in groups:
            if np.allclose(lines[grp[0]], ys, rtol=0, atol=1e-9, equal_nan=True):
                grp.append(key)
                break
        else:
            groups.append([key])
    return groups


def draw_curves(data: CurveData) -> Figure:
    """One column per stage, one row per combination of the other axes."""
    per = max(1, data.per_group)
    cols = max(1, math.ceil(len(data.panels) / per))
    slots = [(k % per) * cols + k // per for k in range(len(data.panels))]
    fig = new_figure(4.2 * cols + 0.4, 3.2 * per + 0.8)
    axes = fig.subplots(per, cols, squeeze=False).ravel()
    if not data.panels:
        no_data(axes[0], "no bubble_<stage> columns in the sweep")
        return fig
    cmap = colormaps["viridis"]
    for slot, p in zip(slots, data.panels, strict=True):
        ax = axes[slot]
        groups = identical_lines(p.lines)
        n = max(1, len(groups) - 1)
        for k, keys in enumerate(groups):
            name = axis_label(str(data.line_axis)) if data.line_axis else p.column
            label = (f"{name}={keys[0]}" if data.line_axis else name) if len(keys) == 1 \
                else f"{name}={', '.join(str(key) for key in keys)} (identical)"
            ax.plot(range(len(p.x_values)), p.lines[keys[0]], color=cmap(0.85 * k / n),
                    marker=LINE_MARKERS[k % len(LINE_MARKERS)], label=label)
        ax.set_xticks(range(len(p.x_values)), [str(v) for v in p.x_values])
        ax.set_xlabel(axis_label(data.x))
        ax.set_ylabel("bubble fraction (idle share)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(p.title, fontsize=9)
        ax.grid(color="#E6E6E6", linewidth=0.6)
        ax.legend(fontsize=7.5)
    fig.suptitle(f"Sweep: bubble fraction vs {axis_label(data.x)}" + data.note,
                 fontsize=11, x=0.01, ha="left")
    return fig
