"""Recording several processes (issue 22): the two-process example end to end (run here,
so CI runs it), and what calibrate does with untimed sends and the sends' bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipefill import probe
from pipefill.cli import app
from pipefill.traces.io import read_trace
from tests.helpers import ROOT

runner = CliRunner()
EXAMPLE = ROOT / "examples" / "two_process_pipeline.py"
CHUNKS = 12


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """One run of the example: rank 0's and rank 1's probe traces."""
    d = tmp_path_factory.mktemp("two")
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--out-dir", str(d), "--chunks",
                           str(CHUNKS), "--warmup", "2"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["wrote", str(d / "rank0.parquet"), "wrote",
                                   str(d / "rank1.parquet")]
    return d


def test_each_rank_saves_its_own_file_with_two_handshakes(ranks):
    r0, r1 = read_trace(ranks / "rank0.parquet"), read_trace(ranks / "rank1.parquet")
    assert r0.meta["probe"]["rank"] == 0 and r1.meta["probe"]["rank"] == 1
    assert r0.meta["probe"]["sync"] == [] and len(r1.meta["probe"]["sync"]) == 2
    assert set(r0.spans["stage"]) == {"stage0"} and set(r1.spans["stage"]) == {"stage1"}
    assert r0.marks("input")["chunk"].tolist() == list(range(CHUNKS))


def test_calibrating_one_rank_alone_says_to_merge_first(ranks, tmp_path):
    res = runner.invoke(app, ["calibrate", str(ranks / "rank0.parquet"), "--out",
                              str(tmp_path / "r0.toml")])
    assert res.exit_code == 2 and not (tmp_path / "r0.toml").exists()
    assert res.stderr == ("error: costs.denoise: missing: policy phase_pp runs denoise (one "
                          "rank's probe file? merge the ranks first: pipefill merge "
                          "rank0.parquet rank1.parquet --out run.parquet)\n")


def test_merged_calibrated_and_simulated(ranks, tmp_path):
    merged, scenario = tmp_path / "two.parquet", tmp_path / "two.toml"
    res = runner.invoke(app, ["merge", str(ranks / "rank0.parquet"),
                              str(ranks / "rank1.parquet"), "--out", str(merged)])
    assert res.exit_code == 0, res.output
    tr = read_trace(merged)
    # on rank 0's clock, causality holds to within the alignment error (half the
    # handshake's round trip, well under 1 ms here): rank 0 reads its clock before it
    # writes an envelope, rank 1 after it read it; rank 1 reads its clock when the
    # denoise ends, before it sends the result that rank 0 decodes. (The send's end may
    # come after the denoise started: the writer can lose its core once the bytes are out)
    sp = tr.spans.set_index(["name", "stage", "chunk"]).sort_index()
    for k in range(CHUNKS):
        assert sp.loc[("send", "stage0", k), "start_ms"] <= \
            sp.loc[("denoise", "stage1", k), "start_ms"].min() + 1.0
        assert sp.loc[("denoise", "stage1", k), "end_ms"].max() <= \
            sp.loc[("decode", "stage0", k), "start_ms"] + 1.0
    res = runner.invoke(app, ["calibrate", str(merged), "--out", str(scenario), "--json"])
    assert res.exit_code == 0, res.output
    cal = json.loads(res.stdout)
    assert cal["warnings"] == [] and res.stderr == ""  # every send is timed
    sizes = cal["transport"]["envelope_bytes"], cal["transport"]["result_bytes"]
    assert sizes == (16 * 64 * 64 * 4,) * 2  # float32 latents of 16 x 64 x 64
    assert cal["transport"]["bandwidth_gbps"] < 1e6  # not a free link
    res = runner.invoke(app, ["simulate", str(scenario), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["policy"]["d_in"] == 2 and m["peak_bytes_in_flight"] > 0
    assert m["ttff_ms"] is not None and m["latency_p50_ms"] is not None


def _untimed(path: Path, nbytes: float = 1000.0) -> None:
    """A probe trace whose sends are recorded as the README's first sketch did (zero
    length, bytes given)."""
    rec = probe.Recorder(policy={"name": "serial"}, run={"chunks": 6, "warmup": 1})
    s0, s1 = rec.stage("stage0"), rec.stage("stage1")
    for k in range(6):
        s0.mark("input", chunk=k)
        with s0.span("build", chunk=k):
            sum(range(2000))
        s0.send("q_in", chunk=k, nbytes=nbytes)
        with s1.span("denoise", chunk=k):
            sum(range(4000))
        s1.send("q_out", chunk=k, nbytes=2 * nbytes)
        with s0.span("decode", chunk=k):
            sum(range(3000))
        s0.mark("emit", chunk=k)
    rec.save(path)


def test_untimed_sends_are_said_not_fitted_as_a_free_link(tmp_path):
    _untimed(tmp_path / "u.parquet")
    out = tmp_path / "u.toml"
    res = runner.invoke(app, ["calibrate", str(tmp_path / "u.parquet"), "--out", str(out),
                              "--json"])
    assert res.exit_code == 0, res.output
    cal = json.loads(res.stdout)
    warning = ("transport: none of the trace's 12 sends is timed (all of zero length), so "
               "latency and bandwidth are not fitted: kept at the defaults 0.05 ms and 25 "
               "GB/s, not a free link. Time the transfers (send(..., duration_ms=...), or a "
               "span on the comm lane) to fit them")
    assert cal["warnings"] == [warning] and res.stderr == f"warning: {warning}\n"
    assert "latency_ms" not in cal["transport"]  # the scenario's defaults apply
    assert cal["transport"]["envelope_bytes"] == 1000 and cal["transport"]["result_bytes"] == 2000
    text = out.read_text()
    assert f"# WARNING {warning}" in text
    assert text.splitlines()[0] == "# pipefill calibrate u.parquet (source probe)"  # no "?"
    res = runner.invoke(app, ["simulate", str(out), "--json"])
    assert json.loads(res.stdout)["peak_bytes_in_flight"] == 2000  # bytes carried


def test_some_untimed_sends_are_left_out_of_the_fit(tmp_path):
    rec = probe.Recorder(policy={"name": "serial"}, run={"chunks": 6, "warmup": 1})
    s0, s1 = rec.stage("stage0"), rec.stage("stage1")
    for k in range(6):
        with s0.span("build", chunk=k):
            sum(range(2000))
        s0.send("q_in", chunk=k, nbytes=1e6, duration_ms=0.0 if k % 2 else 1.0)
        with s1.span("denoise", chunk=k):
            sum(range(2000))
        with s0.span("decode", chunk=k):
            sum(range(2000))
        s0.mark("emit", chunk=k)
    rec.save(tmp_path / "m.parquet")
    res = runner.invoke(app, ["calibrate", str(tmp_path / "m.parquet"), "--out",
                              str(tmp_path / "m.toml"), "--json"])
    cal = json.loads(res.stdout)
    assert cal["warnings"] == ["transport: 3 of the trace's 6 sends are untimed (zero length); "
                               "latency and bandwidth are fitted to the other 3"]
    # one size, 1 ms each: the time goes on the default bandwidth and the rest on latency
    assert cal["transport"]["latency_ms"] == pytest.approx(1.0 - 1e6 / 25e6)


def test_a_transfer_is_a_timed_send_span():
    ticks = iter(range(0, 10**9, 10**6))  # 1 ms per clock read
    rec = probe.Recorder(clock=lambda: next(ticks))
    with rec.stage("stage0").transfer("q_in", chunk=3, nbytes=64):
        pass
    row = rec.trace().spans.iloc[0]
    assert (row["name"], row["lane"], row["chunk"], row["value"]) == ("send", "comm", 3, 64.0)
    assert row["end_ms"] - row["start_ms"] == 1.0
    with probe.NullRecorder().stage("stage0").transfer("q_in", chunk=3, nbytes=64):
        pass
