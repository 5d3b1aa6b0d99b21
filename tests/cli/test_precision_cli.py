"""`--precision` and long runs on the command line: what is shown, bad input, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from typer.testing import CliRunner

import pipefill.cli.longrun as longrun
from pipefill.cli import app
from pipefill.traces.io import read_trace

runner = CliRunner()
NOISY = ["--set", "costs.denoise.cv=0.3", "--set", "costs.decode.cv=0.3"]


def test_simulate_to_a_precision_says_how_precise_and_when():
    args = ["simulate", *NOISY, "--set", "run.chunks=50000", "--precision", "0.01"]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert data["converged"] is True and data["chunks_run"] < 50_000
    assert data["period_ci_ms"] <= 0.01 * data["period_ms"] and data["warmup_used"] == 10
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "period_ci_ms" in text and f"precise at {data['chunks_run']:,} chunks" in text


def test_an_automatic_warm_up_is_named():
    res = runner.invoke(app, ["simulate", "--set", "run.warmup=auto", "--set", "run.chunks=300"])
    assert res.exit_code == 0, res.output
    assert "(MSER-5)" in " ".join(res.stdout.split())


def test_a_bad_precision_is_one_line_and_exit_2():
    for value in ("0", "1", "-0.1", "2"):
        res = runner.invoke(app, ["simulate", "--precision", value])
        assert res.exit_code == 2, value
        assert res.stderr.strip().splitlines() == [
            f"error: --precision: the relative half-width must be > 0 and < 1 (got "
            f"{float(value):g})"]
    res = runner.invoke(app, ["sweep", "--grid", "policy.d_in=1,2", "--precision", "0"])
    assert res.exit_code == 2 and "--precision" in res.stderr


def test_sweep_to_a_precision_marks_the_points_that_hit_the_cap():
    args = ["sweep", "--grid", "policy.d_in=1,2", *NOISY, "--set", "run.chunks=300",
            "--precision", "0.002"]
    rows = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert [r["converged"] for r in rows] == [False, False]
    assert all(r["chunks_run"] == 300 and r["period_ci_ms"] > 0 for r in rows)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "±" in res.stdout and "*" in res.stdout
    assert "* 2 points did not converge: stopped at the cap (run.chunks)" in \
        " ".join(res.stdout.split())


def test_a_long_run_says_how_long_it_will_take_first(monkeypatch):
    monkeypatch.setattr(longrun, "PILOT_S", 0.0)
    monkeypatch.setattr(longrun, "LONG_S", 0.0)
    res = runner.invoke(app, ["simulate", "--engine", "simpy", "--set", "run.chunks=3000"])
    assert res.exit_code == 0, res.output
    first = res.stderr.strip().splitlines()[0]
    assert first.startswith("simulate: 3,000 chunks will take about ")
    assert "(pilot: " in first and first.endswith("Ctrl-C stops and keeps what has run")
    assert "simulate: 3,000 of 3,000 chunks" in res.stderr  # progress without a terminal


def test_ctrl_c_stops_a_long_run_at_once_and_keeps_what_ran(tmp_path):
    out = tmp_path / "long.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "pipefill.cli", "simulate", "--engine",
                             "simpy", "--set", "run.chunks=1000000000", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    took = time.perf_counter() - sent
    assert proc.returncode == 130, stderr
    assert took < 5.0  # within 1 s on an idle machine; a loaded CI box gets slack
    assert "interrupted: the summary covers the" in stderr
    # the summary of what ran, and its trace written (atomically) with every row
    assert "window" in stdout and os.path.getsize(out) > 0
    assert len(read_trace(out).marks("emit")) > 10


def test_a_big_grid_says_how_long_it_will_take_before_it_starts(monkeypatch, tmp_path):
    monkeypatch.setattr(longrun, "PILOT_POINTS", 0)
    monkeypatch.setattr(longrun, "LONG_SWEEP_S", 0.0)
    out = tmp_path / "s.parquet"
    res = runner.invoke(app, ["sweep", "--grid", "policy.d_in=1,2", "--grid",
                              "policy.recompute_lag=0,2", "--set", "run.chunks=60",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    first = res.stderr.strip().splitlines()[0]
    assert first.startswith("sweep: 4 points to run (2 on SimPy, the rest in 2 fast-path "
                            "batch(es)): about ")  # lag 2 >= d_in: greedy, on SimPy
    assert first.endswith(f"from a pilot; results to {out} (finished tasks stream to "
                          f"{out}.parts/; --resume runs the rest)")
