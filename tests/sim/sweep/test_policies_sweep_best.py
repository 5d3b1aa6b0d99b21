"""Memory in flight (per queue and stage) and `sweep --best` with its Pareto front."""

from __future__ import annotations

import json
from itertools import pairwise

import pandas as pd
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.engine.core import simulate
from pipefill.sim.sweep.grid import best_point
from pipefill.traces.memory import memory_in_flight
from pipefill.traces.metrics import compute_metrics
from tests.helpers.scenarios import make_scenario

runner = CliRunner()
TRANSPORT = {"latency_ms": 0.0, "bandwidth_gbps": 1000.0, "envelope_bytes": 100,
             "result_bytes": 50}


def test_memory_per_queue_and_stage():
    # stage0's decode (10 ms) is the bottleneck: stage1 (1 ms) fills both D_out slots
    # (2 x 50 bytes, held on stage0) and then waits for a slot holding envelope k while
    # stage0 has already built k+1: both D_in slots (2 x 100 bytes, on stage1) are full
    sc = make_scenario({"name": "phase_pp", "d_in": 2, "d_out": 2},
                       {"build": 1.0, "denoise": 1.0, "decode": 10.0}, chunks=20,
                       transport=TRANSPORT)
    mem = compute_metrics(simulate(sc))["memory"]
    assert mem["queues"] == {"q_in": 200, "q_out": 100}
    assert mem["stages"] == {"stage0": 100, "stage1": 200}
    assert mem["peak_bytes"] == 300


def test_memory_is_missing_without_byte_counters():
    sc = make_scenario({"name": "serial"}, {"build": 1.0, "denoise": 1.0, "decode": 1.0})
    trace = simulate(sc)
    trace.events = trace.events[trace.events["name"] != "bytes_in_flight"]
    assert memory_in_flight(trace) == {}
    assert "memory" in compute_metrics(trace)["missing"]


def table() -> pd.DataFrame:
    rows = [  # d_in, period, fps, latency, memory
        (1, 30.0, 400.0, 60.0, 100), (2, 20.0, 600.0, 50.0, 200), (3, 20.0, 600.0, 70.0, 300),
        (4, 15.0, 800.0, 90.0, 400), (5, 25.0, 480.0, 40.0, 150)]
    return pd.DataFrame([{"policy.d_in": d, "period_ms": p, "fps": f, "latency_p95_ms": lat,
                          "peak_bytes_in_flight": m, "error": None}
                         for d, p, f, lat, m in rows])


def test_best_point_and_pareto_front_by_hand():
    # no limits: least memory is d_in=1 (100 B); the front (memory up, period down):
    # d_in=1 (30 ms), 5 (150 B, 25 ms), 2 (200 B, 20 ms), 4 (400 B, 15 ms); 3 is dominated
    pick = best_point(table())
    assert pick.best is not None and pick.best["policy.d_in"] == 1
    assert [r["policy.d_in"] for r in pick.pareto] == [1, 5, 2, 4]
    # fps >= 500 and latency <= 80: d_in 2, 3 qualify; 2 has less memory
    pick = best_point(table(), max_latency_ms=80, min_fps=500)
    assert pick.best is not None and pick.best["policy.d_in"] == 2 and pick.feasible == 2
    assert [r["policy.d_in"] for r in pick.pareto] == [2]
    assert best_point(table(), min_fps=10_000).best is None


def sweep(*extra: str):
    return runner.invoke(app, ["sweep", "--set", "run.chunks=24", "--grid",
                               "policy.d_in=1,2,3", "--grid", "policy.d_out=1,2", *extra])


def test_cli_sweep_best_json():
    res = sweep("--best", "--min-fps", "70", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    points = pd.DataFrame(data["points"])
    ok = points[points["fps"] >= 70]
    assert data["feasible"] == len(ok) > 0
    assert data["best"]["peak_bytes_in_flight"] == ok["peak_bytes_in_flight"].min()
    front = data["pareto"]
    assert [p["peak_bytes_in_flight"] for p in front] == sorted(
        p["peak_bytes_in_flight"] for p in front)
    # one Pareto rule (traces.pareto): equal points are all on the front, none dominated
    assert all(a["period_ms"] >= b["period_ms"] for a, b in pairwise(front))
    m, p = ok["peak_bytes_in_flight"], ok["period_ms"]
    for f in front:
        mf, pf = f["peak_bytes_in_flight"], f["period_ms"]
        assert not ((m <= mf) & (p <= pf) & ((m < mf) | (p < pf))).any()
    kept = {(f["peak_bytes_in_flight"], f["period_ms"]) for f in front}
    assert len(kept) < len(front) or all(
        ((m <= mf) & (p <= pf) & ((m < mf) | (p < pf))).any()
        for mf, pf in zip(m, p, strict=True) if (mf, pf) not in kept)
    assert {"peak_bytes_stage0", "peak_bytes_stage1"} <= set(points.columns)


def test_cli_sweep_best_table_and_no_feasible_point():
    res = sweep("--best", "--max-latency-ms", "50000")
    assert res.exit_code == 0, res.output
    assert "best (latency p95 <= 50000 ms; 6 points qualify)" in res.stdout
    assert "Pareto front" in res.stdout
    res = sweep("--max-latency-ms", "1")
    assert res.exit_code == 1  # scripts can tell: no point qualifies
    assert "no grid point meets latency p95 <= 1 ms" in res.stdout
