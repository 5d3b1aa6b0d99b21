"""rolling_window: exact small schedules (steady and across a hard cut), the window's
memory, the call pattern, invariants with random hard cuts, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.sim.bound.analysis import period_bound
from pipefill.sim.bound.derived import period
from pipefill.sim.engine.core import simulate
from pipefill.sim.errors import ScenarioError
from pipefill.sim.schedule.derive import COMPUTE
from pipefill.traces.metrics import compute_metrics
from tests.helpers.scenarios import make_scenario

# one denoise step of a call over B chunks costs 4 + 6 B ms: 10 alone, 16 for two
COSTS = {"build": 2.0, "denoise": {"mean": 10.0, "steps": 2, "batch_fixed_ms": 4.0},
         "decode": 3.0}


def rolling(chunks: int = 3, **policy):
    pol = {"name": "rolling_window", "window": 2, "d_in": 1, "d_out": 1, "window_bytes": 100,
           **policy}
    return make_scenario(pol, COSTS, chunks=chunks)


def calls(trace) -> list[tuple[float, float, list[tuple[int, int]]]]:
    den = trace.spans[trace.spans["name"] == "denoise"]
    return [(s, e, sorted(zip(g["chunk"], g["step"], strict=True)))
            for (s, e), g in den.groupby(["start_ms", "end_ms"])]


def test_window_of_two_hand_schedule():
    # stage0 keeps d_in + min(W, steps) - 1 = 2 chunks ahead of its decodes.
    # builds 0 [0,2], 1 [2,4]; call0 admits 0 at 2: [2,12]; call1 admits 1 (its D_in
    # slot frees at 12, so build 2 runs [12,14]) and batches (0,1),(1,0): [12,28];
    # decode 0 [28,31]. call2 admits 2, waits for the D_out slot until 31: [31,47];
    # decode 1 [47,50]; call3 (nothing to admit) [50,60]; decode 2 [60,63]
    trace = simulate(rolling())
    assert calls(trace) == [(2.0, 12.0, [(0, 0)]), (12.0, 28.0, [(0, 1), (1, 0)]),
                            (31.0, 47.0, [(1, 1), (2, 0)]), (50.0, 60.0, [(2, 1)])]
    em = trace.marks("emit").sort_values("start_ms")
    assert list(zip(em["chunk"], em["start_ms"], strict=True)) == [
        (0, 31.0), (1, 50.0), (2, 63.0)]
    # two chunks of 100 bytes live in the window (on stage1) at once
    mem = compute_metrics(trace)["memory"]
    assert mem["queues"]["window"] == 200
    assert mem["stages"]["stage1"] == 200


def test_a_hard_cut_evicts_the_window_and_never_emits_stale_work():
    # cut before chunk 2 (at t=4): envelope 1 still waits in q_in and is flushed
    # (dropped); chunk 0 is in the window. Build 2 (new epoch) [4,6]. Call1 at 12 takes
    # envelope 2, which starts an epoch: chunk 0 is evicted and sent back, stage0 drops
    # it; call1 runs (2,0) [12,22]; build 3 [12,14]; call2 (2,1),(3,0) [22,38];
    # decode 2 [38,41]; call3 (3,1) [41,51]; decode 3 [51,54]
    trace = simulate(rolling(chunks=4, hard_cuts=[2]))
    em = trace.marks("emit").sort_values("start_ms")
    assert list(zip(em["chunk"], em["start_ms"], strict=True)) == [(2, 41.0), (3, 54.0)]
    assert sorted(trace.marks("drop")["chunk"]) == [0, 1]
    assert trace.marks("hard_cut")["start_ms"].tolist() == [4.0]
    assert set(em["epoch"]) == {1}


@pytest.mark.parametrize(("window", "steps", "calls_chunks"), [
    (1, 3, (3, 1)), (2, 2, (1, 1)), (3, 2, (1, 1)), (2, 4, (4, 2)), (3, 4, (4, 3))])
def test_call_pattern_period(window, steps, calls_chunks):
    # W >= steps: one chunk in and one out per call. W=2, steps=4: chunks enter at
    # calls 0, 1, leave at 3, 4 (admitting the next in the same call): 4 calls, 2 chunks.
    # The period is found in the recorded programs (no second copy of the window logic).
    costs = {**COSTS, "denoise": {"mean": 10.0, "steps": steps, "batch_fixed_ms": 4.0}}
    per = period(make_scenario({"name": "rolling_window", "window": window}, costs=costs))
    s = per.schedule
    calls = [n for n in per.tracks["stage1"] if s.nodes[n].kind == COMPUTE]
    first = next(i for i, n in enumerate(calls) if per.base <= s.nodes[n].chunk)
    in_period = [n for n in calls[first:] if s.nodes[n].chunk < per.base + per.u]
    assert (len(in_period), per.u) == calls_chunks


def test_recorded_calls_batch_one_step_per_chunk():
    costs = {**COSTS, "denoise": {"mean": 10.0, "steps": 4, "batch_fixed_ms": 4.0}}
    per = period(make_scenario({"name": "rolling_window", "window": 2}, costs=costs))
    calls = [n.action for n in per.schedule.nodes if n.kind == COMPUTE
             and n.track == "stage1" and n.action is not None]
    assert [tuple((t.chunk, t.step) for t in c.items) for c in calls[:5]] == [
        ((0, 0),), ((0, 1), (1, 0)), ((0, 2), (1, 1)), ((0, 3), (1, 2)), ((1, 3), (2, 0))]


def test_steady_period_is_one_call_per_chunk():
    # W = steps = 2: every call batches two chunks (16 ms) and emits one; stage0 needs 5.
    # With D_out = 2 the calls run back to back: 16 ms per chunk.
    b = period_bound(rolling(chunks=60, d_out=2))
    assert (b.period_ms, b.kind, b.chain) == (16.0, "exact", "denoise[k] -> denoise[k+1]")
    # With D_out = 1 the call finishing chunk k+1 waits for decode k to free the slot,
    # and decode k+1 waits for that call: 3 + 16 = 19 ms
    b = period_bound(rolling(chunks=60, d_out=1))
    # (the arc decode -> denoise is q_out's single slot: the chain names it)
    assert (b.period_ms, b.chain) == (19.0, "decode[k] -> (q_out slot) -> denoise[k+1] -> "
                                            "decode[k+1]")


@settings(max_examples=40, deadline=None)
@given(window=st.integers(1, 5), steps=st.integers(1, 4), d_in=st.integers(1, 3),
       d_out=st.integers(1, 3), chunks=st.integers(1, 16), seed=st.integers(0, 99),
       cuts=st.lists(st.integers(1, 15), max_size=4, unique=True))
def test_cuts_drop_stale_chunks_and_emit_the_rest_in_order(window, steps, d_in, d_out,
                                                            chunks, seed, cuts):
    pol = {"name": "rolling_window", "window": window, "d_in": d_in, "d_out": d_out,
           "hard_cuts": sorted(c for c in cuts if c < chunks)}  # later cuts are refused
    costs = {"build": {"dist": "lognormal", "mean": 2.0, "cv": 0.5},
             "denoise": {"dist": "lognormal", "mean": 10.0, "cv": 0.5, "steps": steps},
             "decode": {"dist": "lognormal", "mean": 3.0, "cv": 0.5}}
    trace = simulate(make_scenario(pol, costs, chunks=chunks, seed=seed))
    marks = trace.events[trace.events["kind"] == "mark"]
    emitted = marks[marks["name"] == "emit"]
    dropped = set(marks[marks["name"] == "drop"]["chunk"])
    assert emitted["chunk"].is_monotonic_increasing
    assert set(emitted["chunk"]) | dropped == set(range(chunks))
    assert not set(emitted["chunk"]) & dropped
    valid = [c for c in cuts if c < chunks]
    # an emitted chunk belongs to the epoch its build started, and epochs only grow
    for row in emitted.itertuples():
        assert row.epoch == sum(1 for c in valid if c <= row.chunk)
    assert set(range(max(valid, default=0), chunks)) <= set(emitted["chunk"])
    assert trace.counters("window")["value"].max() <= window


@pytest.mark.parametrize(("policy", "field"), [
    ({"window": 0}, "policy.window"),
    ({"d_in": 0}, "policy.d_in"),
    ({"d_out": 0}, "policy.d_out"),
    ({"window_bytes": -1}, "policy.window_bytes"),
])
def test_bad_fields_name_the_field(policy, field):
    with pytest.raises(ScenarioError) as exc:
        make_scenario({"name": "rolling_window", **policy}, COSTS)
    assert exc.value.field == field
