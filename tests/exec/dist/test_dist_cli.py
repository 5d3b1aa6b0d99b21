"""`replay --backend dist` end to end on gloo: launched by pipefill and by torchrun, the
trace has the threads backend's chunks, epochs, ids and ordering, `diff` and `calibrate`
read it, and bad input stops before any process starts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.scenario.load import build_scenario
from pipefill.traces.io import read_trace
from pipefill.traces.schema import Trace
from tests.helpers.dist import FAST, TOKEN_VAR, dist_cal, processes_with, run_token
from tests.helpers import ROOT

__all__ = ["dist_cal", "run_token"]  # fixtures shared from tests.helpers.dist

runner = CliRunner()
ARGS = [*FAST, "--chunks", "8", "--timeout", "10"]
KEY = ["kind", "name", "stage", "session", "chunk", "call_id", "epoch", "step"]


@pytest.fixture(scope="module")
def dist_run(tmp_path_factory):
    """One launched two-rank replay of the default scenario (phase_pp, r0a), shared."""
    tmp = tmp_path_factory.mktemp("dist")
    cal = ["--calibration", str(tmp / "calibration.json")]
    token = "module-" + os.urandom(8).hex()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_VAR, token)
        out = tmp / "dist.parquet"
        res = runner.invoke(app, ["replay", *ARGS, *cal, "--backend", "dist", "--out", str(out),
                                  "--json"])
        assert processes_with(token) == [], "a rank survived its run"
    assert res.exit_code == 0, res.output
    return res, read_trace(out), cal, tmp


def _keys(trace: Trace) -> Counter:
    ev = trace.events  # counters and the wait lane depend on timing
    ev = ev[(ev["kind"] != "counter") & (ev["lane"] != "wait")]
    return Counter(ev[KEY].itertuples(index=False, name=None))


def _phase_order(trace: Trace) -> dict[tuple[str, str], list[tuple]]:
    sp = trace.spans.sort_values("start_ms")
    return {(st, ph): list(g[["chunk", "step", "call_id", "epoch"]].itertuples(index=False,
                                                                           name=None))
            for (st, ph), g in sp[sp["lane"] == "compute"].groupby(["stage", "name"])}


def test_a_launched_two_rank_replay_writes_one_trace_of_both_ranks(dist_run):
    res, trace, _, _ = dist_run
    data = json.loads(res.stdout)
    assert data["chunks"] == 8 and "2 ranks over gloo" in data["device"]
    meta = trace.meta
    assert (meta["backend"], meta["status"], meta["source"]) == ("dist", "ok", "exec")
    assert meta["dist"]["world_size"] == 2 and meta["dist"]["ranks"][1].startswith("stage1")
    assert meta["dist"]["traced_ranks"] == [0, 1] and meta["dist"]["clock"]["1"]["handshakes"] == 2
    comp = trace.spans[trace.spans["lane"] == "compute"]
    assert set(comp.groupby("stage")["name"].unique()["stage1"]) == {"denoise", "recompute"}
    assert len(trace.marks("emit")) == 8
    sends = trace.spans[trace.spans["name"] == "send"]
    # every message on the wire, both ways, carries its bytes: envelopes (+ r0a context),
    # results and the shutdown call
    assert set(sends["stage"]) == {"stage0", "stage1"} and len(sends) == 8 + 8 + 1
    link = build_scenario(meta["scenario"]).transport
    assert set(sends[sends["stage"] == "stage1"]["value"]) == {float(link.result_size)}
    envelopes = {0.0, link.envelope_size, link.envelope_size + link.context_bytes}
    assert set(sends[sends["stage"] == "stage0"]["value"]) <= envelopes
    assert (sends["end_ms"] >= sends["start_ms"]).all()
    depth = trace.counters("q_in")
    assert depth["value"].max() <= 2 and set(depth["stage"]) == {"stage1"}


def test_dist_and_threads_traces_have_the_same_chunks_epochs_ids_and_order(dist_run):
    _, dist_trace, cal, tmp = dist_run
    out = tmp / "threads.parquet"
    res = runner.invoke(app, ["replay", *ARGS, *cal, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    threads = read_trace(out)
    assert _keys(dist_trace) == _keys(threads)
    assert _phase_order(dist_trace) == _phase_order(threads)
    emits = [trace.marks("emit").sort_values("start_ms")[["chunk", "epoch", "call_id"]]
             .values.tolist() for trace in (dist_trace, threads)]
    assert emits[0] == emits[1]


def test_diff_and_calibrate_read_a_dist_trace(dist_run, tmp_path):
    _, trace, _, tmp = dist_run
    measured, sim = tmp / "dist.parquet", tmp_path / "pipefill.sim.parquet"
    assert runner.invoke(app, ["simulate", *FAST, "--set", "run.chunks=8", "--out",
                               str(sim)]).exit_code == 0
    res = runner.invoke(app, ["diff", str(sim), str(measured), "--json"])
    assert res.exit_code == 0, res.output
    phases = {(p["stage"], p["phase"]) for p in json.loads(res.stdout)["phases"]}
    assert {("stage0", "send"), ("stage1", "send"), ("stage1", "denoise")} <= phases
    toml = tmp_path / "cal.toml"
    res = runner.invoke(app, ["calibrate", str(measured), "--out", str(toml), "--json"])
    assert res.exit_code == 0, res.output
    fitted = json.loads(res.stdout)["transport"]
    # the link is fitted from the measured send spans, not kept as modelled
    assert fitted["latency_ms"] != trace.meta["transport"]["latency_ms"]
    assert runner.invoke(app, ["simulate", str(toml)]).exit_code == 0


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed beside this Python")
def test_torchrun_launches_the_same_replay(tmp_path, run_token, dist_cal):
    out = tmp_path / "tr.parquet"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
           str(port), "-m", "pipefill.cli", "replay", *ARGS, *dist_cal, "--backend", "dist",
           "--out", str(out), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    lines = [ln for ln in stdout.decode().splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # rank0 reports; the mesh rank is quiet
    assert json.loads(lines[0])["chunks"] == 8
    assert read_trace(out).meta["backend"] == "dist"


@pytest.mark.parametrize("args,field", [
    (["--world-size", "3"], "--world-size"),
    (["--mesh-size", "0"], "--mesh-size"),
    (["--kernels", "model", "--model-size", "tiny", "--mesh-size", "3"], "--mesh-size"),
    (["--inject", "wrong_group:denoise:1"], "--inject"),
    (["--inject", "bad_version:q_nowhere:1"], "--inject"),
])
def test_bad_dist_input_exits_2_with_one_line_and_nothing_started(tmp_path, run_token, args,
                                                                  field):
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["replay", *FAST, "--backend", "dist", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(f"error: {field}:") and len(res.stderr.splitlines()) == 1
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks NCCL refused on CPU")
def test_nccl_on_cpu_is_bad_input(tmp_path, run_token):
    res = runner.invoke(app, ["replay", *FAST, "--backend", "dist", "--dist-backend", "nccl",
                              "--out", str(tmp_path / "m.parquet")])
    assert res.exit_code == 2
    assert res.stderr == "error: --dist-backend: nccl needs --device cuda (on cpu use gloo)\n"


def test_a_port_in_use_is_bad_input(tmp_path, run_token):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["replay", *FAST, "--backend", "dist", "--master-port",
                                  str(port), "--out", str(tmp_path / "m.parquet")])
    assert res.exit_code == 2
    assert res.stderr == f"error: --master-port: port {port} on 127.0.0.1 is in use\n"


def test_a_world_size_from_torchrun_that_does_not_fit_is_bad_input(tmp_path, run_token):
    env = {"RANK": "0", "WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    res = runner.invoke(app, ["replay", *FAST, "--backend", "dist", "--out",
                              str(tmp_path / "m.parquet")], env=env)
    assert res.exit_code == 2
    assert res.stderr == ("error: WORLD_SIZE: 3 ranks, but policy phase_pp (--mesh-size 1) "
                          "runs stage0 on rank0; stage1 on rank1 = 2 ranks\n")


def test_dist_options_without_the_dist_backend_are_bad_input(tmp_path):
    res = runner.invoke(app, ["replay", *FAST, "--mesh-size", "2", "--out",
                              str(tmp_path / "m.parquet")])
    assert res.exit_code == 2 and "only with --backend dist" in res.stderr
    res = runner.invoke(app, ["replay", *FAST, "--backend", "mpi", "--out",
                              str(tmp_path / "m.parquet")])
    assert res.exit_code == 2
    assert res.stderr == "error: --backend: unknown backend 'mpi' (allowed: threads, dist)\n"
