"""Build a report directory: PNG figures plus one self-contained ``index.html``.

Figure kinds live in one registry (:data:`FIGURES`): each computes its data from the
inputs, then draws it, so tests can check the data behind every figure against the
trace. :data:`REPORT_FIGURES` says which kinds each input kind gets.

The directory is built in a temporary directory beside ``out`` and moved into place
only when complete; an existing ``out`` is replaced only if it is empty or an earlier
pipefill report (it holds :data:`MARKER`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from pipefill.reports import content
from pipefill.reports import html as h
from pipefill.reports.distributions import (
    draw_latency,
    draw_phase_durations,
    latency_data,
    phase_durations,
)
from pipefill.reports.gantt import DEFAULT_WINDOW, draw_gantt, gantt_panels
from pipefill.reports.idle import Facts, draw_idle, idle_data
from pipefill.reports.inputs import ReportError, ReportInput, load_inputs
from pipefill.reports.pareto import draw_pareto, pareto_data
from pipefill.reports.period import draw_period, period_data
from pipefill.reports.provenance import report_command
from pipefill.reports.queues import draw_queues, queue_data
from pipefill.reports.style import png_bytes
from pipefill.reports.sweep import curve_data, draw_curves, draw_heatmaps, heatmap_data
from pipefill.traces.io import check_not_input

MARKER = ".pipefill-report"


@dataclass(frozen=True)
class ReportOptions:
    """``bound_ms``: analytic period to draw (None: unknown); ``window``: Gantt chunks (0: all);
    ``facts``: a trace's policy facts for the idle-causes figure (the CLI passes the
    simulator's; None: what the trace's metadata says)."""

    bound_ms: float | None = None
    window: int = DEFAULT_WINDOW
    facts: Facts | None = None


@dataclass(frozen=True)
class FigureKind:
    """One figure: ``data(inputs, options)`` computes what ``draw(data, options)`` shows."""

    title: str
    caption: str
    data: Callable[[ReportInput, ReportOptions], Any]
    draw: Callable[[Any, ReportOptions], Figure]


def _sweep(ri: ReportInput) -> Any:
    assert ri.sweep is not None  # guaranteed by REPORT_FIGURES: only sweep reports get these
    return ri.sweep


def _heatmap(name: str) -> FigureKind:
    what = {"period": "median period", "overlap": "OverlapScore",
            "bubble": "idle share of each stage"}[name]
    return FigureKind(
        f"Sweep heatmap: {what}",
        f"{what} at every grid point; one panel per combination of the other grid axes. "
        "Hatched cells: the point stalled or the metric is missing.",
        lambda ri, o: heatmap_data(_sweep(ri), name),
        lambda d, o: draw_heatmaps(d),
    )


FIGURES: dict[str, FigureKind] = {
    "gantt": FigureKind(
        "Gantt per stage",
        "Spans per stage and lane, coloured by phase; hatched: idle (bubbles); white "
        "numbers: chunk; triangles: emits; red: hard cuts and dropped results. Long runs "
        "are windowed (not downsampled): the panel title names the chunks shown. Bars "
        "narrower than 1.5 px are widened to stay visible. For a pair, predicted is "
        "above measured on one time axis.",
        lambda ri, o: gantt_panels(ri.runs, o.window),
        lambda d, o: draw_gantt(d)),
    "period": FigureKind(
        "Period and OverlapScore per chunk",
        "period_k = tEmit[k] - tEmit[k-1] for every chunk; dashed: max(stage0, stage1), "
        "dotted: their serial sum (median busy times over the window); dash-dot: the "
        "analytic bound when given. Lower panel: OverlapScore_k with the 0.30 pass gate. "
        "Grey band: warm-up.",
        lambda ri, o: period_data(ri.runs),
        lambda d, o: draw_period(d, o.bound_ms)),
    "queues": FigureKind(
        "Queue depth over time",
        "Depth of each bounded queue (slots held) from the trace's counters with its "
        "capacity (D_in, D_out), and bytes in flight; whole run.",
        lambda ri, o: queue_data(ri.runs),
        lambda d, o: draw_queues(d)),
    "idle_causes": FigureKind(
        "Why stages idle",
        "Each stage's steady window: busy time, then its idle time by cause (pipefill "
        "explain: starved on an input queue, blocked on a full output queue, a "
        "dependency, the source, fill/drain, unattributed), with the verdict and its "
        "lever. For a pair, predicted above measured.",
        lambda ri, o: idle_data(ri.runs, o.facts),
        lambda d, o: draw_idle(d)),
    "latency_cdf": FigureKind(
        "Latency CDF",
        "latency_k = emit time - time chunk k's input was available, over the "
        "steady-state window, with p50/p95/p99 from the metrics.",
        lambda ri, o: latency_data(ri.runs),
        lambda d, o: draw_latency(d)),
    "phase_durations": FigureKind(
        "Per-phase durations",
        "Distribution of span durations per phase (send split by sending stage); for a "
        "pair, predicted (plain) next to measured (hatched).",
        lambda ri, o: phase_durations(ri.runs),
        lambda d, o: draw_phase_durations(d)),
    "heatmap_period": _heatmap("period"),
    "heatmap_overlap": _heatmap("overlap"),
    "heatmap_bubble": _heatmap("bubble"),
    "bubble_curves": FigureKind(
        "Bubble fraction vs queue depth",
        "Idle share of each stage against the column axis, one line per row-axis value.",
        lambda ri, o: curve_data(_sweep(ri)),
        lambda d, o: draw_curves(d)),
    "pareto": FigureKind(
        "Memory in flight vs period",
        "Peak bytes in flight against the period of every grid point that ran; the "
        "frontier joins the points no other point beats on both.",
        lambda ri, o: pareto_data(_sweep(ri)),
        lambda d, o: draw_pareto(d)),
}

TRACE_FIGURES = ("gantt", "period", "idle_causes", "queues", "latency_cdf", "phase_durations")
#: input kind -> the figures its report has, in page order
REPORT_FIGURES: dict[str, tuple[str, ...]] = {
    "trace": TRACE_FIGURES,
    "pair": TRACE_FIGURES,
    "sweep": ("heatmap_period", "heatmap_overlap", "heatmap_bubble", "bubble_curves", "pareto"),
}


@dataclass(frozen=True)
class ReportResult:
    """Where the report went, what kind of input it covers and its figure files."""

    out: Path
    kind: str
    figures: list[str]
    notices: list[str]

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def render_figures(ri: ReportInput, opts: ReportOptions) -> list[h.RenderedFigure]:
    """Compute every figure's data first (bad input fails before drawing), then draw."""
    names = REPORT_FIGURES[ri.kind]
    data = {name: FIGURES[name].data(ri, opts) for name in names}
    out = []
    for name in names:
        kind = FIGURES[name]
        out.append(h.RenderedFigure(name, kind.title, kind.caption,
                                    png_bytes(kind.draw(data[name], opts))))
    return out


def _title(ri: ReportInput) -> str:
    if ri.sweep is not None:
        return f"pipefill report: sweep {ri.sweep.meta.get('scenario_name', ri.sweep.path.stem)}"
    meta = ri.runs[0].trace.meta
    what = "predicted vs measured" if ri.kind == "pair" else ri.runs[0].role
    policy = meta.get("policy", {}).get("name", "unknown policy")
    return f"pipefill report: {meta.get('scenario_name', 'trace')} / {policy} ({what})"


def render_page(ri: ReportInput, figures: list[h.RenderedFigure], command: str) -> str:
    inputs = h.para("Inputs: " + ", ".join(str(p) for p in ri.paths) + f" ({ri.kind}).")
    blocks = [inputs, *content.notices(ri)]
    blocks.append(content.sweep_section(ri.sweep) if ri.sweep is not None
                  else content.metrics_section(ri))
    blocks.append(h.section("Figures", *(h.figure(f) for f in figures)))
    blocks.append(content.scenario_section(ri))
    blocks.append(content.produced_section(ri, command))
    return h.page(_title(ri), blocks)


def check_out_dir(out: Path) -> None:
    """Fail (naming --out) unless ``out`` is new, empty or an earlier pipefill report."""
    if out.exists() and not out.is_dir():
        raise ReportError("--out", f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ReportError("--out", f"{out} is a non-empty directory that is not a pipefill "
                          "report; choose a new or empty directory")


def _publish(tmp: Path, out: Path) -> None:
    """Swap the finished directory into place (an old report is replaced as a whole)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def build_report(paths: list[Path], out: Path, opts: ReportOptions | None = None) -> ReportResult:
    """Read ``paths``, render every figure and the page, and publish ``out`` atomically."""
    opts = opts or ReportOptions()
    ri = load_inputs([Path(p) for p in paths])
    out = Path(out)
    check_out_dir(out)
    check_not_input(out, paths, directory=True)
    figures = render_figures(ri, opts)
    command = report_command(ri.paths, out, opts.bound_ms, opts.window)
    page = render_page(ri, figures, command)
    write_report_dir(out, {**{f.filename: f.png for f in figures},
                           "index.html": page.encode("utf-8")}, command)
    notes = [n for n in (content.cut_notice(r) for r in ri.runs) if n]
    return ReportResult(out, ri.kind, [f.filename for f in figures], notes)


def write_report_dir(out: Path, files: dict[str, bytes], command: str) -> None:
    """Write ``files`` (name -> bytes) and the report marker into a new directory beside
    ``out`` and publish it as ``out`` at once (an earlier report there is replaced)."""
    check_out_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # mkdir, not mkdtemp: the published directory gets the usual (umask) permissions
        tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
    except OSError as exc:
        raise ReportError("--out", f"{out}: cannot write ({exc.strerror or exc})") from None
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / MARKER).write_text(command + "\n", encoding="utf-8")
        _publish(tmp, out)
    except OSError as exc:
        raise ReportError("--out", f"{out}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
