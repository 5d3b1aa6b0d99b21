"""Figures a new user could not read (issue 13, item 9): coinciding period lines, Gantt
pairs on different time windows, hidden identical bubble curves, legend keys unlike the
bars, and the sweep table at 80 columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.reports.distributions import HIST_STYLES, draw_phase_durations, phase_durations
from pipefill.reports.gantt import draw_gantt, gantt_panels
from pipefill.reports.period import draw_period, period_data
from pipefill.reports.style import REF_STYLES
from pipefill.reports.sweep import draw_curves, identical_lines
from tests.helpers.traces import as_run, make_trace

runner = CliRunner()


@pytest.fixture(scope="module")
def run():
    return as_run(make_trace(chunks=20))


@pytest.fixture(scope="module")
def slower():
    """The same schedule 1.5x slower and starting 40 ms later (a 'measured' run)."""
    trace = make_trace(chunks=20)
    ev = trace.events.copy()
    ev["start_ms"] = ev["start_ms"] * 1.5 + 40.0
    ev["end_ms"] = ev["end_ms"] * 1.5 + 40.0
    return as_run(type(trace)(ev, trace.meta), "measured")


def _legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_a_bound_on_max_stage_is_labelled_and_drawn_as_a_band(run):
    (d,) = period_data([run])
    high = d.max_stage_ms
    assert high is not None
    fig = draw_period([d], bound_ms=high * 1.004)
    bound = [t for t in _legend_texts(fig.axes[0]) if t.startswith("analytic bound")]
    assert bound == [f"analytic bound = {high * 1.004:,.1f} ms (on max(stage0, "
                     f"stage1) = {high:,.1f} ms: the wide band)"]
    widths = {line.get_label(): line.get_linewidth() for line in fig.axes[0].get_lines()}
    assert widths[bound[0]] == REF_STYLES["bound_under"]["linewidth"]
    # far from it: the plain dash-dot line, no note
    fig = draw_period([d], bound_ms=high * 0.8)
    assert f"analytic bound = {high * 0.8:,.1f} ms" in _legend_texts(fig.axes[0])


def test_a_pair_of_gantt_panels_starts_the_same_chunk_at_zero(run, slower):
    panels = gantt_panels([run, slower], size=6)
    first = panels[0].window.first
    assert panels[0].window == panels[1].window
    for p, trace in zip(panels, (run.trace, slower.trace), strict=True):
        sp = trace.spans
        start = float(sp[sp["chunk"] == first]["start_ms"].min())
        assert p.origin_ms == pytest.approx(start) and p.t0 == 0.0
        bars = p.bars[p.bars["chunk"] == first]
        assert float(bars["start_ms"].min()) == pytest.approx(0.0)
    assert panels[1].t1 == pytest.approx(1.5 * panels[0].t1)
    fig = draw_gantt(panels)
    assert fig.axes[-1].get_xlabel() == f"time since chunk {first} started (ms)"
    (single,) = gantt_panels([run], size=6)
    assert single.origin_ms is None and single.t0 > 0  # one panel keeps trace times


def test_identical_bubble_curves_are_grouped_and_noted():
    lines = {1: np.array([0.5, 0.2]), 2: np.array([0.5, 0.2]), 3: np.array([0.4, np.nan]),
             4: np.array([0.4, np.nan])}
    assert identical_lines(lines) == [[1, 2], [3, 4]]
    from pipefill.reports.sweep import CurveData, CurvePanel

    fig = draw_curves(CurveData("policy.d_out", "policy.d_in",
                                [CurvePanel("bubble_stage0", "bubble_stage0", [1, 2], lines)],
                                ""))
    assert _legend_texts(fig.axes[0]) == ["D_in=1, 2 (identical)", "D_in=3, 4 (identical)"]
    markers = [line.get_marker() for line in fig.axes[0].get_lines()]
    assert len(set(markers)) == 2


def test_phase_duration_legend_keys_are_the_bars(run, slower):
    fig = draw_phase_durations(phase_durations([run, slower]))
    handles: list[Any] = list(fig.legends[0].legend_handles)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "predicted (filled)", "measured (outline)"]
    filled, outline = handles
    assert filled.get_alpha() == HIST_STYLES["predicted"]["alpha"] and filled.get_fill()
    assert not outline.get_fill()
    assert outline.get_linewidth() == HIST_STYLES["measured"]["linewidth"]
    bar_colour = fig.axes[0].patches[0].get_facecolor()
    assert filled.get_facecolor() == pytest.approx(bar_colour)


def test_the_sweep_table_fits_80_columns_and_says_what_is_left_out(tmp_path):
    res = runner.invoke(app, ["sweep", "--set", "run.chunks=14", "--set", "run.warmup=2",
                              "--grid", "policy.d_in=1,2", "--grid", "policy.d_out=1,2",
                              "--grid", "policy.recompute_lag=1"], terminal_width=80)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in res.stdout
    header = lines[2]
    assert [c.strip() for c in header.strip("┃").split("┃")] == [
        "d_in", "d_out", "period ms", "fps", "overlap", "p95 ms", "peak MiB"]
    assert len([ln for ln in lines if ln.startswith("│")]) == 4  # a row per point, unwrapped
    assert lines[-2].startswith("7 of ") and lines[-2].endswith(
        " columns shown; --out or --json has all")
    assert lines[-1] == "same in every point: policy.recompute_lag=1"


def test_sweep_table_names_stalled_points():
    from pipefill.cli.render import sweep_columns

    table = pd.DataFrame({"policy.d_in": [1, 2], "period_ms": [1.0, None],
                          "error": [None, "stage0: stalled"]})
    assert [h for _, h, _ in sweep_columns(table, ["policy.d_in"])] == [
        "d_in", "period ms", "error"]


def test_pareto_front_labels_never_overlap():
    from pipefill.reports.pareto import ParetoData, draw_pareto

    # 40 front points packed close together (what a 100+ point sweep gives)
    n = 40
    pts = pd.DataFrame({"label": [f"({i}, {i % 3})" for i in range(n)],
                        "mem_mib": np.linspace(1.0, 3.0, n),
                        "period_ms": np.linspace(160.0, 150.0, n), "frontier": True})
    fig = draw_pareto(ParetoData(["policy.d_in", "policy.d_out"], pts))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert boxes and all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    left_out = n - len(boxes)
    title = ax.get_title(loc="left")
    assert (f"{left_out} crowded front labels left out" in title) == (left_out > 0)
