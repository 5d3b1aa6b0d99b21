"""The SimPy engine's waits, hand-checked: targeted wake-ups, timeouts, shared stages."""

from __future__ import annotations

from typing import ClassVar

from pipefill.sim.engine.core import simulate
from pipefill.sim.policies.base import Policy
from pipefill.sim.program.actions import (
    INFER,
    Compute,
    Get,
    Mark,
    Message,
    Poll,
    Program,
    Put,
    QueueSpec,
    Reserve,
    StageProgram,
    WaitChange,
)
from pipefill.traces.recorder import Tag
from tests.helpers.broken_policies import scenario_with

COSTS = {"build": 2.0, "denoise": 3.0, "decode": 1.0}


class _Custom(Policy):
    name: ClassVar[str] = "custom"

    def queues(self, sc):
        return [QueueSpec("q", 1, "stage1", "stage0")]


def _marks(trace) -> dict[tuple[str, int], float]:
    ev = trace.events[trace.events["kind"] == "mark"]
    return {(n, int(c)): float(t) for n, c, t in zip(ev["name"], ev["chunk"], ev["start_ms"],
                                                     strict=True)}


class _GetAfterWork(_Custom):
    """stage0 waits for q while stage1 changes other state twice before it puts."""

    def programs(self, sc):
        def stage0() -> Program:
            msg = yield Get("q")
            yield Mark("emit", msg.tag)

        def stage1() -> Program:
            yield Compute("denoise", Tag(0, 0))   # 0 -> 3
            yield Reserve("q")                    # a change q's waiter must sleep through
            yield Compute("denoise", Tag(0, 1))   # 3 -> 6
            yield Put("q", Message(INFER, Tag(0, 7)))

        return [StageProgram("stage0", stage0()), StageProgram("stage1", stage1())]


def test_a_getter_wakes_when_its_item_arrives_not_at_other_changes():
    trace = simulate(scenario_with(_GetAfterWork(), COSTS))
    assert _marks(trace)[("emit", 7)] == 6.0


class _Window(_Custom):
    """stage0 waits for a change at most 5 ms: once with none coming, once with one at 2."""

    def programs(self, sc):
        def stage0() -> Program:
            view = yield Poll()
            yield WaitChange(view.version, timeout_ms=5.0)  # nothing changes: 5
            yield Mark("emit", Tag(0, 1))
            view = yield Poll()
            yield WaitChange(view.version, timeout_ms=5.0)  # stage1 reserves at 7
            yield Mark("emit", Tag(0, 2))

        def stage1() -> Program:
            yield Compute("denoise", Tag(0, 0), share=7 / 3)  # 0 -> 7
            yield Reserve("q")

        return [StageProgram("stage0", stage0()), StageProgram("stage1", stage1())]


def test_a_batching_window_ends_at_its_timeout_or_at_the_first_change():
    marks = _marks(simulate(scenario_with(_Window(), COSTS)))
    assert (marks[("emit", 1)], marks[("emit", 2)]) == (5.0, 7.0)


class _SharedStage(_Custom):
    """Two programs on stage0: its computes never overlap (the stage runs one at a time)."""

    def programs(self, sc):
        def worker(chunks: list[int]) -> Program:
            for k in chunks:
                yield Compute("build", Tag(0, k))
                yield Mark("emit", Tag(0, k))

        return [StageProgram("stage0", worker([0, 2])), StageProgram("stage0", worker([1, 3]))]


def test_programs_sharing_a_stage_take_turns():
    trace = simulate(scenario_with(_SharedStage(), COSTS, chunks=4))
    sp = trace.spans.sort_values("start_ms")
    assert list(zip(sp["chunk"], sp["start_ms"], sp["end_ms"], strict=True)) == [
        (0, 0.0, 2.0), (1, 2.0, 4.0), (2, 4.0, 6.0), (3, 6.0, 8.0)]


# -- the wait lane: what a blocked program waited on, and for how long ------------------
def _waits(trace) -> list[tuple[str, str, int, float, float]]:
    w = trace.waits
    return list(zip(w["name"], w["stage"], w["chunk"], w["start_ms"], w["end_ms"], strict=True))


def test_a_blocked_get_leaves_a_wait_span_until_its_item_arrives():
    trace = simulate(scenario_with(_GetAfterWork(), COSTS))
    assert _waits(trace) == [("get:q", "stage0", 7, 0.0, 6.0)]


def test_a_change_wait_is_named_by_what_the_program_said_it_waits_for():
    class _Named(_Custom):
        def programs(self, sc):
            def stage0() -> Program:
                view = yield Poll()
                yield WaitChange(view.version, on="slot:q|input", tag=Tag(0, 3))
                yield Mark("emit", Tag(0, 1))

            def stage1() -> Program:
                yield Compute("denoise", Tag(0, 0))   # 0 -> 3
                yield Reserve("q")

            return [StageProgram("stage0", stage0()), StageProgram("stage1", stage1())]

    assert _waits(simulate(scenario_with(_Named(), COSTS))) == [
        ("slot:q|input", "stage0", 3, 0.0, 3.0)]


def test_metrics_ignore_the_wait_lane():
    from pipefill.traces.metrics import compute_metrics
    from pipefill.traces.schema import Trace
    from tests.helpers.scenarios import make_scenario

    # per-session fronts blocked on their q_in slot: waits of stage0.1 tagged session 0
    multi = make_scenario({"name": "multi_session", "stage0": "per_session", "d_in": 1,
                           "lead": 2}, {"build": 1.0, "denoise": 10.0, "decode": 2.0},
                          chunks=8, sessions=3)
    for trace in (simulate(scenario_with(_GetAfterWork(), COSTS)), simulate(multi)):
        bare = Trace(trace.events[trace.events["lane"] != "wait"], trace.meta)
        assert len(trace.waits) and compute_metrics(trace) == compute_metrics(bare)
