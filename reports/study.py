"""A study's section of the HTML report: the question, the verdict, every point's shown
columns, the figures the study file asks for and, after ``--replay``, predicted beside
measured.

The input is the study's JSON (``pipefill study --json``, ``StudyResult.to_json()``), so
this module needs nothing from the simulator. Figure kinds live in :data:`FIGURES`; each
computes its data (checked by tests) and then draws it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from pipefill.reports import html as h
from pipefill.reports.build import write_report_dir
from pipefill.reports.style import new_figure, no_data, png_bytes

VARIANT = "variant"
_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B2", "#937860")


@dataclass(frozen=True)
class Series:
    """One line (or one heatmap panel's points): its name and (x, y) or cells."""

    name: str
    x: list[Any]
    y: list[float | None]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) \
        and math.isfinite(v) else None


def _label(data: dict[str, Any], column: str) -> str:
    dims = {d["key"]: d["label"] for d in data.get("dims", [])}
    return dims.get(column) or data.get("labels", {}).get(column, column)


def _axes(data: dict[str, Any]) -> list[str]:
    return [d["key"] for d in data.get("dims", []) if d["key"] != VARIANT]


def heatmap_data(data: dict[str, Any], fig: dict[str, Any]) -> list[Series]:
    """One panel per variant over its first two axes: ``x`` the (row, column) values,
    ``y`` the metric (None: missing or failed)."""
    out = []
    for variant in dict.fromkeys(p[VARIANT] for p in data["points"]):
        pts = [p for p in data["points"] if p[VARIANT] == variant]
        axes = [a for a in _axes(data) if all(p.get(a) is not None for p in pts)][:2]
        if len(axes) < 2:
            continue
        cells = [(p[axes[0]], p[axes[1]]) for p in pts]
        values = [None if p.get("error") else _num(p.get(fig["metric"])) for p in pts]
        out.append(Series(f"{variant}|{axes[0]}|{axes[1]}", cells, values))
    return out


def bars_data(data: dict[str, Any], fig: dict[str, Any]) -> list[Series]:
    """One series per variant: point labels and the metric."""
    groups: dict[str, Series] = {}
    for p in data["points"]:
        s = groups.setdefault(p[VARIANT], Series(p[VARIANT], [], []))
        s.x.append(p["label"])
        s.y.append(None if p.get("error") else _num(p.get(fig["metric"])))
    return list(groups.values())


def lines_data(data: dict[str, Any], fig: dict[str, Any]) -> list[Series]:
    """One line per value of ``by``, sorted by ``x``; points without x are left out."""
    groups: dict[str, list[tuple[float, float | None]]] = {}
    for p in data["points"]:
        x = _num(p.get(fig["x"]))
        if x is None:
            continue
        name = ", ".join(str(p.get(b)) if b == VARIANT else f"{_label(data, b)} = {p.get(b)}"
                         for b in fig.get("by") or [VARIANT] if p.get(b) not in (None, ""))
        y = None if p.get("error") else _num(p.get(fig["metric"]))
        groups.setdefault(name or fig["metric"], []).append((x, y))
    return [Series(name, [x for x, _ in sorted(pts, key=lambda t: t[0])],
                   [y for _, y in sorted(pts, key=lambda t: t[0])])
            for name, pts in groups.items()]


def draw_heatmap(data: dict[str, Any], fig: dict[str, Any], series: list[Series]) -> Figure:
    figure = new_figure(3.8 * max(1, len(series)) + 0.6, 3.4)
    axes = figure.subplots(1, max(1, len(series)), squeeze=False).ravel()
    if not series:
        no_data(axes[0], "a heatmap needs two axes")
        return figure
    finite = [v for s in series for v in s.y if v is not None]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    for ax, s in zip(axes, series, strict=True):
        variant, ya, xa = s.name.split("|")
        rows = list(dict.fromkeys(c[0] for c in s.x))
        cols = list(dict.fromkeys(c[1] for c in s.x))
        grid = [[math.nan] * len(cols) for _ in rows]
        for (r, c), v in zip(s.x, s.y, strict=True):
            grid[rows.index(r)][cols.index(c)] = math.nan if v is None else v
        im = ax.imshow(grid, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-9,
                       origin="lower", aspect="auto")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, "n/a" if math.isnan(v) else f"{v:.3g}", ha="center",
                        va="center", fontsize=9, color="white" if not math.isnan(v)
                        and (v - lo) < 0.5 * (hi - lo) else "black")
        ax.set_xticks(range(len(cols)), [str(c) for c in cols])
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        ax.set_xlabel(_label(data, xa))
        ax.set_ylabel(_label(data, ya))
        if variant:
            ax.set_title(variant, fontsize=9)
    figure.colorbar(im, ax=list(axes), shrink=0.9, label=_label(data, fig["metric"]))
    return figure


def draw_bars(data: dict[str, Any], fig: dict[str, Any], series: list[Series]) -> Figure:
    labels = [x for s in series for x in s.x]
    figure = new_figure(7.5, 0.8 + 0.28 * max(1, len(labels)))
    ax = figure.subplots()
    pos = 0
    for k, s in enumerate(series):
        ys = [v if v is not None else 0.0 for v in s.y]
        bars = ax.barh(range(pos, pos + len(ys)), ys, color=_COLOURS[k % len(_COLOURS)],
                       label=s.name or None)
        for b, v in zip(bars, s.y, strict=True):
            ax.text(b.get_width(), b.get_y() + b.get_height() / 2,
                    " missing" if v is None else f" {v:.3g}", va="center", fontsize=8)
        pos += len(ys)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(_label(data, fig["metric"]))
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo, hi + 0.12 * (hi - lo))  # room for the values written after the bars
    _reference(ax, fig, vertical=True)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def draw_lines(data: dict[str, Any], fig: dict[str, Any], series: list[Series]) -> Figure:
    figure = new_figure(6.5, 3.6)
    ax = figure.subplots()
    if not series:
        no_data(ax, f"no point has {fig.get('x')}")
        return figure
    for k, s in enumerate(series):
        ax.plot(s.x, [math.nan if v is None else v for v in s.y], marker="o",
                color=_COLOURS[k % len(_COLOURS)], label=s.name)
    ax.set_xlabel(_label(data, fig["x"]))
    ax.set_ylabel(_label(data, fig["metric"]))
    if all(v is None or v >= 0 for s in series for v in s.y):
        ax.set_ylim(bottom=0)  # a change reads at its true size, not stretched
    _reference(ax, fig, vertical=False)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def _reference(ax: Any, fig: dict[str, Any], vertical: bool) -> None:
    if fig.get("line") is not None:
        (ax.axvline if vertical else ax.axhline)(fig["line"], color="#C00000", linestyle=":",
                                                 linewidth=1.2)


@dataclass(frozen=True)
class StudyFigure:
    """A figure kind: ``data(study, figure)`` computes what ``draw`` shows."""

    data: Callable[[dict[str, Any], dict[str, Any]], list[Series]]
    draw: Callable[[dict[str, Any], dict[str, Any], list[Series]], Figure]


FIGURES: dict[str, StudyFigure] = {
    "heatmap": StudyFigure(heatmap_data, draw_heatmap),
    "bars": StudyFigure(bars_data, draw_bars),
    "lines": StudyFigure(lines_data, draw_lines),
}


def render(data: dict[str, Any]) -> list[h.RenderedFigure]:
    """Every figure the study asks for, named ``<study>_<n>_<kind>``."""
    out = []
    for n, fig in enumerate(data.get("figures", [])):
        kind = FIGURES[fig["kind"]]
        drawn = kind.draw(data, fig, kind.data(data, fig))
        title = fig.get("title") or _label(data, fig["metric"])
        drawn.suptitle(f"{data['study']}: {title}", fontsize=10, x=0.01, ha="left")
        png = png_bytes(drawn)
        out.append(h.RenderedFigure(f"{data['study']}_{n}_{fig['kind']}", title,
                                    f"{fig['kind']} of {fig['metric']}", png))
    return out


def section(data: dict[str, Any], figures: list[h.RenderedFigure]) -> str:
    """The study's section: question, verdict, points, figures, measured points."""
    cols = data.get("columns", [])
    blocks = [h.para(data["question"]), h.para(f"The brief: {data['brief']}")
              if data.get("brief") else "",
              "<ul>" + "".join(f"<li>{h.esc(v)}</li>" for v in data["verdict"]) + "</ul>",
              h.table(["point", *(_label(data, c) for c in cols)],
                      ([p["label"] or p[VARIANT] or "-", *(p.get(c) for c in cols)]
                       for p in data["points"])),
              *(h.figure(f) for f in figures)]
    if data.get("explained"):
        blocks.append(h.para("Why, from explain on each key point's simulated trace:"))
        blocks.append("<ul>" + "".join(
            f"<li>{h.esc(e['label'])}: {h.esc(e['verdict'])}"
            + (f" (lever: {h.esc(e['lever'])})" if e.get("lever") else "") + "</li>"
            for e in data["explained"]) + "</ul>")
    if data.get("measured"):
        blocks.append(measured_table(data["measured"]))
    return h.section(f"{data['study']}: {data['title']} (scenario {data['scenario']})",
                     *[b for b in blocks if b])


def measured_table(measured: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for m in measured for k in m["predicted"]))
    rows = [[m["label"], *(v for k in keys for v in (m["predicted"].get(k),
                                                       m["measured"].get(k)))]
            for m in measured]
    return h.table(["point", *(f"{k} {side}" for k in keys for side in
                               ("predicted", "measured"))], rows)


def write_study_report(data: dict[str, Any], out: Path, command: str) -> list[str]:
    """Write ``out/index.html`` (one section), its figures and ``study.json`` atomically;
    returns the files written."""
    figures = render(data)
    page = h.page(f"pipefill study {data['study']}: {data['title']}",
                  [section(data, figures), h.section("Produced by", h.pre(command))])
    files = {f.filename: f.png for f in figures}
    files["index.html"] = page.encode("utf-8")
    files["study.json"] = json.dumps(data, indent=1, default=str).encode("utf-8")
    write_report_dir(Path(out), files, command)
    return sorted(files)
