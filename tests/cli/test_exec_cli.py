"""CliRunner tests of `replay`: summary/JSON like simulate, files, exit codes."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.traces.io import read_trace
from pipefill.traces.metrics import compute_metrics

runner = CliRunner()
FAST = ["--set", "run.chunks=6", "--set", "run.warmup=2", "--set", "costs.build.mean=1",
        "--set", "costs.denoise.mean=2", "--set", "costs.decode.mean=2",
        "--set", "costs.recompute.mean=1", "--set", "costs.encode.mean=1"]


@pytest.fixture
def cal(tmp_path):
    return ["--calibration", str(tmp_path / "calibration.json")]


def test_replay_prints_the_simulate_json_and_writes_the_trace(tmp_path, cal):
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["replay", *FAST, *cal, "--chunks", "8", "--out", str(out),
                              "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    sim = json.loads(runner.invoke(app, ["simulate", *FAST, "--json"]).stdout)
    assert set(sim) <= set(data) and data["chunks"] == 8
    assert data["kernels"]["kernels"] == "calibrated" and data["device"].startswith("cpu")
    trace = read_trace(out)
    assert trace.meta["source"] == "exec" and len(trace.marks("emit")) == 8


def test_replay_summary_table(tmp_path, cal):
    out = tmp_path / "m.csv"
    res = runner.invoke(app, ["replay", *FAST, *cal, "--kernels", "model", "--model-size",
                              "tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "(model kernels)" in res.stdout.splitlines()[0]
    metrics = compute_metrics(read_trace(out))
    line = next(ln for ln in res.stdout.splitlines() if ln.strip("│ ").startswith("period_ms "))
    shown = float(line.split("│")[2].strip().replace(",", ""))
    assert shown == pytest.approx(metrics["period_ms"], abs=0.05)  # the trace's own period


def test_an_injected_fault_exits_3_with_one_line_and_a_partial_trace(tmp_path, cal):
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["replay", *FAST, *cal, "--inject", "denoise:3",
                              "--out", str(out)])
    assert res.exit_code == 3
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: stage1 failed at 'compute denoise chunk=3 step=0' "
                               "(chunk 3, epoch 0")
    assert lines[0].endswith(f"(partial trace written to {out})")
    trace = read_trace(out)
    assert trace.meta["status"] == "failed" and 3 not in set(trace.marks("emit")["chunk"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_a_gpu_exits_2_without_output(tmp_path):
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["replay", *FAST, "--device", "cuda", "--out", str(out)])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[0].startswith("error: --device: cuda requested")
    assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("args,field", [
    (["--kernels", "fast"], "--kernels"),
    (["--kernels", "spin"], "--kernels"),  # spin kernels need CUDA
    (["--set", "policy.d_in=0"], "policy.d_in"),
    (["--inject", "oops"], "--inject"),
])
def test_bad_replay_input_exits_2_naming_the_field(tmp_path, args, field):
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["replay", *FAST, *args, "--out", str(out)])
    assert res.exit_code == 2 and res.stderr.startswith(f"error: {field}:")
    assert not out.exists()


def test_replay_refuses_an_unknown_trace_extension_before_running(tmp_path):
    res = runner.invoke(app, ["replay", *FAST, "--out", str(tmp_path / "m.txt")])
    assert res.exit_code == 2 and "--out: m.txt: unknown extension" in res.stderr
