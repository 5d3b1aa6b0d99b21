"""The fast path re-times fixed-order schedules exactly as the SimPy engine runs them.

Property: for every fixed-order policy, cost distribution (normal, lognormal, uniform,
empirical; patterns, drift, batch costs), depth, lag, transport and hard cut, the fast
path's emit times and every span's start and end equal SimPy's to 1e-9 ms for the same
seed. Choice-dependent schedules are refused with a reason.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from pipefill.sim.engine.core import simulate
from pipefill.sim.fast.path import NotFixedOrder, compile_plan, fast_reason, fast_trace
from pipefill.sim.scenario.load import build_scenario
from pipefill.traces.metrics import compute_metrics
from tests.helpers.fastpath import FIXED, SETTINGS, same_times, scenarios


@pytest.mark.parametrize("policy", FIXED, ids=lambda p: p.__name__)
def test_fast_path_equals_simpy(policy):
    @SETTINGS
    @given(sc=scenarios(policy))
    def run(sc):
        if fast_reason(sc) is not None:  # a hard cut made the schedule choose
            with pytest.raises(NotFixedOrder):
                compile_plan(sc)
            return
        same_times(sc)

    run()


def test_default_scenario_metrics_match():
    sc = build_scenario({**_default_raw(), "run": {"chunks": 60, "warmup": 5}})
    ref, fast = compute_metrics(simulate(sc)), compute_metrics(fast_trace(sc))
    for key in ("period_ms", "period_p50_ms", "fps", "stage0_ms", "stage1_ms",
                "overlap_score", "overlap_window", "ttff_ms", "latency_p95_ms", "mesh_idle_ms",
                "q_in_max", "q_out_max", "peak_bytes_in_flight"):
        assert fast[key] == pytest.approx(ref[key], abs=1e-9), key
    assert fast["bubble"] == pytest.approx(ref["bubble"], abs=1e-12)


def test_a_split_balanced_on_costs_is_part_of_the_plan_cache_key():
    """stream_batch with balance = true splits the blocks by the cost means, so two
    scenarios that differ only in costs record different actions: a plan cached for one
    must not re-time the other (found by a wider run of the equality property)."""
    def sc(decode: float):
        return build_scenario({
            "run": {"chunks": 6, "warmup": 1},
            "policy": {"name": "stream_batch", "stages": 2, "steps": 1, "blocks": 12,
                       "balance": True},
            "costs": {"build": 1.0, "denoise": 12.0, "decode": decode},
            "transport": {"latency_ms": 0, "envelope_bytes": 0, "result_bytes": 0}})

    light, heavy = sc(0.0), sc(6.0)
    assert light.policy.block_counts(light) == [6, 6]
    assert heavy.policy.block_counts(heavy) == [9, 3]
    for s in (light, heavy):  # the second one after the first has been cached
        same_times(s)
    assert compile_plan(light) is not compile_plan(heavy)


def test_choice_dependent_schedules_are_refused_with_the_reason():
    raw = {**_default_raw(), "policy": {"name": "phase_pp", "stage0_order": "consumer_first"}}
    sc = build_scenario(raw)
    assert "consumer_first with d_in=2, d_out=2 is a greedy choice" in str(fast_reason(sc))
    with pytest.raises(NotFixedOrder, match="fast path needs a fixed order"):
        compile_plan(sc)
    window = {"name": "multi_session", "batch_window_ms": 5.0}
    sc = build_scenario({**_default_raw(), "policy": window, "run": {"sessions": 2}})
    assert "batching window" in str(fast_reason(sc))


def _default_raw() -> dict:
    from pipefill.sim.scenario.load import load_raw

    return load_raw(None)[0]


def test_cli_engine_choice(tmp_path):
    import json

    from typer.testing import CliRunner

    from pipefill.cli import app
    from pipefill.traces.io import read_trace

    runner = CliRunner()
    res = runner.invoke(app, ["simulate", "--set", "run.chunks=30", "--json"])
    assert res.exit_code == 0, res.output
    fast = json.loads(res.stdout)
    assert fast["engine"] == "fast"
    res = runner.invoke(app, ["simulate", "--set", "run.chunks=30", "--engine", "simpy",
                              "--json"])
    ref = json.loads(res.stdout)
    assert ref["engine"] == "simpy"
    assert fast["period_ms"] == pytest.approx(ref["period_ms"], abs=1e-9)
    # forcing the fast path on a greedy order: one line naming --engine, exit 2, no file
    out = tmp_path / "t.parquet"
    res = runner.invoke(app, ["simulate", "--set", 'policy.stage0_order="consumer_first"',
                              "--engine", "fast", "--out", str(out)])
    assert res.exit_code == 2
    assert "--engine: fast: phase_pp: consumer_first" in res.output
    assert not out.exists()
    # a forced fast path writes its trace with counters; the metadata names the engine
    res = runner.invoke(app, ["simulate", "--set", "run.chunks=30", "--engine", "fast",
                              "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    trace = read_trace(out)
    assert trace.meta["engine"] == "fast" and len(trace.counters("q_in"))
    assert json.loads(res.stdout)["q_in_max"] == ref["q_in_max"]
    res = runner.invoke(app, ["sweep", "--grid", "policy.recompute_lag=1,2",
                              "--set", "run.chunks=30", "--json"])
    rows = json.loads(res.stdout)
    assert [r["engine"] for r in rows] == ["fast", "simpy"]  # lag 2 >= d_in: greedy
    res = runner.invoke(app, ["simulate", "--set", "run.chunks=30", "--replicas", "3",
                              "--json"])
    assert json.loads(res.stdout)["replicas"]["metrics"]["period_ms"]["n"] == 3
