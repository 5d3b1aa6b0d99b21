"""The coupling study on a schedule worked out by hand: build 10, recompute 10, denoise
40, decode 20, encode 5, anchor decode 5 ms (constant), D_in = D_out = 2, no transport.

r1: stage1 denoises 40 ms a chunk. r0 adds the recompute pass: 50 ms, no dependency.
r0a with lag 0: building k+1 needs the decode and re-encode of chunk k, one loop of
build + recompute + denoise + decode + encode = 85 ms (OverlapScore 0); lag 1 spreads
that loop over two chunks (42.5 ms a chunk), under stage1's 50: the period is r0's
again. anchor_only with lag 0 waits for the 5 ms anchor decode instead of the 20 ms
decode: 10 + 10 + 40 + 5 + 5 = 70 ms.
"""

from __future__ import annotations

import pytest

import pipefill
from tests.helpers.scenarios import make_scenario

COSTS = {"build": 10, "denoise": {"mean": 40, "steps": 1}, "recompute": 10, "decode": 20,
         "encode": 5, "anchor_decode": 5}
HAND = {"r1": 40.0, "r0": 50.0, "r0a, lag = 0": 85.0, "anchor_only, lag = 0": 70.0}


@pytest.fixture(scope="module")
def coupling():
    sc = make_scenario({"name": "phase_pp", "d_in": 2, "d_out": 2}, COSTS, chunks=400,
                       warmup=5)
    return pipefill.study("coupling", sc)


def test_every_point_matches_the_hand_schedule(coupling):
    assert [r["label"] for r in coupling.points.rows] == [
        "r1", "r0", *(f"r0a, lag = {n}" for n in range(4)),
        *(f"anchor_only, lag = {n}" for n in range(4))]
    for row in coupling.points.rows:
        want = HAND.get(row["label"], 50.0)
        assert row["bound_ms"] == pytest.approx(want, abs=1e-9), row["label"]
        assert row["period_p50_ms"] == pytest.approx(want, abs=1e-9), row["label"]
    lag0 = coupling.points.rows[2]
    assert lag0["overlap_score"] == pytest.approx(0.0, abs=1e-9)
    assert lag0["stage0_ms"] == pytest.approx(35.0, abs=1e-9)


def test_the_verdict_names_the_loop_and_the_lag_that_removes_it(coupling):
    dependency, r0a, anchor, work = coupling.verdict
    assert dependency.startswith("against r0 (")
    assert ("r0a, lag = 0: period 85.0 ms (+35.0 ms, +70%), OverlapScore 0.00 (-1.00), "
            "a dependency serialises build, "
            "decode and encode (stage0) into stage1's loop (build[k] -> recompute[k] -> "
            "denoise[k] -> decode[k] -> encode[k] -> build[k+1])") in dependency
    assert "(+20.0 ms, +40%), OverlapScore 0.50 (-0.50)" in dependency.partition(
        "anchor_only, lag = 0: period ")[2]
    assert r0a.startswith("r0a: the smallest lag that restores r0's period is 1 ")
    assert "lag = 0 costs +35.0 ms (+70%)" in r0a
    assert anchor.startswith("anchor_only: the smallest lag that restores r0's period is 1 ")
    assert work.startswith("against r1 (") and "r0: period 50.0 ms (+10.0 ms, +25%)" in work
    assert [f.ok for f in coupling.findings[1:3]] == [True, True]
    lag0 = next(e for e in coupling.explained if e.label == "r0a, lag = 0")
    assert lag0.category == "dependency" and lag0.lever.startswith("recompute_lag >= 1")
