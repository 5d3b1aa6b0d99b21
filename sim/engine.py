"""The SimPy engine: interprets policy programs against a cost model and records a trace.

The event loop only advances time. Each action type is handled by its own ``on_*``
method of :class:`_StageBackend` (a SimPy generator); the driver just hands each
action's result back to its program. When the loop runs out of events before every
program has finished, the run has stalled: :class:`StallError` names each blocked
stage, the action it is blocked on and the state of every queue.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from pipefill.sim.actions import (
    Compute,
    Flush,
    Get,
    Mark,
    Message,
    Poll,
    Put,
    Release,
    Reserve,
    StageProgram,
    StateView,
    WaitChange,
    WaitInput,
)
from pipefill.sim.costs import CostTable
from pipefill.sim.driver import ProgramDriver
from pipefill.sim.errors import StallError
from pipefill.sim.queues import (
    SlotQueue,
    describe,
    make_queues,
    record_depth,
    snapshot,
    travels_on_lane,
)
from pipefill.sim.scenario import Scenario
from pipefill.traces.meta import run_metadata
from pipefill.traces.recorder import Recorder, Tag
from pipefill.traces.schema import Trace

SimGen = Generator[simpy.Event, Any, Any]


_Queue = SlotQueue[Message]


def _same(msg: Message) -> Message:
    return msg


class SimEngine:
    """One simulated run of ``scenario``'s policy. Use :func:`simulate`."""

    def __init__(self, scenario: Scenario, rec: Recorder | None = None) -> None:
        self.sc = scenario
        run = scenario.run
        self.env = simpy.Environment()
        self.rec = Recorder() if rec is None else rec
        self.costs = CostTable(scenario.costs, run.sessions, run.chunks, run.seed)
        self.stage_res = {s: simpy.Resource(self.env, 1) for s in scenario.policy.stages(scenario)}
        specs = scenario.policy.queues(scenario)
        self.queues: dict[str, _Queue] = make_queues(specs, _same)
        by_src: dict[str, simpy.Resource] = {}
        #: one comm lane per sending stage: its messages travel one at a time, in order
        self.lanes = {s.name: by_src.setdefault(s.src, simpy.Resource(self.env, 1))
                      for s in specs}
        saturated = run.source == "saturated"
        self.inputs = dict.fromkeys(range(run.sessions), run.chunks if saturated else 0)
        self.version = 0
        self.changed = self.env.event()
        #: the programs still running (what each is doing is described only for a stall)
        self.running: list[ProgramDriver] = []

    # -- shared state ------------------------------------------------------------
    def bump(self) -> None:
        """Publish a state change: wakes every WaitChange and blocked Reserve/Get."""
        self.version += 1
        old, self.changed = self.changed, self.env.event()
        old.succeed()

    def view(self) -> StateView:
        return snapshot(self.queues, self.version, float(self.env.now), self.inputs)

    def count(self, q: _Queue) -> None:
        record_depth(self.rec, self.queues, q, float(self.env.now))

    # -- processes ---------------------------------------------------------------
    def _feed_inputs(self) -> SimGen:
        """Realtime source: input k of every session arrives at its frame time."""
        run = self.sc.run
        for k in range(run.chunks):
            yield self.env.timeout(max(0.0, run.input_time_ms(k) - float(self.env.now)))
            for s in self.inputs:
                self.inputs[s] = k + 1
                self.rec.mark("input", "stage0", Tag(s, k), float(self.env.now))
            self.bump()

    def transport(self, q: _Queue, msg: Message) -> SimGen:
        with self.lanes[q.spec.name].request() as req:
            yield req
            start = float(self.env.now)
            yield self.env.timeout(self.sc.transport.time_ms(msg.nbytes))
            self.deliver(q, msg, start)

    def deliver(self, q: _Queue, msg: Message, sent_at: float) -> None:
        self.rec.span("send", q.spec.src, "comm", msg.tag, sent_at, float(self.env.now),
                      value=float(msg.nbytes))
        self.arrive(q, msg)

    def arrive(self, q: _Queue, msg: Message) -> None:
        """The message becomes visible to Get (a local buffer skips transport)."""
        q.arrive(msg)
        self.bump()

    def _drive(self, sp: StageProgram) -> SimGen:
        backend = _StageBackend(self, sp.stage)
        driver = ProgramDriver(sp, self._now, self._livelock_context)
        self.running.append(driver)
        result: Any = None
        while (action := driver.next(result)) is not None:
            result = yield from action.accept(backend)
        self.running.remove(driver)

    def _now(self) -> float:
        return float(self.env.now)

    def _livelock_context(self) -> str:
        return f" t={self.env.now:.3f} ms; {self._queue_state()}"

    def _queue_state(self) -> str:
        return describe(self.queues)

    def run(self) -> Trace:
        return self.rec.trace(self.execute())

    def execute(self) -> dict[str, Any]:
        """Run to the end (every row to the recorder); returns the run's metadata."""
        if self.sc.run.source == "realtime":
            self.env.process(self._feed_inputs())
        for sp in self.sc.policy.programs(self.sc):
            self.env.process(self._drive(sp))
        self.env.run()
        if self.running:
            blocked = ", ".join(sorted(f"{d.stage} blocked at '{d.describe()}'"
                                       for d in self.running))
            raise StallError(f"stall at t={self.env.now:.3f} ms: {blocked}; {self._queue_state()}")
        return self.metadata()

    def metadata(self) -> dict[str, Any]:
        return run_metadata(self.sc, source="sim", backend="simpy")


class _StageBackend:
    """Interprets actions for one stage's program; each handler is a SimPy generator."""

    def __init__(self, engine: SimEngine, stage: str) -> None:
        self.engine = engine
        self.stage = stage

    def on_compute(self, a: Compute) -> SimGen:
        engine = self.engine
        dur = engine.costs.duration(a)
        with engine.stage_res[self.stage].request() as req:
            yield req
            start = float(engine.env.now)
            yield engine.env.timeout(dur)
            for tag in a.items:
                engine.rec.span(a.phase, self.stage, "compute", tag, start, float(engine.env.now))
        return None

    def on_reserve(self, a: Reserve) -> SimGen:
        q = self.engine.queues[a.queue]
        while q.free <= 0:
            yield self.engine.changed
        q.take_slot()
        self.engine.count(q)
        self.engine.bump()

    def on_put(self, a: Put) -> SimGen:
        q = self.engine.queues[a.queue]
        q.send(a.message)
        self.engine.count(q)
        lane = self.engine.lanes[a.queue]
        transfer_ms = self.engine.sc.transport.time_ms(a.message.nbytes)
        if travels_on_lane(q.spec, transfer_ms, bool(lane.count or lane.queue)):
            self.engine.env.process(self.engine.transport(q, a.message))
        elif not q.spec.transport:
            self.engine.arrive(q, a.message)
        else:
            # a free link delivers within the same instant, before anyone can react to
            # the producer's other state changes (ties would otherwise hinge on event order)
            self.engine.deliver(q, a.message, float(self.engine.env.now))
        return None
        yield  # makes this a generator

    def on_get(self, a: Get) -> SimGen:
        q = self.engine.queues[a.queue]
        while not q.items:
            yield self.engine.changed
        msg = q.take()
        self.engine.bump()
        return msg

    def on_release(self, a: Release) -> SimGen:
        q = self.engine.queues[a.queue]
        if not q.release():
            raise StallError(f"{self.stage}: release of empty queue {q.describe()}")
        self.engine.count(q)
        self.engine.bump()
        return None
        yield

    def on_flush(self, a: Flush) -> SimGen:
        q = self.engine.queues[a.queue]
        flushed = q.flush()
        self.engine.count(q)
        self.engine.bump()
        return flushed
        yield

    def on_poll(self, a: Poll) -> SimGen:
        return self.engine.view()
        yield

    def on_wait_change(self, a: WaitChange) -> SimGen:
        if self.engine.version == a.version:
            if a.timeout_ms is None:
                yield self.engine.changed
            else:
                yield self.engine.changed | self.engine.env.timeout(max(0.0, a.timeout_ms))
        return None

    def on_wait_input(self, a: WaitInput) -> SimGen:
        engine = self.engine
        while engine.inputs[a.tag.session] <= a.tag.chunk:
            yield engine.changed
        if engine.sc.run.source == "saturated":
            engine.rec.mark("input", self.stage, a.tag, float(engine.env.now))
        return None

    def on_mark(self, a: Mark) -> SimGen:
        self.engine.rec.mark(a.name, self.stage, a.tag, float(self.engine.env.now))
        return None
        yield


def simulate(scenario: Scenario) -> Trace:
    """Run the scenario's policy on SimPy and return its trace (deterministic per seed)."""
    return SimEngine(scenario).run()
