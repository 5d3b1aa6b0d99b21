"""The fill study on a schedule worked out by hand: build 10, denoise 40, decode 20 ms
(constant), r1, transport of no duration (1 MB envelopes, 2 MB results).

stage0 (build + decode) is busy 30 ms a chunk, stage1 40 ms: the bottleneck is 40.
- D_out = 1: denoise k+1 needs the result slot that decode k frees, and producer_first
  builds k+2 before decoding k, so the loop is denoise + build + decode = 70 ms (1.75x);
  no work is hidden (OverlapScore 0).
- D_in = 1, D_out >= 2: build k+1 needs the envelope slot that denoise k frees: 40 +
  10 = 50 ms (1.25x); hidden = 30 + 40 - 50 = 20 of min(30, 40): OverlapScore 2/3.
- otherwise 40 ms, OverlapScore 1.
Memory in flight: decode (20) never falls behind denoise (40), so one 2 MB result at a
time beside D_in envelopes of 1 MB: D_in + 2 MB.
"""

from __future__ import annotations

import pytest

import pipefill
from tests.helpers.scenarios import make_scenario

TRANSPORT = {"latency_ms": 0.0, "bandwidth_gbps": 1e15, "envelope_bytes": 1_000_000,
             "result_bytes": 2_000_000}
COSTS = {"build": 10, "denoise": {"mean": 40, "steps": 1}, "decode": 20}


def expected_period(d_in: int, d_out: int) -> float:
    return 70.0 if d_out == 1 else 50.0 if d_in == 1 else 40.0


@pytest.fixture(scope="module")
def fill():
    sc = make_scenario({"name": "phase_pp", "recompute": "r1"}, COSTS, chunks=400, warmup=5,
                       transport=TRANSPORT)
    return pipefill.study("fill", sc)


def test_every_point_matches_the_hand_schedule(fill):
    assert len(fill.points) == 9
    for row in fill.points.rows:
        d_in, d_out = row["policy.d_in"], row["policy.d_out"]
        want = expected_period(d_in, d_out)
        assert row["bound_ms"] == pytest.approx(want, abs=1e-9), row["label"]
        assert row["period_p50_ms"] == pytest.approx(want, abs=1e-9), row["label"]
        assert row["bottleneck_ms"] == pytest.approx(40.0, abs=1e-9)
        # the mean period includes the drain of the last chunks (one shorter gap)
        assert row["period_ratio"] == pytest.approx(want / 40.0, abs=3e-3)
        overlap = 0.0 if d_out == 1 else 2 / 3 if d_in == 1 else 1.0
        assert row["overlap_score"] == pytest.approx(overlap, abs=1e-9), row["label"]
        assert row["memory_mb"] == pytest.approx(d_in + 2.0, abs=1e-9), row["label"]


def test_the_verdict_says_d_out_1_serialises_and_2_reaches_it(fill):
    reach, gate = fill.verdict
    assert reach.startswith(
        "D_out = 1: period 1.75x the bottleneck, backpressure (q_out's 1 slot) serialises "
        "build and decode (stage0) into stage1's loop (decode[k] -> (q_out slot) -> "
        "denoise[k+1] -> (q_in slot) -> build[k+2] -> decode[k+1]); ")
    assert ("D_in = 1: period 1.25x the bottleneck, a dependency serialises build (stage0) "
            "into stage1's loop (build[k] -> send:q_in[k] -> denoise[k] -> build[k+1])") \
        in reach
    assert "D_in = D_out = 2 reaches it: period 1.00x the bottleneck" in reach
    assert reach.endswith("D_in = 4 or D_out = 4 buys nothing (period 1.00x the bottleneck) "
                          "and costs 0.00-2.00 MB more memory in flight")
    assert gate == "OverlapScore >= 0.30 at 6 of 9 points; not at D_out = 1 (0.00)"
    ok = [f.ok for f in fill.findings]
    assert ok == [True, False]


def test_the_key_points_are_the_cheapest_fit_and_the_worst_misses(fill):
    labels = [fill.points.label(i) for i in fill.key_points()]
    assert labels == ["D_in = D_out = 2", "D_in = D_out = 1", "D_in = 1, D_out = 2"]


def test_explain_names_each_key_points_cause_and_lever(fill):
    got = {e.label: (e.category, e.lever) for e in fill.explained}
    assert got["D_in = D_out = 1"] == ("backpressure", "D_out = 2 (policy.d_out)")
    assert got["D_in = 1, D_out = 2"] == ("backpressure", "D_in = 2 (policy.d_in)")
    assert got["D_in = D_out = 2"][0] == "stage imbalance"
    # D_in = D_out = 1: stage1 idles 30 of every 70 ms: 10 starved while envelope k+1 is
    # built (its slot freed when denoise k ended), then 20 blocked while decode k frees
    # the result slot
    one = next(e for e in fill.explained if e.label == "D_in = D_out = 1")
    assert "stage1 idle 43%: blocked on q_out (full) 67%; starved on q_in 33%" in one.verdict


def test_the_json_has_every_point_and_column(fill):
    data = fill.to_json()
    assert data["study"] == "fill" and len(data["points"]) == 9
    assert {"period_ms", "bound_ms", "critical_cycle", "memory_mb", "policy.d_in"} \
        <= set(data["points"][0])
    assert data["verdict"] == fill.verdict
    assert data["labels"]["period_ratio"] == "period / bottleneck"
