"""Replicas: Student-t intervals, seeds, parallel = serial, and `simulate --replicas`."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.errors import ScenarioError
from pipefill.sim.sweep.replicas import estimate, run_replicas, t975
from tests.helpers.scenarios import make_scenario

runner = CliRunner()


def test_t_quantiles_match_tables():
    assert t975(1) == 12.706
    assert t975(9) == 2.262
    assert t975(30) == 2.042
    assert t975(60) == pytest.approx(2.000, abs=1e-3)
    assert t975(120) == pytest.approx(1.980, abs=1e-3)
    assert t975(10**6) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError):
        t975(0)


def test_estimate_by_hand():
    # values 1..5: mean 3, sd = sqrt(2.5), half width t(4) * sd / sqrt(5)
    e = estimate([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert (e.mean, e.n) == (3.0, 5)
    assert e.low == pytest.approx(3 - half) and e.high == pytest.approx(3 + half)
    assert estimate([7.0]).low is None and estimate([]).mean is None


def raw(cv: float) -> dict:
    sc = make_scenario({"name": "phase_pp", "recompute": "r0"},
                       {"build": 1.0, "recompute": 1.0, "decode": {"mean": 4.0},
                        "denoise": {"dist": "lognormal", "mean": 5.0, "cv": cv}},
                       chunks=20, seed=3)
    return sc.raw


def test_deterministic_replicas_agree_exactly():
    summary = run_replicas(raw(0.0), "t", replicas=3)
    period = summary.estimates["period_ms"]
    assert summary.seeds == (3, 4, 5)
    assert period.low == pytest.approx(period.mean, abs=1e-12) == period.high
    assert len({r["period_ms"] for r in summary.runs}) == 1


def test_stochastic_replicas_differ_and_parallel_equals_serial():
    serial = run_replicas(raw(0.3), "t", replicas=4, workers=1)
    parallel = run_replicas(raw(0.3), "t", replicas=4, workers=2)
    assert serial.runs == parallel.runs
    periods = [r["period_ms"] for r in serial.runs]
    assert len(set(periods)) > 1
    e = serial.estimates["period_ms"]
    assert e.low is not None and e.mean is not None and e.high is not None
    assert e.low < e.mean < e.high and e.n == 4


def test_bad_replica_count():
    with pytest.raises(ScenarioError):
        run_replicas(raw(0.0), "t", replicas=0)


def test_cli_simulate_replicas_json():
    res = runner.invoke(app, ["simulate", "--set", "run.chunks=24", "--replicas", "3",
                              "--workers", "2", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    reps = data["replicas"]
    assert reps["replicas"] == 3 and reps["seeds"] == [0, 1, 2]
    for key in ("period_ms", "overlap_score", "ttff_ms", "latency_p95_ms", "latency_p99_ms"):
        e = reps["metrics"][key]
        assert e["n"] == 3 and e["ci95_low"] <= e["mean"] <= e["ci95_high"]


def test_cli_simulate_replicas_table_and_bad_count():
    res = runner.invoke(app, ["simulate", "--set", "run.chunks=20", "--replicas", "2"])
    assert res.exit_code == 0, res.output
    assert "95% interval" in res.stdout and "2 replicas" in res.stdout
    res = runner.invoke(app, ["simulate", "--replicas", "0"])
    assert res.exit_code == 2
