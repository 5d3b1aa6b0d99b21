"""`diff`: exact errors for identical traces, divergences found where they were planted,
warnings for traces of different scenarios, and the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.engine.core import simulate
from pipefill.sim.policies import POLICIES
from pipefill.traces.diff import diff_traces
from pipefill.traces.io import write_trace
from pipefill.traces.schema import Trace
from tests.helpers.scenarios import make_scenario

runner = CliRunner()
COSTS = {"build": 2.0, "denoise": {"mean": 5.0, "steps": 2}, "decode": 6.0}


def _sim(policy=None, chunks: int = 14) -> Trace:
    return simulate(make_scenario(policy or {"name": "phase_pp"}, COSTS, chunks=chunks))


def _shift(trace: Trace, name: str, chunk: int, ms: float) -> Trace:
    ev = trace.events.copy()
    sel = (ev["name"] == name) & (ev["chunk"] == chunk)
    ev.loc[sel, ["start_ms", "end_ms"]] += ms
    return Trace(ev, dict(trace.meta))


def test_identical_traces_agree_exactly():
    t = _sim()
    res = diff_traces(t, t)
    assert res["divergence"] is None and res["warnings"] == []
    for key in ("period_ms", "overlap_score", "ttff_ms", "stage0_ms"):
        assert res["metrics"][key]["abs_error"] == 0.0
    assert all(p["abs_error"] == 0.0 for p in res["phases"])
    assert res["verdict"].startswith("agree: measured period +0.0% vs predicted")
    assert res["verdict"].endswith("schedules agree on every chunk")


def test_a_late_phase_is_found_in_its_chunk():
    t = _sim()
    # the mean period 10 (the drain is the cool-down) sets the tolerance: 0.2 x 10 = 2 ms
    res = diff_traces(t, _shift(t, "decode", 6, 5.0), tolerance=0.2)
    assert res["divergence"] == {
        "session": 0, "chunk": 6, "kind": "timing", "stage": "stage0", "phase": "decode",
        "detail": "stage0 decode of chunk 6 started 5.00 ms later within its chunk than "
                  "predicted (tolerance 2.00 ms)"}
    assert "first divergence at chunk 6 (timing)" in res["verdict"]
    assert diff_traces(t, _shift(t, "decode", 6, 1.0))["divergence"] is None


def test_a_slow_warm_up_chunk_is_not_a_timing_divergence():
    # make_scenario's warm-up is 2 chunks: a late decode of chunk 1 (first-call costs)
    # is not reported; the same delay in chunk 2, the first steady-state chunk, is.
    t = _sim()
    assert diff_traces(t, _shift(t, "decode", 1, 5.0))["divergence"] is None
    assert diff_traces(t, _shift(t, "decode", 2, 5.0))["divergence"]["chunk"] == 2


def test_a_different_order_on_a_stage_is_an_order_divergence():
    t = _sim()
    ev = t.events.copy()
    b = (ev["name"] == "build") & (ev["chunk"] == 9)
    d = (ev["name"] == "decode") & (ev["chunk"] == 7)
    starts = ev.loc[b, "start_ms"].iloc[0], ev.loc[d, "start_ms"].iloc[0]
    ev.loc[b, "start_ms"], ev.loc[d, "start_ms"] = starts[1] + 0.5, starts[0]
    ev.loc[b, "end_ms"] = ev.loc[b, "start_ms"] + 2.0
    res = diff_traces(t, Trace(ev, t.meta), tolerance=10.0)
    div = res["divergence"]
    moved = (div["kind"], div["stage"], div["chunk"], div["phase"])
    assert moved == ("order", "stage0", 7, "decode")


def test_a_missing_emit_is_an_outcome_divergence():
    t = _sim()
    ev = t.events
    keep = ~((ev["kind"] == "mark") & (ev["name"] == "emit") & (ev["chunk"] == 11))
    res = diff_traces(t, Trace(ev[keep].reset_index(drop=True), t.meta))
    assert res["divergence"]["kind"] == "outcome" and res["divergence"]["chunk"] == 11
    assert res["divergence"]["detail"] == "chunk 11: predicted emit, measured nothing"


def test_traces_of_different_policies_warn_naming_the_fields():
    a, b = _sim(), _sim({"name": "phase_pp", "d_in": 1})
    res = diff_traces(a, b)
    assert "policy.d_in: 2 != 1" in res["differing_fields"]
    assert len(res["warnings"]) == 1 and "policy.d_in: 2 != 1" in res["warnings"][0]
    assert res["metrics"]["period_ms"]["rel_error"] > 0.05
    assert res["verdict"].startswith("differ: measured period +")


def test_diff_cli_prints_tables_warnings_and_json(tmp_path):
    p, m = tmp_path / "p.parquet", tmp_path / "m.csv"
    write_trace(_sim(), p)
    write_trace(_sim({"name": "serial"}), m)
    res = runner.invoke(app, ["diff", str(p), str(m)])
    assert res.exit_code == 0, res.output
    assert "period_ms" in res.stdout and "median phase durations" in res.stdout
    assert res.stdout.strip().splitlines()[-1].startswith("differ: measured period")
    assert res.stderr.startswith("warning: the traces are of different scenarios/policies: ")
    data = json.loads(runner.invoke(app, ["diff", str(p), str(p), "--json"]).stdout)
    assert data["divergence"] is None and data["metrics"]["period_ms"]["abs_error"] == 0.0


def test_diff_cli_bad_input_exits_2(tmp_path):
    res = runner.invoke(app, ["diff", str(tmp_path / "nope.parquet"), str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and res.stderr.startswith("error: path:")


def test_divergence_names_the_session_of_a_multi_session_run():
    if "multi_session" not in POLICIES:
        pytest.skip("no multi-session policy registered")
    t = simulate(make_scenario({"name": "multi_session"}, COSTS, chunks=8, sessions=2))
    assert diff_traces(t, t)["divergence"] is None
    ev = t.events.copy()
    sel = (ev["name"] == "decode") & (ev["chunk"] == 5) & (ev["session"] == 1)
    ev.loc[sel, ["start_ms", "end_ms"]] += 30.0
    div = diff_traces(t, Trace(ev, t.meta), tolerance=0.1)["divergence"]
    assert (div["session"], div["chunk"], div["phase"]) == (1, 5, "decode")
