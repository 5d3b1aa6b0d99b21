"""`pipefill check`: one constructed violating trace per rule, each caught with the right
first row; every golden trace passes; rules a trace cannot support are not checked."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.engine.core import simulate
from pipefill.sim.fit.facts import facts_of
from pipefill.traces.check import check_trace
from pipefill.traces.io import read_table, write_trace
from pipefill.traces.schema import Trace, time_ordered, validate
from tests.helpers.scenarios import make_scenario
from tests.sim.engine.test_golden import CASES, COSTS, GOLDEN, RUN, TRANSPORT

runner = CliRunner()
CUT = {"name": "phase_pp", "recompute": "r0a", "recompute_lag": 0, "hard_cuts": [5]}


@pytest.fixture(scope="module")
def base() -> Trace:
    """Phase pp, D_in = D_out = 2, a hard cut before chunk 5 (chunks 3, 4 dropped)."""
    return simulate(make_scenario(CUT, COSTS, chunks=9, transport=TRANSPORT))


def _with(trace: Trace, ev: pd.DataFrame) -> Trace:
    return Trace(time_ordered(ev.reset_index(drop=True)), trace.meta)


def _result(trace: Trace, rule: str):
    rep = check_trace(trace, facts_of(trace))
    return next(r for r in rep.results if r.rule == rule), rep


def _emit(ev: pd.DataFrame, chunk: int) -> pd.Series:
    return ev[(ev["kind"] == "mark") & (ev["name"] == "emit") & (ev["chunk"] == chunk)].iloc[0]


def test_a_simulated_trace_passes_every_rule_it_can_check(base):
    rep = check_trace(base, facts_of(base))
    status = {r.rule: r.status for r in rep.results}
    assert rep.ok and status["rank_calls"] == "not_checked"
    assert {k for k, v in status.items() if v == "ok"} == set(status) - {"rank_calls"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_golden_trace_passes(case):
    golden, _ = read_table(GOLDEN / f"{case}.csv")
    meta = simulate(make_scenario(CASES[case], COSTS, chunks=9, transport=TRANSPORT,
                                  **RUN.get(case, {}))).meta
    trace = Trace(validate(golden), meta)
    rep = check_trace(trace, facts_of(trace), case)
    assert rep.ok, [r for r in rep.results if r.status == "broken"]
    assert {r.rule for r in rep.results if r.status == "not_checked"} == {"rank_calls"}
    # without its metadata a golden file names no policy: capacity and bytes not checked
    bare = check_trace(Trace(validate(golden), {}), None, case)
    reasons = {r.rule: r.detail for r in bare.results if r.status == "not_checked"}
    assert bare.ok and set(reasons) == {"rank_calls", "queue_capacity", "bytes_bound"}
    assert "names no policy" in reasons["queue_capacity"]


def test_duplicate_emit(base):
    ev = base.events
    dup = _emit(ev, 2).copy()
    dup["start_ms"] = dup["end_ms"] = float(_emit(ev, 6)["start_ms"]) + 0.5
    res, rep = _result(_with(base, pd.concat([ev, dup.to_frame().T.astype(ev.dtypes)])),
                       "emit_once")
    assert (res.status, res.rows, res.first.chunk, res.first.time_ms) == \
        ("broken", 1, 2, dup["start_ms"])
    assert not rep.ok


def test_out_of_order_emit(base):
    ev = base.events.copy()
    i = _emit(ev, 1).name
    t = float(_emit(ev, 2)["start_ms"]) + 0.25
    ev.loc[i, ["start_ms", "end_ms"]] = t
    res, _ = _result(_with(base, ev), "emit_order")
    assert (res.status, res.rows, res.first.chunk, res.first.time_ms) == ("broken", 1, 1, t)


def test_skipped_chunk(base):
    ev = base.events
    gone = _emit(ev, 6).name
    res, _ = _result(_with(base, ev.drop(index=gone)), "emit_complete")
    assert (res.status, res.rows, res.first.chunk) == ("broken", 1, 7)
    assert "chunk 6 of session 0 never emitted" in res.detail


def test_stale_epoch_frame_after_a_hard_cut(base):
    ev = base.events
    cut = ev[(ev["kind"] == "mark") & (ev["name"] == "hard_cut")].iloc[0]
    stale = _emit(ev, 2).copy()
    stale["chunk"], stale["epoch"] = 4, 0  # chunk 4 was in flight at the cut: dropped
    stale["start_ms"] = stale["end_ms"] = float(cut["start_ms"]) + 0.1
    res, _ = _result(_with(base, pd.concat([ev, stale.to_frame().T.astype(ev.dtypes)])),
                     "stale_epoch")
    assert (res.status, res.rows, res.first.chunk, res.first.epoch) == ("broken", 1, 4, 0)
    assert res.first.time_ms == pytest.approx(float(cut["start_ms"]) + 0.1)


def test_epochs_going_backwards(base):
    ev = base.events.copy()
    ev.loc[_emit(ev, 7).name, "epoch"] = 2
    res, _ = _result(_with(base, ev), "epoch_order")
    assert (res.status, res.rows, res.first.chunk, res.first.epoch) == ("broken", 1, 8, 1)


def test_call_id_not_increasing(base):
    ev = base.events.copy()
    builds = ev[(ev["kind"] == "span") & (ev["name"] == "build")]
    a, b = builds.index[1], builds.index[2]
    ev.loc[[a, b], "call_id"] = ev.loc[[b, a], "call_id"].to_numpy()
    res, _ = _result(_with(base, ev), "call_id_order")
    assert (res.status, res.first.name, res.first.chunk) == ("broken", "build", 2)


def test_call_count_mismatch_across_ranks(base):
    ev = base.events
    lead = ev[(ev["kind"] == "span") & (ev["stage"] == "stage1") & (ev["lane"] == "compute")]
    follower = lead.assign(lane="compute@r2")
    missing = follower[(follower["chunk"] == 6) & (follower["step"] == 1)].index
    res, _ = _result(_with(base, pd.concat([ev, follower.drop(index=missing)])), "rank_calls")
    want = lead.loc[missing[0]]
    assert (res.status, res.rows, res.first.lane, res.first.name, res.first.chunk,
            res.first.time_ms) == ("broken", 1, "compute", "denoise", 6, want["start_ms"])
    assert "rank 2 ran" in res.detail


def test_queue_over_capacity(base):
    ev = base.events.copy()
    q = ev[(ev["kind"] == "counter") & (ev["name"] == "q_out")]
    i = q.index[len(q) // 2]
    ev.loc[i, "value"] = 3.0
    res, _ = _result(_with(base, ev), "queue_capacity")
    assert (res.status, res.rows, res.first.name, res.first.time_ms) == \
        ("broken", 1, "q_out", ev.loc[i, "start_ms"])
    assert "held 3 > capacity 2" in res.detail


def test_bytes_over_the_policys_bound(base):
    facts = facts_of(base)
    assert facts.bytes_bound is not None
    ev = base.events.copy()
    b = ev[(ev["kind"] == "counter") & (ev["name"] == "bytes_in_flight")]
    ev.loc[b.index[3], "value"] = facts.bytes_bound + 1
    res, _ = _result(_with(base, ev), "bytes_bound")
    assert (res.status, res.rows, res.first.time_ms) == ("broken", 1, ev.loc[b.index[3],
                                                                             "start_ms"])


def test_overlapping_spans(base):
    ev = base.events.copy()
    s0 = ev[(ev["kind"] == "span") & (ev["stage"] == "stage0") & (ev["lane"] == "compute")]
    s0 = s0.sort_values("start_ms")
    i = s0.index[4]
    prev = s0.loc[s0.index[3]]
    ev.loc[i, "start_ms"] = float(prev["end_ms"]) - 0.5
    res, _ = _result(_with(base, ev), "span_overlap")
    assert (res.status, res.rows, res.first.name, res.first.chunk) == \
        ("broken", 1, ev.loc[i, "name"], ev.loc[i, "chunk"])


def test_marks_before_the_run_started(base):
    ev = base.events.copy()
    first = ev[ev["kind"] == "mark"].index[0]
    ev.loc[first, ["start_ms", "end_ms"]] = -5.0
    res, _ = _result(_with(base, ev), "time_range")
    assert (res.status, res.rows, res.first.time_ms) == ("broken", 1, -5.0)


# -- the command ---------------------------------------------------------------------
def test_cli_exit_codes_json_and_out(base, tmp_path):
    good = write_trace(base, tmp_path / "good.parquet")
    ev = base.events.copy()
    dup = _emit(ev, 2).copy()
    dup["start_ms"] = dup["end_ms"] = float(ev["end_ms"].max()) + 1
    bad = write_trace(_with(base, pd.concat([ev, dup.to_frame().T.astype(ev.dtypes)])),
                      tmp_path / "bad.csv")
    res = runner.invoke(app, ["check", str(good)])
    assert res.exit_code == 0, res.output
    assert "good.parquet (sim): 10 ok, 0 broken, 1 not checked" in res.output
    res = runner.invoke(app, ["check", str(good), str(bad), "--json", "--out",
                              str(tmp_path / "r.json")])
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    assert data["ok"] is False and [t["ok"] for t in data["traces"]] == [True, False]
    assert json.loads((tmp_path / "r.json").read_text()) == data
    res = runner.invoke(app, ["check", str(bad)])
    assert res.exit_code == 1 and "BROKEN" in res.output and "emitted again" in res.output


def test_cli_bad_input_is_one_line_and_exit_2(base, tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    empty = tmp_path / "empty.csv"
    write_trace(Trace(base.events.iloc[:0], {}), empty)
    for path in (junk, empty, tmp_path / "missing.parquet"):
        res = runner.invoke(app, ["check", str(path)])
        assert res.exit_code == 2, (path, res.output)
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")
    res = runner.invoke(app, ["check", str(junk), "--out", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "--out" in res.stderr
    assert not (tmp_path / "x.txt").exists()


def test_a_trace_without_emits_lists_the_emit_rules_as_not_checked(base, tmp_path):
    ev = base.events
    path = write_trace(_with(base, ev[~((ev["kind"] == "mark") & (ev["name"] == "emit"))]),
                       tmp_path / "noemit.parquet")
    data = json.loads(runner.invoke(app, ["check", str(path), "--json"]).stdout)
    rules = {r["rule"]: r for r in data["traces"][0]["rules"]}
    for rule in ("emit_once", "emit_complete", "emit_order"):
        assert rules[rule]["status"] == "not_checked"
        assert rules[rule]["detail"] == "no emit marks in the trace"


def test_check_reads_traces_that_read_trace_would_refuse(base, tmp_path):
    """An overlapping probe trace is a broken rule (exit 1), not unreadable (exit 2)."""
    ev = base.events.copy()
    s0 = ev[(ev["kind"] == "span") & (ev["stage"] == "stage0") & (ev["lane"] == "compute")]
    ev.loc[s0.index[3], "start_ms"] = float(ev.loc[s0.index[2], "end_ms"]) - 0.5
    path = write_trace(Trace(time_ordered(ev), {"source": "probe"}), tmp_path / "p.parquet")
    res = runner.invoke(app, ["check", str(path)])
    assert res.exit_code == 1 and "span_overlap" in res.output
