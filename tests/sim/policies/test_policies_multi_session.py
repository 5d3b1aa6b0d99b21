"""multi_session: exact small schedules (shared and per-session front ends, batching
window), per-session and aggregate metrics, invariants, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.sim.bound.analysis import period_bound
from pipefill.sim.engine.core import simulate
from pipefill.sim.errors import ScenarioError
from pipefill.traces.metrics import compute_metrics
from tests.helpers.scenarios import make_scenario

# a generator call over B sessions costs 4 + 6 B ms (one step): 10 alone, 16 for two
COSTS = {"build": 2.0, "denoise": {"mean": 10.0, "batch_fixed_ms": 4.0}, "decode": 3.0}


def multi(chunks: int = 2, sessions: int = 2, **policy):
    pol = {"name": "multi_session", "d_in": 1, "d_out": 1, "lead": 0, "max_batch": 2, **policy}
    return make_scenario(pol, COSTS, chunks=chunks, sessions=sessions)


def emits(trace) -> dict[int, list[float]]:
    em = trace.marks("emit").sort_values(["session", "chunk"])
    return {int(s): g["start_ms"].tolist() for s, g in em.groupby("session")}


def test_shared_front_end_hand_schedule():
    # round 0: build s0 [0,2], build s1 [2,4]; the mesh batches both [4,20];
    # decode s0 [20,23], s1 [23,26]. round 1: builds [26,28], [28,30] (the D_in slots
    # freed at 20); batch [30,46]; decodes [46,49], [49,52]
    trace = simulate(multi())
    assert emits(trace) == {0: [23.0, 49.0], 1: [26.0, 52.0]}
    batch = trace.spans[(trace.spans["stage"] == "stage1") & (trace.spans["lane"] == "compute")]
    assert sorted(set(zip(batch["start_ms"], batch["end_ms"], strict=True))) == [
        (4, 20), (30, 46)]
    b = period_bound(multi(chunks=30))
    assert (b.period_ms, b.kind) == (26.0, "exact")  # builds 4 + batch 16 + decodes 6


def test_per_session_front_ends_work_in_parallel():
    # each session builds on its own stage0.<s>: both envelopes at 2, batch [2,18],
    # decodes [18,21] in parallel, builds [21,23], batch [23,39], decodes [39,42]
    trace = simulate(multi(stage0="per_session"))
    assert emits(trace) == {0: [21.0, 42.0], 1: [21.0, 42.0]}
    assert set(trace.spans["stage"]) == {"stage0.0", "stage0.1", "stage1"}


@pytest.mark.parametrize(("window", "expected"), [
    # window 0: the mesh takes session 0 alone at 2 ([2,12]) and session 1 at 12
    # ([12,22]); decodes [12,15] and [22,25]
    (0.0, {0: [15.0], 1: [25.0]}),
    # window 5: at 2 it waits up to 7 for a second envelope, which arrives at 4:
    # one batch [4,20], decodes [20,23], [23,26]
    (5.0, {0: [23.0], 1: [26.0]}),
])
def test_batching_window(window, expected):
    assert emits(simulate(multi(chunks=1, batch_window_ms=window))) == expected


def test_per_session_and_aggregate_metrics():
    trace = simulate(multi(chunks=30, sessions=3, max_batch=3, d_in=2, d_out=2, lead=1))
    m = compute_metrics(trace)
    assert set(m["sessions"]) == {"0", "1", "2"}
    per = [m["sessions"][s]["fps"] for s in ("0", "1", "2")]
    assert m["aggregate_fps"] == pytest.approx(sum(per))
    assert m["q_in_max"] == 2 and m["q_out_max"] == 2  # per-session queues q_in.0 ...
    assert m["aggregate_latency_p95_ms"] >= m["latency_p50_ms"]


def test_a_shared_mesh_is_busy_with_any_session():
    # one session per call: the mesh runs three calls of 10 ms per round and the front
    # end needs 3 x (2 + 3) = 15, so the mesh never idles; counting only session 0's
    # calls would call it two-thirds idle
    trace = simulate(multi(chunks=30, sessions=3, max_batch=1, d_in=2, d_out=2, lead=1))
    assert compute_metrics(trace)["bubble"]["stage1"] == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(sessions=st.integers(1, 4), max_batch=st.integers(1, 4), d_in=st.integers(1, 3),
       d_out=st.integers(1, 3), window=st.sampled_from([None, 0.0, 2.0, 20.0]),
       shared=st.booleans(), chunks=st.integers(1, 10), seed=st.integers(0, 99),
       data=st.data())
def test_sessions_stay_in_order_and_batches_hold_distinct_sessions(
        sessions, max_batch, d_in, d_out, window, shared, chunks, seed, data):
    lead = data.draw(st.integers(0, d_in + d_out - 1))
    pol = {"name": "multi_session", "d_in": d_in, "d_out": d_out, "lead": lead,
           "max_batch": max_batch, "batch_window_ms": window,
           "stage0": "shared" if shared else "per_session"}
    costs = {p: {"dist": "lognormal", "mean": m, "cv": 0.5}
             for p, m in (("build", 2.0), ("denoise", 10.0), ("decode", 3.0))}
    trace = simulate(make_scenario(pol, costs, chunks=chunks, sessions=sessions, seed=seed))
    em = trace.marks("emit").sort_values("start_ms", kind="stable")
    for s in range(sessions):
        assert em[em["session"] == s]["chunk"].tolist() == list(range(chunks))
    calls = trace.spans[trace.spans["name"] == "denoise"].groupby("start_ms")
    for _, call in calls:
        assert len(call) <= max_batch
        assert call["session"].is_unique
    for s in range(sessions):
        assert trace.counters(f"q_in.{s}")["value"].max() <= d_in
        assert trace.counters(f"q_out.{s}")["value"].max() <= d_out


@pytest.mark.parametrize(("policy", "field"), [
    ({"max_batch": 0}, "policy.max_batch"),
    ({"d_in": 1, "d_out": 1, "lead": 2}, "policy.lead"),
    ({"stage0": "pooled"}, "policy.stage0"),
    ({"batch_window_ms": -1}, "policy.batch_window_ms"),
    ({"recompute": "r0a"}, "policy.recompute"),
])
def test_bad_fields_name_the_field(policy, field):
    with pytest.raises(ScenarioError) as exc:
        make_scenario({"name": "multi_session", **policy}, COSTS, sessions=2)
    assert exc.value.field == field
