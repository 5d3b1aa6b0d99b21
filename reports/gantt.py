"""Gantt chart: one row per (stage, lane), phases coloured, bubbles hatched, cuts marked.

Long runs are *windowed*, not downsampled: every span in the window is drawn as it is
in the trace, and the title says which chunks and times the window covers. The window
starts just before the first hard cut when there is one (so the cut is in view), else at
the end of the warm-up. :func:`gantt_data` returns exactly what is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from pipefill.reports.inputs import Run
from pipefill.reports.series import cut_chunks, warmup_of
from pipefill.reports.style import IDLE_STYLE, MARK_STYLES, new_figure, phase_colour
from pipefill.traces.schema import Trace

#: lane -> rank within a stage (rows are sorted stage first, then by this)
LANE_ORDER: dict[str, int] = {"compute": 0, "comm": 1}
#: relative row height per lane (sends are instants at this scale; they need less room)
LANE_HEIGHT: dict[str, float] = {"compute": 1.0, "comm": 0.55}
#: marks a Gantt shows
GANTT_MARKS = ("hard_cut", "drop", "emit")
DEFAULT_WINDOW = 24
#: narrowest bar drawn, in pixels of the ~1400 px wide plot (the data keeps true widths)
MIN_PX = 1.5


@dataclass(frozen=True)
class ChunkWindow:
    """Chunks ``first..last`` (inclusive) of ``total``; ``whole`` when nothing is cut off."""

    first: int
    last: int
    total: int

    @property
    def whole(self) -> bool:
        return self.last - self.first + 1 >= self.total

    def describe(self) -> str:
        if self.whole:
            return f"all {self.total} chunks"
        return f"window: chunks {self.first}-{self.last} of {self.total}"


@dataclass(frozen=True)
class GanttData:
    """What one Gantt panel draws.

    ``bars``: every span overlapping [t0, t1] (trace columns plus ``row``), unclipped;
    ``idle``: gaps between compute spans inside [t0, t1] (``row``, ``start_ms``,
    ``end_ms``); ``marks``: hard cuts, drops and emits inside [t0, t1] with ``row``.
    ``origin_ms``: None when times are the trace's own; else every time (and t0, t1) is
    relative to this trace time, the start of the window's first chunk (panels of a
    predicted/measured pair, so both start their window at x = 0).
    """

    label: str
    rows: list[tuple[str, str]]
    bars: pd.DataFrame
    idle: pd.DataFrame
    marks: pd.DataFrame
    t0: float
    t1: float
    window: ChunkWindow
    origin_ms: float | None = None


def choose_window(trace: Trace, size: int) -> ChunkWindow:
    """``size`` chunks (0 = all): around the first hard cut, else after the warm-up."""
    sp = trace.spans
    # compute spans only: control messages (e.g. shutdown) carry chunk = run.chunks
    chunks = sorted(int(c) for c in sp[sp["lane"] == "compute"]["chunk"].unique() if c >= 0)
    if not chunks:
        return ChunkWindow(0, -1, 0)
    lo, hi = chunks[0], chunks[-1]
    total = hi - lo + 1
    if size <= 0 or total <= size:
        return ChunkWindow(lo, hi, total)
    cuts = cut_chunks(trace)
    start = cuts[0] - size // 3 if cuts else lo + warmup_of(trace)
    start = max(lo, min(start, hi - size + 1))
    return ChunkWindow(start, start + size - 1, total)


def _time_range(trace: Trace, win: ChunkWindow) -> tuple[float, float]:
    ev = trace.events
    if win.whole or win.total == 0:
        return float(ev["start_ms"].min()), float(ev["end_ms"].max())
    sp = trace.spans
    first = sp[sp["chunk"] == win.first]
    last = sp[sp["chunk"] == win.last]
    t1 = float(last["end_ms"].max()) if len(last) else float(ev["end_ms"].max())
    return float(first["start_ms"].min()), t1


def _rows(spans: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = {(str(s), str(lane)) for s, lane in zip(spans["stage"], spans["lane"], strict=True)}
    return sorted(pairs, key=lambda p: (p[0], LANE_ORDER.get(p[1], 9), p[1]))


def _idle(bars: pd.DataFrame, rows: list[tuple[str, str]], t0: float,
          t1: float) -> pd.DataFrame:
    gaps: list[tuple[int, float, float]] = []
    for i, (_, lane) in enumerate(rows):
        if lane != "compute":
            continue
        sel = bars[bars["row"] == i].sort_values("start_ms")
        cursor = t0
        for s, e in zip(sel["start_ms"], sel["end_ms"], strict=True):
            if s > cursor:
                gaps.append((i, cursor, float(s)))
            cursor = max(cursor, float(e))
        if cursor < t1:
            gaps.append((i, cursor, t1))
    return pd.DataFrame(gaps, columns=["row", "start_ms", "end_ms"])


def gantt_data(run: Run, win: ChunkWindow) -> GanttData:
    trace = run.trace
    t0, t1 = _time_range(trace, win)
    sp = trace.spans
    rows = _rows(sp)
    index = {r: i for i, r in enumerate(rows)}
    bars = sp[(sp["end_ms"] >= t0) & (sp["start_ms"] <= t1)].copy()
    bars["row"] = [index[(str(s), str(la))] for s, la in zip(bars["stage"], bars["lane"],
                                                              strict=True)]
    ev = trace.events
    marks = ev[(ev["kind"] == "mark") & ev["name"].isin(GANTT_MARKS)
               & (ev["start_ms"] >= t0) & (ev["start_ms"] <= t1)].copy()
    marks["row"] = [index.get((str(s), "compute"), 0) for s in marks["stage"]]
    return GanttData(run.label, rows, bars.reset_index(drop=True), _idle(bars, rows, t0, t1),
                     marks.reset_index(drop=True), t0, t1, win)


def gantt_panels(runs: list[Run], size: int = DEFAULT_WINDOW) -> list[GanttData]:
    """One panel per run, all on the chunk window chosen from the first run; several
    panels are aligned on the window's start (:func:`aligned`)."""
    win = choose_window(runs[0].trace, size)
    panels = [gantt_data(run, win) for run in runs]
    return [aligned(p) for p in panels] if len(panels) > 1 else panels


def aligned(data: GanttData) -> GanttData:
    """``data`` with its times relative to its window's start (``origin_ms``)."""
    origin = data.t0

    def shift(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out["start_ms"] = out["start_ms"] - origin
        out["end_ms"] = out["end_ms"] - origin
        return out

    return replace(data, bars=shift(data.bars), idle=shift(data.idle),
                   marks=shift(data.marks), t0=0.0, t1=data.t1 - origin, origin_ms=origin)


# -- drawing -------------------------------------------------------------------------
def row_positions(rows: list[tuple[str, str]]) -> list[float]:
    """Y centre of each row: compute rows get full height, comm rows (tiny sends) less."""
    pos, y = [], 0.0
    for _, lane in rows:
        h = LANE_HEIGHT.get(lane, 1.0)
        pos.append(y + h / 2)
        y += h
    return pos


def _label_chunks(ax: Axes, data: GanttData, ys: list[float]) -> None:
    """Write each chunk's index over its dominant phase on each compute row.

    (The dominant phase is the one with most busy time, e.g. decode on stage0, the
    denoise steps on stage1, so the number sits on the widest block of that chunk.)
    """
    comp = data.bars[(data.bars["lane"] == "compute") & (data.bars["chunk"] >= 0)].copy()
    if comp.empty:
        return
    comp["dur"] = comp["end_ms"] - comp["start_ms"]
    g = comp.groupby(["row", "chunk", "name"]).agg(dur=("dur", "sum"), s=("start_ms", "min"),
                                                    e=("end_ms", "max")).reset_index()
    top = g.loc[g.groupby(["row", "chunk"])["dur"].idxmax()]
    min_width = (data.t1 - data.t0) / 90.0
    for _, b in top.iterrows():
        if b["e"] - b["s"] >= min_width and data.t0 <= b["s"] and b["e"] <= data.t1:
            ax.text((b["s"] + b["e"]) / 2, ys[int(b["row"])], str(int(b["chunk"])),
                    ha="center", va="center", fontsize=6.5, color="white", fontweight="bold")


def _draw_marks(ax: Axes, data: GanttData, ys: list[float], bottom: float) -> None:
    m = data.marks
    cuts = m[m["name"] == "hard_cut"]
    for t, epoch in zip(cuts["start_ms"], cuts["epoch"], strict=True):
        ax.axvline(t, **MARK_STYLES["hard_cut"])
        ax.text(t, bottom, f" hard cut -> epoch {int(epoch)}", fontsize=7.5,
                color=MARK_STYLES["hard_cut"]["color"], va="bottom", ha="left")
    for name in ("drop", "emit"):
        sel = m[m["name"] == name]
        ax.plot(sel["start_ms"], [ys[int(r)] - 0.45 for r in sel["row"]], **MARK_STYLES[name])
    for _, d in m[m["name"] == "drop"].iterrows():
        ax.text(d["start_ms"], ys[int(d["row"])] - 0.55, f"drop {int(d['chunk'])}",
                fontsize=6.5, color=MARK_STYLES["drop"]["color"], ha="center", va="bottom")


def _bars(ax: Axes, frame: pd.DataFrame, ys: list[float], rows: list[tuple[str, str]],
          min_w: float, **style: Any) -> None:
    for row, g in frame.groupby("row"):
        h = 0.7 * LANE_HEIGHT.get(rows[int(row)][1], 1.0)
        widths = (g["end_ms"] - g["start_ms"]).clip(lower=min_w)
        ax.broken_barh(list(zip(g["start_ms"], widths, strict=True)),
                       (ys[int(row)] - h / 2, h), **style)


def _draw_panel(ax: Axes, data: GanttData) -> set[str]:
    ys = row_positions(data.rows)
    bottom = ys[-1] + LANE_HEIGHT.get(data.rows[-1][1], 1.0) / 2 if ys else 1.0
    # a 80 us send in a 4 s window is under a pixel: draw every bar at least MIN_PX wide
    min_w = (data.t1 - data.t0) * MIN_PX / 1400.0
    for name, grp in data.bars.groupby("name", sort=True):
        _bars(ax, grp, ys, data.rows, min_w, facecolors=phase_colour(str(name)),
              edgecolor="white", linewidth=0.3)
    _bars(ax, data.idle, ys, data.rows, 0.0, **IDLE_STYLE)
    _label_chunks(ax, data, ys)
    _draw_marks(ax, data, ys, bottom)
    ax.set_yticks(ys, [f"{s} · {lane}" for s, lane in data.rows])
    has_drops = bool((data.marks["name"] == "drop").any())
    ax.set_ylim(bottom + 0.05, -0.5 if has_drops else -0.15)  # room for drop labels
    base = data.origin_ms or 0.0
    ax.set_title(f"{data.label}: {data.window.describe()}, "
                 f"t = {base + data.t0:,.0f}-{base + data.t1:,.0f} ms", fontsize=10, loc="left")
    ax.grid(axis="x", color="#E0E0E0", linewidth=0.6)
    ax.set_axisbelow(True)
    return {str(n) for n in data.bars["name"].unique()}


def _legend(fig: Figure, phases: set[str], marks: set[str]) -> None:
    handles: list[Artist] = [Patch(facecolor=phase_colour(p), label=p) for p in sorted(phases)]
    handles.append(Patch(label="idle (bubble)", **IDLE_STYLE))
    labels = {"hard_cut": "hard cut", "drop": "dropped result", "emit": "emit"}
    for name in GANTT_MARKS:
        if name in marks:
            handles.append(Line2D([], [], label=labels[name], **MARK_STYLES[name]))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7),
               fontsize=8, frameon=False)


def draw_gantt(panels: list[GanttData]) -> Figure:
    heights = [0.7 * sum(LANE_HEIGHT.get(lane, 1.0) for _, lane in p.rows) + 1.0
               for p in panels]
    fig = new_figure(14, sum(heights) + 1.0)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    phases: set[str] = set()
    marks: set[str] = set()
    for ax, data in zip(axes, panels, strict=True):
        phases |= _draw_panel(ax, data)
        marks |= {str(n) for n in data.marks["name"].unique()}
    axes[-1].set_xlim(min(p.t0 for p in panels), max(p.t1 for p in panels))
    axes[-1].set_xlabel(f"time since chunk {panels[0].window.first} started (ms)"
                        if panels[0].origin_ms is not None else "time since run start (ms)")
    _legend(fig, phases, marks)
    return fig
