"""stream_batch (StreamDiffusionV2): an exact small schedule, fill, balance, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.sim.bound.analysis import period_bound
from pipefill.sim.engine.core import simulate
from pipefill.sim.errors import ScenarioError
from pipefill.sim.policies.stream_batch import TickPlan
from pipefill.traces.metrics import compute_metrics
from tests.helpers.scenarios import make_scenario

# one latent's full-DiT step costs 10 ms; a batch of B costs 4 + 6 B (10, 16, 22 ...)
COSTS = {"denoise": {"mean": 10.0, "batch_fixed_ms": 4.0}, "encode": 2.0, "decode": 3.0}


def stream_batch(chunks: int = 3, **policy):
    pol = {"name": "stream_batch", "stages": 2, "steps": 2, "blocks": 2, **policy}
    return make_scenario(pol, COSTS, chunks=chunks)


def spans_of(trace, stage: str, name: str) -> list[tuple[int, float, float]]:
    sp = trace.spans[(trace.spans["stage"] == stage) & (trace.spans["name"] == name)]
    sp = sp.sort_values(["start_ms", "chunk"])
    return list(zip(sp["chunk"], sp["start_ms"], sp["end_ms"], strict=True))


def test_tick_plan_puts_chunk_t_minus_w_s_at_step_s():
    plan = TickPlan(chunks=3, stages=2, steps=2)
    assert [plan.items(t) for t in range(5)] == [
        [(0, 0)], [(1, 0)], [(2, 0), (0, 1)], [(1, 1)], [(2, 1)]]
    assert [plan.finished(t) for t in range(5)] == [None, None, 0, 1, 2]
    assert list(plan.ticks()) == [0, 1, 2, 3, 4]


def test_two_stages_two_steps_hand_schedule():
    # W=2 stages of 1 block each (share 1/2): a tick of B latents costs (4 + 6B) / 2,
    # 5 ms for B=1 and 8 ms for B=2. Free transport, max_outstanding 2, loop holds W.
    # stage0: encode0 [0,2] tick0 [2,7] encode1 [7,9] tick1 [9,14] encode2 [14,16]
    #         tick2 (chunk 2 step 0 + chunk 0 step 1, looped back at 12) [16,24]
    #         tick3 (chunk 1 step 1, looped at 19) [24,29]
    #         tick4 (chunk 2 step 1, looped back when stage1 ends tick2 at 32) [32,37]
    # stage1: tick0 [7,12] tick1 [14,19] tick2 [24,32] decode0 [32,35] tick3 [35,40]
    #         decode1 [40,43] tick4 [43,48] decode2 [48,51]
    trace = simulate(stream_batch())
    s0 = [(s, e) for _, s, e in spans_of(trace, "stage0", "denoise")]
    assert s0 == [(2, 7), (9, 14), (16, 24), (16, 24), (24, 29), (32, 37)]
    assert [(s, e) for _, s, e in spans_of(trace, "stage0", "encode")] == [
        (0, 2), (7, 9), (14, 16)]
    s1 = sorted({(s, e) for _, s, e in spans_of(trace, "stage1", "denoise")})
    assert s1 == [(7, 12), (14, 19), (24, 32), (35, 40), (43, 48)]
    assert spans_of(trace, "stage1", "decode") == [(0, 32, 35), (1, 40, 43), (2, 48, 51)]
    emits = trace.marks("emit").sort_values("start_ms")
    assert list(zip(emits["chunk"], emits["start_ms"], strict=True)) == [
        (0, 35.0), (1, 43.0), (2, 51.0)]
    # TTFF: chunk 0 went through n x W = 4 micro-steps (+ encode and decode)
    assert compute_metrics(trace)["ttff_ms"] == 35.0


def test_steady_state_is_one_chunk_per_tick_at_the_busiest_stage():
    # steady ticks batch n = 2 latents: 8 ms per stage; stage1 also decodes (3 ms),
    # stage0 also encodes (2 ms): 11 ms per chunk, set by stage1
    b = period_bound(stream_batch(chunks=40))
    assert b.period_ms == 11.0
    assert b.kind == "exact"
    # nodes are named by their first item's chunk: the tick after decode k batches chunk
    # k+3 at step 0 (W = 2, n = 2: chunk k+1 at step 1 finishes in it and is decoded next)
    assert b.chain == "decode[k] -> denoise@stage1[k+3] -> decode[k+1]"


def test_balance_moves_blocks_off_the_edge_stages():
    # 12 blocks, 3 stages, batch 2 per tick: a block costs 16 / 12 ms; encode 2 on
    # stage0, decode 3 on the last stage: [4, 5, 3] gives 7.33, 6.67, 7.0 ms and no
    # other split has a lower maximum
    sc = stream_batch(chunks=40, stages=3, blocks=12, balance=True)
    assert sc.policy.block_counts(sc) == [4, 5, 3]
    even = stream_batch(chunks=40, stages=3, blocks=12)
    assert period_bound(sc).period_ms == pytest.approx(4 * 16 / 12 + 2)
    assert period_bound(sc).period_ms < period_bound(even).period_ms


@settings(max_examples=30, deadline=None)
@given(stages=st.integers(1, 4), steps=st.integers(1, 4), chunks=st.integers(1, 12),
       outstanding=st.integers(1, 3), seed=st.integers(0, 99))
def test_each_chunk_takes_every_step_once_in_order(stages, steps, chunks, outstanding, seed):
    pol = {"name": "stream_batch", "stages": stages, "steps": steps, "blocks": 8,
           "max_outstanding": outstanding}
    costs = {p: {"dist": "lognormal", "mean": m, "cv": 0.4}
             for p, m in (("denoise", 10.0), ("encode", 2.0), ("decode", 3.0))}
    trace = simulate(make_scenario(pol, costs, chunks=chunks, seed=seed))
    emits = trace.marks("emit").sort_values("start_ms", kind="stable")
    assert emits["chunk"].tolist() == list(range(chunks))
    den = trace.spans[trace.spans["name"] == "denoise"]
    # every (chunk, step) runs once on every stage, steps in order
    counts = den.groupby(["chunk", "step", "stage"]).size()
    assert len(counts) == chunks * steps * stages and (counts == 1).all()
    for _, grp in den.groupby("chunk"):
        by_step = grp.groupby("step")["start_ms"].min().to_numpy()
        assert np.all(np.diff(by_step) > 0)
    # never more than max_outstanding ticks on a forward link
    for q in (f"act{w}" for w in range(stages - 1)):
        assert trace.counters(q)["value"].max() <= outstanding


@pytest.mark.parametrize(("policy", "field"), [
    ({"stages": 0}, "policy.stages"),
    ({"steps": 0}, "policy.steps"),
    ({"max_outstanding": 0}, "policy.max_outstanding"),
    ({"stages": 2, "blocks": 30, "split": [10, 10]}, "policy.split"),
    ({"stages": 3, "blocks": 30, "split": [10, 20]}, "policy.split"),
    ({"stages": 2, "blocks": 1}, "policy.blocks"),
    ({"stages": 2, "blocks": 4, "split": [2, 2], "balance": True}, "policy"),
])
def test_bad_fields_name_the_field(policy, field):
    with pytest.raises(ScenarioError) as exc:
        make_scenario({"name": "stream_batch", **policy}, COSTS)
    assert exc.value.field == field
