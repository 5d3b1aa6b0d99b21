"""The instrumented example pipeline end to end: probe vs profiler, calibrate, simulate, diff."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipefill import probe
from pipefill.cli import app
from pipefill.traces.io import read_trace
from pipefill.traces.metrics import compute_metrics
from tests.helpers import ROOT

runner = CliRunner()
EXAMPLES = ROOT / "examples"
CHUNKS, WARMUP = 16, 4
#: the probe's and the profiler's views of one run agree within 1 % on metrics of emit
#: times. Busy time and overlap agree within 1 % on a quiet machine (the "small" model:
#: phases of 15-25 ms against the profiler's own 30-80 us per record_function range;
#: 0.4-0.8 % measured), but a thread that loses its core between the profiler's and the
#: probe's clock reads moves them by that wait (4 % with one competing process): those
#: are held to 5 % and 0.1
SAME_WITHIN_1PCT = ("period_ms", "period_p50_ms", "ttff_ms", "latency_p50_ms")
BUSY_WITHIN_5PCT = ("stage0_ms", "stage1_ms")
#: spans: the probe's sits inside the profiler's range, tens of us shorter; a thread
#: that loses the GIL (or its core, on a loaded machine) between the two clock reads
#: shifts a few spans by that wait
SPAN_TOL_MS, SPANS_WITHIN = 0.25, 0.9


def load_example():
    spec = importlib.util.spec_from_file_location("instrument_pipeline",
                                                  EXAMPLES / "instrument_pipeline.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One profiled run of the example: its probe trace and its torch.profiler trace."""
    d = tmp_path_factory.mktemp("example")
    rec = load_example().record(chunks=CHUNKS, warmup=WARMUP, size="small",
                                profile_path=str(d / "prof.json"))
    rec.save(d / "run.parquet")
    rec.close()
    return d


def test_the_probe_trace_follows_phase_pp(recorded):
    tr = read_trace(recorded / "run.parquet")  # passes the measured-trace checks
    assert tr.meta["policy"]["name"] == "phase_pp" and tr.source == "probe"
    assert tr.marks("emit")["chunk"].tolist() == list(range(CHUNKS))
    sp = tr.spans
    assert len(sp[sp["name"] == "denoise"]) == 2 * CHUNKS
    q_in = tr.counters("q_in")["value"]
    assert q_in.max() == 2 and q_in.min() >= 0  # D_in = 2 bounds envelopes in flight
    for k in range(CHUNKS):  # each chunk: build < denoise < decode < emit
        c = sp[sp["chunk"] == k]
        b, d, x = (c[c["name"] == n] for n in ("build", "denoise", "decode"))
        assert b["end_ms"].max() <= d["start_ms"].min()
        assert d["end_ms"].max() <= x["start_ms"].min()


def test_profiler_import_and_probe_agree_within_1_percent(recorded, tmp_path):
    out = tmp_path / "imported.parquet"
    res = runner.invoke(app, ["import", str(recorded / "prof.json"), "--map",
                              str(EXAMPLES / "instrument_map.toml"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    probe_m = compute_metrics(read_trace(recorded / "run.parquet"), warmup=WARMUP)
    imported_m = compute_metrics(read_trace(out), warmup=WARMUP)
    for key in SAME_WITHIN_1PCT:
        assert imported_m[key] == pytest.approx(probe_m[key], rel=0.01), key
    for key in BUSY_WITHIN_5PCT:
        assert imported_m[key] == pytest.approx(probe_m[key], rel=0.05), key
    assert imported_m["overlap_score"] == pytest.approx(probe_m["overlap_score"], abs=0.1)
    keys = ["name", "chunk", "step"]
    mine = read_trace(recorded / "run.parquet").spans
    mine = mine[mine["lane"] == "compute"].set_index(keys)
    theirs = read_trace(out).spans.set_index(keys).reindex(mine.index)
    dur = lambda t: t["end_ms"] - t["start_ms"]  # noqa: E731
    gap = (dur(theirs) - dur(mine)).to_numpy()
    assert len(mine) == 4 * CHUNKS and not any(gap != gap)  # every span found
    assert (gap > -0.01).mean() >= SPANS_WITHIN  # the profiler's range holds the probe's
    assert (abs(gap) <= SPAN_TOL_MS).mean() >= SPANS_WITHIN


def test_calibrate_simulate_diff(recorded, tmp_path):
    sc, pred = tmp_path / "mine.toml", tmp_path / "pred.parquet"
    res = runner.invoke(app, ["calibrate", str(recorded / "run.parquet"), "--out", str(sc)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["simulate", str(sc), "--out", str(pred), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["chunks"] == CHUNKS
    res = runner.invoke(app, ["diff", str(pred), str(recorded / "run.parquet"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["measured_source"] == "probe" and data["warnings"] == []
    assert {p["phase"] for p in data["phases"]} >= {"build", "denoise", "decode"}
    res = runner.invoke(app, ["report", str(pred), str(recorded / "run.parquet"),
                              "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["export", str(recorded / "run.parquet"),
                              "--out", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output


def bare_trace(path: Path, overlap: bool = False, chunkless: bool = False) -> Path:
    """A policy-less probe trace: 6 chunks of build 1 ms, denoise 3 ms, decode 2 ms."""
    t = [0]

    def clock() -> int:
        return t[0] * 1_000_000

    rec = probe.Recorder(clock=clock)
    s0, s1 = rec.stage("stage0"), rec.stage("stage1")
    for k in range(6):
        base = 10 * k
        for stage, name, a, b in ((s0, "build", 0, 1), (s1, "denoise", 1, 4),
                                  (s0, "decode", 4, 6)):
            t[0] = base + a
            span = stage.span(name, chunk=-1 if chunkless and k == 2 else k)
            span.__enter__()
            t[0] = base + b + (4 if overlap and k == 4 and name == "build" else 0)
            span.__exit__(None, None, None)
        s0.mark("emit", chunk=k)
    return rec.save(path)


def test_calibrate_needs_a_policy_for_a_bare_trace(tmp_path):
    p = bare_trace(tmp_path / "bare.parquet")
    out = tmp_path / "s.toml"
    res = runner.invoke(app, ["calibrate", str(p), "--out", str(out)])
    assert res.exit_code == 2 and not out.exists()
    assert res.stderr.strip().splitlines() == [
        "error: meta.policy: missing: the trace names no policy; pass --policy NAME "
        "(e.g. phase_pp) or --set policy.name=NAME"]
    res = runner.invoke(app, ["calibrate", str(p), "--out", str(out), "--policy", "phase_pp",
                              "--set", "policy.d_in=3", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["costs"]["denoise"] == {"dist": "constant", "mean": 3.0, "steps": 1}
    assert data["costs"]["decode"]["mean"] == 2.0
    text = out.read_text()
    assert "d_in = 3" in text and "chunks = 6" in text and "warmup = 1" in text
    # both stages busy 3 ms per chunk (build 1 + decode 2; denoise 3): 3 ms in steady state
    res = runner.invoke(app, ["simulate", str(out), "--set", "run.chunks=40", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["period_p50_ms"] == pytest.approx(3.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"overlap": True}, "error: start_ms: overlapping spans on stage0/compute: build of "
                        "chunk 4 [40.000, 45.000] ms and decode of chunk 4 [44.000, 46.000] ms"),
    ({"chunkless": True}, "error: chunk: 3 events have no chunk id"),
])
def test_bad_measured_traces_exit_2_everywhere(tmp_path, kwargs, message):
    p = bare_trace(tmp_path / "bad.parquet", **kwargs)
    for args in (["calibrate", str(p), "--out", str(tmp_path / "s.toml"), "--policy", "serial"],
                 ["diff", str(p), str(p)], ["report", str(p), "--out", str(tmp_path / "r")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), lines
