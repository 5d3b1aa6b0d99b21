"""`pipefill export`: Chrome trace event JSON checked against the trace event format."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.engine.core import simulate
from pipefill.traces.chrome import flow_targets, to_chrome
from pipefill.traces.io import write_table, write_trace
from pipefill.traces.schema import Trace, from_rows
from tests.helpers.scenarios import make_scenario

COSTS = {"build": {"dist": "lognormal", "mean": 2.0, "cv": 0.1}, "recompute": 3.0,
         "denoise": {"mean": 6.0, "steps": 2}, "decode": 7.0, "encode": 1.0}
TRANSPORT = {"latency_ms": 0.05, "bandwidth_gbps": 10.0, "envelope_bytes": 400_000,
             "result_bytes": 400_000}
POLICY = {"name": "phase_pp", "d_in": 2, "d_out": 2, "recompute": "r0a", "hard_cuts": [7]}
#: required keys per event type of the trace event format
REQUIRED = {"X": {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"},
            "i": {"name", "ph", "ts", "pid", "tid", "s"},
            "C": {"name", "ph", "ts", "pid", "args"},
            "M": {"name", "ph", "pid", "args"},
            "s": {"name", "cat", "ph", "id", "ts", "pid", "tid"},
            "f": {"name", "cat", "ph", "id", "ts", "pid", "tid", "bp"}}
runner = CliRunner()


@pytest.fixture(scope="module")
def trace() -> Trace:
    sc = make_scenario(POLICY, COSTS, chunks=16, warmup=2, transport=TRANSPORT)
    return simulate(sc)


def check_format(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Validate a Chrome trace document; return its events by phase type."""
    by_ph: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in doc["traceEvents"]:
        assert REQUIRED[ev["ph"]] <= set(ev), ev
        by_ph[ev["ph"]].append(ev)
    for ev in by_ph["X"]:
        assert ev["dur"] >= 0 and {"chunk", "epoch", "call_id"} <= set(ev["args"])
    for ev in by_ph["i"]:
        assert ev["s"] in ("t", "p", "g")
    for ev in by_ph["C"]:
        assert all(isinstance(v, int | float) for v in ev["args"].values())
    named = {(e["pid"], e["tid"]) for e in by_ph["M"] if e["name"] == "thread_name"}
    procs = {e["pid"] for e in by_ph["M"] if e["name"] == "process_name"}
    slices: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for ev in by_ph["X"]:
        assert (ev["pid"], ev["tid"]) in named and ev["pid"] in procs
        slices[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"]))
    for spans in slices.values():  # a thread is a sequence of non-overlapping slices
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    _check_flows(by_ph, slices)
    return by_ph


def _check_flows(by_ph: dict[str, list[dict[str, Any]]],
                 slices: dict[tuple[int, int], list[tuple[float, float]]]) -> None:
    starts = {e["id"]: e for e in by_ph["s"]}
    ends = {e["id"]: e for e in by_ph["f"]}
    assert len(starts) == len(by_ph["s"]) and len(ends) == len(by_ph["f"])  # ids unique
    assert starts.keys() == ends.keys()  # every flow is matched
    for fid, s in starts.items():
        f = ends[fid]
        assert f["bp"] == "e" and s["ts"] <= f["ts"]
        for ev in (s, f):  # each end binds to a slice that encloses it on its thread
            assert any(a <= ev["ts"] <= b for a, b in slices[(ev["pid"], ev["tid"])])


def test_export_passes_the_format_check_and_counts_match(trace):
    doc, stats = to_chrome(trace)
    doc = json.loads(json.dumps(doc, allow_nan=False))  # strict JSON
    by_ph = check_format(doc)
    sp = trace.spans
    assert len(by_ph["X"]) == len(sp) == stats.spans
    assert Counter(e["name"] for e in by_ph["X"]) == Counter(sp["name"])
    assert len(by_ph["i"]) == (trace.events["kind"] == "mark").sum() == stats.marks
    assert len(by_ph["C"]) == (trace.events["kind"] == "counter").sum() == stats.counters
    assert stats.processes == 3 and stats.threads == 4  # stage0/1 x compute/comm + pipeline


def test_timestamps_are_real_microseconds(trace):
    doc, _ = to_chrome(trace)
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    ordered = trace.spans.sort_values(["start_ms", "end_ms"], kind="stable")
    got = sorted((e["ts"], e["ts"] + e["dur"]) for e in xs)
    for (ts, end), (_, row) in zip(got, ordered.iterrows(), strict=True):
        assert ts == pytest.approx(row["start_ms"] * 1000.0, abs=1e-3)
        assert end == pytest.approx(row["end_ms"] * 1000.0, abs=1e-3)


def test_flows_go_from_each_send_to_its_first_use(trace):
    sp = trace.spans
    targets = flow_targets(trace)
    drops = trace.marks("drop")
    for idx, send in sp[sp["name"] == "send"].iterrows():
        same = sp[(sp["call_id"] == send["call_id"]) & (sp["lane"] == "compute")
                  & (sp["stage"] != send["stage"]) & (sp["start_ms"] >= send["end_ms"])]
        if idx not in targets:  # nobody used it: dropped, flushed or the shutdown call
            assert same.empty or send["call_id"] in set(drops["call_id"])
            continue
        dst = sp.loc[targets[idx]]
        assert dst["start_ms"] == same["start_ms"].min()
        want = "decode" if send["stage"] == "stage1" else ("recompute", "denoise")
        assert dst["name"] in want and dst["chunk"] == send["chunk"]
    results = sp[(sp["name"] == "send") & (sp["stage"] == "stage1")]
    unused = [i for i in results.index if i not in targets]
    assert len(unused) == len(drops) > 0  # the hard cut's stale results


def test_overlapping_spans_in_a_lane_get_their_own_threads():
    rows = [("span", "decode", "stage0", "compute", 0, k, k, 0, -1, 10.0 * k, 10.0 * k + 15.0,
             float("nan")) for k in range(4)]
    doc, stats = to_chrome(Trace(from_rows(rows), {}))
    by_ph = check_format(doc)
    assert stats.threads == 2 and len({e["tid"] for e in by_ph["X"]}) == 2


def test_recv_spans_are_the_flow_target_when_present():
    rows = [("span", "send", "stage0", "comm", 0, 0, 5, 0, -1, 1.0, 2.0, float("nan")),
            ("span", "recv", "stage1", "comm", 0, 0, 5, 0, -1, 0.5, 2.1, float("nan")),
            ("span", "denoise", "stage1", "compute", 0, 0, 5, 0, 0, 2.1, 9.0, float("nan"))]
    tr = Trace(from_rows(rows), {})
    (_src, dst), = flow_targets(tr).items()
    assert tr.events.loc[dst, "name"] == "recv"
    check_format(to_chrome(tr)[0])


def test_cli_export_writes_valid_json(tmp_path, trace):
    write_trace(trace, tmp_path / "t.parquet")
    res = runner.invoke(app, ["export", str(tmp_path / "t.parquet"), "--out",
                              str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    assert f"{len(trace.spans)} spans" in res.output
    doc = json.loads((tmp_path / "t.json").read_text())
    assert len(check_format(doc)["X"]) == len(trace.spans)


@pytest.mark.parametrize("case", ["sweep", "suffix", "missing"])
def test_cli_export_bad_input_exits_2_and_writes_nothing(tmp_path, trace, case):
    src, out = tmp_path / "t.parquet", tmp_path / "t.json"
    write_trace(trace, src)
    if case == "sweep":
        write_table(pd.DataFrame({"policy.d_in": [1], "period_ms": [2.0]}), src,
                    {"kind": "sweep"})
    if case == "suffix":
        out = tmp_path / "t.txt"
    if case == "missing":
        src = tmp_path / "nope.parquet"
    res = runner.invoke(app, ["export", str(src), "--out", str(out)])
    assert res.exit_code == 2
    line, = res.output.strip().splitlines()
    assert {"sweep": "sweep table", "suffix": ".json", "missing": "no such file"}[case] in line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_export_is_deterministic(trace):
    assert json.dumps(to_chrome(trace)[0]) == json.dumps(to_chrome(trace)[0])
