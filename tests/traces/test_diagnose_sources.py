"""check and explain on every kind of trace pipefill reads: merged ranks, imported
profiles (simulated, replayed and probe traces are covered in test_check/test_explain)."""

from __future__ import annotations

from pipefill import probe
from pipefill.sim.fit.facts import check, explain
from pipefill.traces.import_map import parse_map
from pipefill.traces.merge import merge_ranks
from pipefill.traces.profile_import import import_profile
from tests.traces.test_merge import World
from tests.traces.test_profile_import import GENERIC_MAP, generic_events


def _ranks() -> list:
    """Rank 0 builds chunk k at 20k (4 ms) and decodes it at 20k + 16 (2 ms); rank 1, on
    a clock 5 s ahead and 100 ppm fast, denoises it at 20k + 5 (10 ms)."""
    w = World()
    r0 = probe.Recorder(policy={"name": "phase_pp", "d_in": 2, "d_out": 2}, rank=0,
                        run={"warmup": 2}, clock=w.clock(0.0, 1.0))
    r1 = probe.Recorder(rank=1, clock=w.clock(5000.0, 1.0001))
    w.t = 1.0
    r1.sync(w.ask(r0, 0.05), rounds=3)
    s0, s1 = r0.stage("stage0"), r1.stage("stage1")
    spans = []
    for k in range(12):
        t = 10.0 + 20.0 * k
        spans += [(t, t + 4, s0, "build", k), (t + 5, t + 15, s1, "denoise", k),
                  (t + 16, t + 18, s0, "decode", k)]
    for a, b, stage, name, k in sorted(spans, key=lambda x: x[0]):
        w.t = a
        span = stage.span(name, chunk=k, call_id=k)
        span.__enter__()
        w.t = b
        span.__exit__(None, None, None)
        if name == "decode":
            stage.mark("emit", chunk=k, call_id=k)
    w.t = 400.0
    r1.sync(w.ask(r0, 0.05), rounds=3)
    return [r0.trace(), r1.trace()]


def test_a_merged_trace_is_checked_and_explained_by_inference():
    merged = merge_ranks(_ranks())
    rep = check(merged)
    assert rep.ok, [r for r in rep.results if r.status == "broken"]
    e = explain(merged)
    s1 = e.stage("stage1")
    assert s1.parts[0].cause == "starved" and s1.parts[0].target == "q_in"  # from the policy
    assert s1.parts[0].inferred_ms == s1.parts[0].ms and e.inferred_share > 0.5
    assert abs(s1.idle_share - 0.5) < 0.01  # 10 ms busy every 20 ms
    assert e.verdict.category == "dependency"  # the stages take turns: nothing in flight


def test_an_imported_profile_is_checked_and_explained():
    tr = import_profile(generic_events(), parse_map(GENERIC_MAP))
    rep = check(tr)
    assert rep.ok and {r.rule: r.status for r in rep.results}["queue_capacity"] == \
        "not_checked"
    e = explain(tr, warmup=0)
    assert {s.stage for s in e.stages} == {"stage0", "stage1"}
    for s in e.stages:
        assert abs(sum(s.causes.values()) - s.idle_ms) < 1e-6
