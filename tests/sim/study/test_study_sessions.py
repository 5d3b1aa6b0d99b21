"""The sessions study on a schedule worked out by hand: one generator call costs 20 ms
whatever its batch (batch_fixed_ms = mean), build 2 + decode 3 ms per session on the
shared front end. One session: stage1 is the bottleneck at 20 ms a chunk (600 fps of
12-frame chunks) and stage0 idles 15 ms of every 20; two sessions fill one call with
two chunks in the same 20 ms: twice the throughput on the same two devices."""

from __future__ import annotations

import pytest

import pipefill
from tests.helpers.scenarios import make_scenario


@pytest.fixture(scope="module")
def sessions():
    costs = {"build": 2, "denoise": {"mean": 20, "steps": 1, "batch_fixed_ms": 20},
             "decode": 3}
    sc = make_scenario({"name": "multi_session"}, costs, chunks=200, warmup=5)
    return pipefill.study("sessions", sc)


def test_two_sessions_double_the_throughput_of_one(sessions):
    rows = {r["label"]: r for r in sessions.points.rows}
    one, two = rows["fixed groups, sessions = 1"], rows["fixed groups, sessions = 2"]
    for row in (one, two):
        assert row["period_p50_ms"] == pytest.approx(20.0, abs=1e-9)
        assert row["bound_ms"] == pytest.approx(20.0, abs=1e-9)
        assert row["devices"] == 2 and row["queues_held"] == 1.0
    assert one["throughput"] == pytest.approx(600.0, abs=1e-9)
    assert two["throughput"] == pytest.approx(1200.0, abs=1e-9)
    assert two["fps_per_gpu"] == pytest.approx(600.0, abs=1e-9)


def test_the_verdict_states_the_doubling_and_bounded_queues(sessions):
    trend, window, queues = sessions.verdict
    assert trend.startswith("fixed groups: throughput 600.0 -> 1200.0 -> 2400.0 fps "
                            "(x2.00, x4.00), fps per GPU 300.0 -> 600.0 -> 1200.0")
    assert window == "against fixed groups: window 20 ms: throughput within 1%"
    assert queues == ("every queue within its capacity (D_in, D_out per session) at every "
                      "point")
