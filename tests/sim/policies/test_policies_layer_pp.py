"""layer_pp (GPipe-style): exact schedules, the bubble formula, invariants, bad input."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.sim.bound.analysis import period_bound
from pipefill.sim.engine.core import simulate
from pipefill.sim.errors import ScenarioError
from pipefill.traces.metrics import compute_metrics
from tests.helpers.scenarios import make_scenario


def layer_pp(stages: int, items: int, chunks: int, blocks: int | None = None,
             denoise: float = 10.0, steps: int = 1, **policy):
    pol = {"name": "layer_pp", "stages": stages, "items": items,
           "blocks": blocks or stages, **policy}
    return make_scenario(pol, {"denoise": {"mean": denoise, "steps": steps}}, chunks=chunks)


def emit_times(trace) -> list[float]:
    return sorted(trace.marks("emit")["start_ms"].tolist())


def test_two_stages_two_items_hand_schedule():
    # P=2, M=2, 2 blocks split [1, 1]: each stage runs 10 * 1/2 = 5 ms per item.
    # batch 0: stage0 item0 [0,5] item1 [5,10]; stage1 item0 [5,10] item1 [10,15]
    # flush (free transport) at 15; batch 1: stage0 [15,20],[20,25]; stage1 [20,25],[25,30]
    trace = simulate(layer_pp(stages=2, items=2, chunks=4))
    assert emit_times(trace) == [10.0, 15.0, 25.0, 30.0]
    spans = trace.spans[trace.spans["lane"] == "compute"]
    s1 = spans[spans["stage"] == "stage1"].sort_values("start_ms")
    assert list(zip(s1["start_ms"], s1["end_ms"], strict=True)) == [
        (5, 10), (10, 15), (20, 25), (25, 30)]
    # each stage busy 20 of 30 ms: (P-1)/(M+P-1) = 1/3 idle
    assert compute_metrics(trace)["bubble_run"] == {"stage0": pytest.approx(1 / 3),
                                                    "stage1": pytest.approx(1 / 3)}
    # one batch per (M+P-1) * 5 = 15 ms: 7.5 ms per chunk
    # the loop: stage0 runs both items, stage1 the last one, then the next batch enters
    b = period_bound(layer_pp(2, 2, 4))
    assert (b.period_ms, b.cyclicity) == (7.5, 2)
    # (derived from the programs: one node per denoise call, named by its chunk; an
    # equally critical cycle runs stage0 on k, stage1 on k and k+1, then stage0 on k+2)
    assert b.chain == "denoise@stage0[k] -> denoise@stage1[k..k+1] -> denoise@stage0[k+2]"


@pytest.mark.parametrize("stages", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("items", [1, 2, 3, 5, 8])
def test_gpipe_bubble_is_exactly_p_minus_1_over_m_plus_p_minus_1(stages, items):
    # balanced stages (blocks = P, one each), free transport, two whole batches
    trace = simulate(layer_pp(stages, items, chunks=2 * items, steps=2))
    expected = Fraction(stages - 1, items + stages - 1)
    for stage, bubble in compute_metrics(trace)["bubble_run"].items():
        assert abs(bubble - float(expected)) < 1e-12, stage


def test_period_approaches_the_slowest_stage_as_items_grow():
    # stages of 2, 1, 1 blocks (of 4): 5, 2.5, 2.5 ms per item; slowest 5 ms.
    # a batch takes M*5 + 2.5 + 2.5 ms (the fill behind the slowest stage): period
    # per chunk 5 + 5/M -> 5
    periods = [period_bound(layer_pp(3, m, chunks=4 * m, blocks=4, split=[2, 1, 1])).period_ms
               for m in (1, 2, 4, 8, 16)]
    assert periods == pytest.approx([5 + 5 / m for m in (1, 2, 4, 8, 16)])
    assert all(a > b for a, b in pairwise(periods))


@settings(max_examples=30, deadline=None)
@given(stages=st.integers(1, 4), items=st.integers(1, 4), chunks=st.integers(1, 13),
       seed=st.integers(0, 99))
def test_every_chunk_is_emitted_once_in_order_and_batches_never_overlap(stages, items,
                                                                      chunks, seed):
    pol = {"name": "layer_pp", "stages": stages, "items": items, "blocks": 4 * stages}
    sc = make_scenario(pol, {"denoise": {"dist": "lognormal", "mean": 10.0, "cv": 0.5}},
                       chunks=chunks, seed=seed)
    trace = simulate(sc)
    emits = trace.marks("emit").sort_values("start_ms", kind="stable")
    assert emits["chunk"].tolist() == list(range(chunks))
    spans = trace.spans[trace.spans["lane"] == "compute"]
    first = spans[spans["stage"] == "stage0"].groupby("chunk")["start_ms"].min()
    t_emit = emits.set_index("chunk")["start_ms"]
    for b in range(1, (chunks + items - 1) // items):
        # batch b enters stage0 only after batch b-1's last item left the last stage
        assert first[b * items] >= t_emit[b * items - 1] - 1e-9
    # a stage runs one item at a time
    for _, grp in spans.groupby("stage"):
        iv = grp.sort_values("start_ms")[["start_ms", "end_ms"]].to_numpy()
        assert np.all(iv[1:, 0] >= iv[:-1, 1] - 1e-9)


@pytest.mark.parametrize(("policy", "field"), [
    ({"stages": 0}, "policy.stages"),
    ({"items": 0}, "policy.items"),
    ({"stages": 3, "blocks": 30, "split": [10, 10]}, "policy.split"),
    ({"stages": 2, "blocks": 30, "split": [10, 10]}, "policy.split"),
    ({"stages": 2, "blocks": 30, "split": [30, 0]}, "policy.split"),
    ({"stages": 4, "blocks": 3}, "policy.blocks"),
    ({"n_stages": 2}, "policy.n_stages"),
])
def test_bad_fields_name_the_field(policy, field):
    with pytest.raises(ScenarioError) as exc:
        make_scenario({"name": "layer_pp", **policy}, {"denoise": 1.0})
    assert exc.value.field == field
