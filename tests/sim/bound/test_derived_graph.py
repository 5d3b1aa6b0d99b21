"""The bound's graph is derived from the recorded programs: its period, families and the
rare actions of long periods."""

from __future__ import annotations

import pytest

from pipefill.sim.bound.analysis import period_bound
from pipefill.sim.bound.derived import period
from pipefill.sim.engine.core import simulate
from pipefill.sim.schedule.derive import COMPUTE, derive
from tests.helpers.bound import steady_period
from tests.helpers.scenarios import make_scenario

COSTS = {"denoise": {"mean": 5.0, "steps": 2}}
TRANSPORT = {"latency_ms": 1.0, "bandwidth_gbps": 1.0, "result_bytes": 1_000_000}


@pytest.mark.parametrize("items", [8, 20])
def test_a_flush_every_m_chunks_sets_the_period(items):
    # layer_pp flushes once per batch of M items: the recorded schedule repeats every M
    # chunks, not every chunk (a period found on a short window would miss the flush)
    sc = make_scenario({"name": "layer_pp", "stages": 4, "items": items, "blocks": 12},
                       COSTS, chunks=12 * items, transport=TRANSPORT)
    b = period_bound(sc)
    assert period(sc).u == items and b.kind == "exact"
    assert steady_period(simulate(sc), b.cyclicity) == pytest.approx(b.period_ms, rel=1e-9)


def test_recorded_nodes_follow_the_rules():
    # serial, one chunk: build -> send -> get -> denoise x2 -> send -> get -> decode, then
    # the shutdown call: a q_in slot (freed by the denoise), its send, stage1's get
    sc = make_scenario({"name": "serial"}, {"build": 1, "denoise": {"mean": 2, "steps": 2},
                                            "decode": 3}, chunks=1)
    s = derive(sc)
    names = [(n.kind, n.label) for n in s.nodes]
    assert names == [("compute", "build"), ("send", "send:q_in"), ("wait", "get:q_in"),
                     ("compute", "denoise"), ("compute", "denoise"), ("send", "send:q_out"),
                     ("wait", "get:q_out"), ("compute", "decode"), ("wait", "slot:q_in"),
                     ("send", "send:q_in"), ("wait", "get:q_in")]
    # every node waits on its stage's previous node and at most one other track
    for i, n in enumerate(s.nodes):
        assert all(p < i for p in n.preds) and len(n.preds) <= 2
    assert [m.name for m in s.marks] == ["input", "emit"]
    assert sum(1 for n in s.nodes if n.kind == COMPUTE) == 4
