"""The data behind every report figure equals what the trace or sweep table says."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipefill.reports.distributions import latency_data, phase_durations
from pipefill.reports.gantt import choose_window, gantt_panels
from pipefill.reports.inputs import ReportError, Run, Sweep, load_inputs
from pipefill.reports.pareto import pareto_data
from pipefill.reports.period import draw_period, period_data
from pipefill.reports.queues import queue_data
from pipefill.reports.series import chunk_series
from pipefill.reports.sweep import curve_data, heatmap_data
from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.load import load_raw
from pipefill.sim.sweep.grid import Axis, run_sweep
from pipefill.traces.io import write_table, write_trace
from pipefill.traces.schema import Trace
from pipefill.traces.toml_writer import to_toml
from tests.helpers.scenarios import make_scenario
from tests.helpers.traces import COSTS, POLICY, TRANSPORT, as_run, make_trace


@pytest.fixture(scope="module")
def run() -> Run:
    return as_run(make_trace())


@pytest.fixture(scope="module")
def cut_run() -> Run:
    return as_run(make_trace(hard_cuts=[15]))


def span_set(df: pd.DataFrame) -> list[tuple]:
    cols = ["name", "stage", "lane", "chunk", "call_id", "step", "start_ms", "end_ms"]
    return sorted(df[cols].itertuples(index=False, name=None))


# -- Gantt ------------------------------------------------------------------------------
def test_gantt_bars_are_the_spans_of_the_whole_run(run):
    (panel,) = gantt_panels([run], size=0)
    assert panel.window.whole
    assert span_set(panel.bars) == span_set(run.trace.spans)
    rows = {(s, lane) for s, lane in zip(run.trace.spans["stage"], run.trace.spans["lane"],
                                         strict=True)}
    assert set(panel.rows) == rows
    for _, bar in panel.bars.iterrows():  # each bar sits on its own stage/lane row
        assert panel.rows[bar["row"]] == (bar["stage"], bar["lane"])


def test_gantt_window_keeps_exactly_the_spans_it_overlaps(run):
    (panel,) = gantt_panels([run], size=8)
    assert (panel.window.first, panel.window.last) == (3, 10)  # starts after warm-up 3
    sp = run.trace.spans
    inside = sp[(sp["end_ms"] >= panel.t0) & (sp["start_ms"] <= panel.t1)]
    assert span_set(panel.bars) == span_set(inside)
    shown = set(panel.bars["chunk"])
    assert set(range(3, 11)) <= shown and 25 not in shown


def test_gantt_idle_is_the_complement_of_compute(run):
    (panel,) = gantt_panels([run], size=8)
    for i, (_stage, lane) in enumerate(panel.rows):
        if lane != "compute":
            assert (panel.idle["row"] != i).all()
            continue
        bars = panel.bars[panel.bars["row"] == i]
        busy = np.clip(bars[["start_ms", "end_ms"]].to_numpy(), panel.t0, panel.t1)
        idle = panel.idle[panel.idle["row"] == i]
        total = (busy[:, 1] - busy[:, 0]).sum() + (idle["end_ms"] - idle["start_ms"]).sum()
        assert total == pytest.approx(panel.t1 - panel.t0)  # compute spans never overlap


def test_gantt_window_shows_the_hard_cut_and_drops(cut_run):
    win = choose_window(cut_run.trace, 9)
    assert win.first <= 15 <= win.last
    (panel,) = gantt_panels([cut_run], size=9)
    cuts = panel.marks[panel.marks["name"] == "hard_cut"]
    assert list(cuts["chunk"]) == [15]
    drops = cut_run.trace.marks("drop")
    assert len(drops) > 0
    assert sorted(panel.marks[panel.marks["name"] == "drop"]["chunk"]) == sorted(drops["chunk"])


def test_pair_panels_share_the_chunk_window(run, cut_run):
    panels = gantt_panels([run, as_run(cut_run.trace, "measured")], size=6)
    assert panels[0].window == panels[1].window
    assert [p.label for p in panels] == ["predicted (t.parquet)", "measured (t.parquet)"]


# -- period, queues, latency, phases ------------------------------------------------------
def test_chunk_series_reproduces_the_metrics(run):
    s, m = chunk_series(run.trace), run.metrics
    win = s[s["in_window"]]
    assert len(win) == m["window"]["periods"]
    assert win["period_ms"].mean() == pytest.approx(m["period_ms"])
    assert win["period_ms"].median() == pytest.approx(m["period_p50_ms"])
    assert win["overlap"].dropna().median() == pytest.approx(m["overlap_score"])
    assert win["stage0_ms"].median() == pytest.approx(m["stage0_ms"])
    assert np.percentile(win["latency_ms"], 95) == pytest.approx(m["latency_p95_ms"])
    emits = run.trace.marks("emit").sort_values("start_ms")
    assert list(s["chunk"]) == list(emits["chunk"])


def test_period_lines_come_from_the_metrics_and_the_bound_is_optional(run):
    (d,) = period_data([run])
    m = run.metrics
    assert d.max_stage_ms == pytest.approx(max(m["stage0_ms"], m["stage1_ms"]))
    assert d.serial_sum_ms == pytest.approx(m["stage0_ms"] + m["stage1_ms"])

    def levels(fig) -> set[float]:
        return {round(float(line.get_ydata()[0]), 6) for line in fig.axes[0].get_lines()
                if len(set(line.get_ydata())) == 1}

    assert 123.5 not in levels(draw_period([d]))
    assert 123.5 in levels(draw_period([d], bound_ms=123.5))


def test_queue_series_are_the_counters_with_policy_capacity(run):
    (d,) = queue_data([run])
    ev = run.trace.events
    for name in ("q_in", "q_out", "bytes_in_flight"):
        c = ev[(ev["kind"] == "counter") & (ev["name"] == name)].sort_values("start_ms",
                                                                              kind="stable")
        np.testing.assert_array_equal(d.counters[name].values, c["value"].to_numpy())
        np.testing.assert_array_equal(d.counters[name].times_ms, c["start_ms"].to_numpy())
    assert d.counters["q_in"].capacity == POLICY["d_in"]
    assert d.counters["q_out"].capacity == POLICY["d_out"]
    assert d.counters["bytes_in_flight"].capacity is None


def test_latency_cdf_is_emit_minus_input_over_the_window(run):
    (d,) = latency_data([run])
    tr = run.trace
    t_in = tr.marks("input").groupby("chunk")["start_ms"].min()
    cool = run.metrics["window"]["cooldown"]
    assert cool == 2
    emits = tr.marks("emit").sort_values("start_ms").iloc[3:-cool]  # warm-up 3, cool-down
    expected = np.sort(emits["start_ms"].to_numpy() - t_in.reindex(emits["chunk"]).to_numpy())
    np.testing.assert_allclose(d.latencies_ms, expected)
    assert d.percentiles[50] == run.metrics["latency_p50_ms"]


def test_phase_durations_count_every_span(run, cut_run):
    data = phase_durations([run, as_run(cut_run.trace, "measured")])
    for (_label, _role, groups), r in zip(data.runs, (run, cut_run), strict=True):
        sp = r.trace.spans
        assert sum(len(v) for v in groups.values()) == len(sp)
        dec = sp[sp["name"] == "decode"]
        np.testing.assert_allclose(np.sort(groups["decode"]),
                                   np.sort((dec["end_ms"] - dec["start_ms"]).to_numpy()))
        assert len(groups["send (stage1)"]) == ((sp["name"] == "send")
                                                & (sp["stage"] == "stage1")).sum()


# -- sweeps -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep() -> Sweep:
    raw = {"run": {"chunks": 14, "warmup": 2}, "policy": dict(POLICY), "costs": COSTS,
           "transport": TRANSPORT}
    axes = [Axis("policy.d_in", (1, 2)), Axis("policy.d_out", (1, 2, 3)),
            Axis("policy.stage0_order", ("producer_first", "consumer_first"))]
    table = run_sweep(raw, [], axes)
    table.loc[4, "error"] = "stall at t=1 ms: stage0 blocked"  # a stalled point
    table.loc[4, ["period_ms", "overlap_score", "bubble_stage0"]] = np.nan
    return Sweep(Path("sw.parquet"), table, {"kind": "sweep"}, [a.field for a in axes])


def test_heatmap_cells_are_the_sweep_rows(sweep):
    data = heatmap_data(sweep, "period")
    assert (data.y, data.x) == ("policy.d_in", "policy.d_out")
    assert len(data.panels) == 2  # one per stage0_order
    checked = 0
    for _, row in sweep.table.iterrows():
        panel = next(p for p in data.panels if row["policy.stage0_order"] in p.title)
        i = panel.y_values.index(row["policy.d_in"])
        j = panel.x_values.index(row["policy.d_out"])
        if pd.isna(row["period_ms"]):
            assert np.isnan(panel.cells[i, j]) and panel.stalled[i, j]
        else:
            assert panel.cells[i, j] == row["period_ms"] and not panel.stalled[i, j]
        checked += 1
    assert checked == len(sweep.table) == 12


def test_bubble_heatmap_has_a_panel_per_stage_and_other_axis(sweep):
    data = heatmap_data(sweep, "bubble")
    assert sorted({p.column for p in data.panels}) == ["bubble_stage0", "bubble_stage1"]
    assert len(data.panels) == 4 and data.per_group == 2


def test_bubble_curves_are_the_sweep_rows(sweep):
    data = curve_data(sweep)
    t = sweep.table
    for p in data.panels:
        order = "producer_first" if "producer_first" in p.title else "consumer_first"
        for d_in, ys in p.lines.items():
            rows = t[(t["policy.d_in"] == d_in) & (t["policy.stage0_order"] == order)]
            np.testing.assert_array_equal(ys, rows.set_index("policy.d_out")[p.column]
                                          .reindex(p.x_values).to_numpy(dtype=float))


def test_pareto_frontier_is_the_undominated_points(sweep):
    pts = pareto_data(sweep).points
    assert len(pts) == len(sweep.table) - 1  # the stalled point is left out
    for _, p in pts.iterrows():
        better = pts[(pts["mem_mib"] <= p["mem_mib"]) & (pts["period_ms"] <= p["period_ms"])
                     & ((pts["mem_mib"] < p["mem_mib"]) | (pts["period_ms"] < p["period_ms"]))]
        assert p["frontier"] == better.empty
    assert pts["frontier"].any()


# -- inputs and provenance ----------------------------------------------------------------
def test_pair_roles_follow_the_trace_sources(tmp_path, run):
    measured = Trace(run.trace.events, {**run.trace.meta, "source": "exec"})
    write_trace(measured, tmp_path / "m.parquet")
    write_trace(run.trace, tmp_path / "p.parquet")
    ri = load_inputs([tmp_path / "m.parquet", tmp_path / "p.parquet"])
    assert ri.kind == "pair"
    assert [(r.path.name, r.role) for r in ri.runs] == [("p.parquet", "predicted"),
                                                       ("m.parquet", "measured")]


def test_neither_trace_nor_sweep_is_rejected_naming_the_file(tmp_path):
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet", {})
    with pytest.raises(ReportError, match=r"x\.parquet: neither a trace"):
        load_inputs([tmp_path / "x.parquet"])


def test_scenario_toml_round_trips():
    raw, _ = load_raw(None)
    assert tomllib.loads(to_toml(raw)) == raw


@pytest.mark.parametrize("policy", [
    {"name": "layer_pp", "stages": 3, "items": 2, "blocks": 6},
    {"name": "stream_batch", "stages": 2, "steps": 2, "blocks": 2, "max_outstanding": 3},
    {"name": "rolling_window", "window": 3, "d_in": 2, "d_out": 1},
])
def test_every_policy_s_queues_get_their_capacity_line(policy):
    sc = make_scenario(policy, {"build": 1.0, "denoise": {"mean": 2.0, "steps": 2},
                                "decode": 1.0, "encode": 1.0}, chunks=6)
    trace = simulate(sc)
    specs = {s.name: s.capacity for s in sc.policy.queues(sc)}
    assert [q["name"] for q in trace.meta["queues"]] == list(specs)
    (d,) = queue_data([as_run(trace)])
    queues = {n: c for n, c in d.counters.items() if n != "bytes_in_flight"}
    assert queues and set(queues) <= set(specs)
    assert {n: c.capacity for n, c in queues.items()} == {n: specs[n] for n in queues}


def test_a_trace_without_queue_specs_falls_back_to_the_policy_fields(run):
    meta = {k: v for k, v in run.trace.meta.items() if k != "queues"}
    (d,) = queue_data([Run(run.path, Trace(run.trace.events, meta), run.role, run.metrics)])
    assert d.counters["q_in"].capacity == POLICY["d_in"]
    assert d.counters["q_in"].capacity_label == "capacity d_in"
