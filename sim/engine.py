"""The SimPy engine: interprets policy programs against a cost model and records a trace.

The event loop only advances time. Each action type is handled by its own ``on_*``
method of :class:`_StageBackend` (a SimPy generator); the driver just hands each
action's result back to its program. When the loop runs out of events before every
program has finished, the run has stalled: :class:`StallError` names each blocked
stage, the action it is blocked on and the state of every queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from sim.actions import (
    Compute,
    Flush,
    Get,
    Mark,
    Message,
    Poll,
    Put,
    QueueSpec,
    Release,
    Reserve,
    StageProgram,
    StateView,
    WaitChange,
    WaitInput,
)
from sim.costs import CostTable
from sim.scenario import Scenario
from traces.meta import run_metadata
from traces.recorder import Recorder, Tag
from traces.schema import Trace

SimGen = Generator[simpy.Event, Any, Any]
#: actions a program may take at one instant before we call it a livelock
SPIN_LIMIT = 100_000


class StallError(RuntimeError):
    """A schedule cannot make progress (deadlock or livelock); the message says where."""


@dataclass
class _Queue:
    """A bounded queue whose slots are held from Reserve until Release.

    Invariant: ``0 <= held <= spec.capacity`` and ``len(items) <= held``.
    """

    spec: QueueSpec
    lane: simpy.Resource
    held: int = 0
    items: deque[Message] = field(default_factory=deque)
    unreleased: deque[Message] = field(default_factory=deque)
    in_transit: int = 0

    def describe(self) -> str:
        return (f"{self.spec.name}: {self.held}/{self.spec.capacity} slots held, "
                f"{len(self.items)} arrived, {self.in_transit} in transit")


class SimEngine:
    """One simulated run of ``scenario``'s policy. Use :func:`simulate`."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        run = scenario.run
        self.env = simpy.Environment()
        self.rec = Recorder()
        self.costs = CostTable(scenario.costs, run.sessions, run.chunks, run.seed)
        self.stage_res = {s: simpy.Resource(self.env, 1) for s in scenario.policy.stages(scenario)}
        lanes: dict[str, simpy.Resource] = {}
        self.queues: dict[str, _Queue] = {}
        for spec in scenario.policy.queues(scenario):
            lane = lanes.setdefault(spec.src, simpy.Resource(self.env, 1))
            self.queues[spec.name] = _Queue(spec, lane)
        saturated = run.source == "saturated"
        self.inputs = dict.fromkeys(range(run.sessions), run.chunks if saturated else 0)
        self.version = 0
        self.changed = self.env.event()
        self.current: dict[str, str] = {}

    # -- shared state ------------------------------------------------------------
    def bump(self) -> None:
        """Publish a state change: wakes every WaitChange and blocked Reserve/Get."""
        self.version += 1
        old, self.changed = self.changed, self.env.event()
        old.succeed()

    def view(self) -> StateView:
        return StateView(
            version=self.version,
            now_ms=float(self.env.now),
            free={n: q.spec.capacity - q.held for n, q in self.queues.items()},
            ready={n: len(q.items) for n, q in self.queues.items()},
            inputs=dict(self.inputs),
        )

    def count(self, q: _Queue) -> None:
        now = float(self.env.now)
        self.rec.counter(q.spec.name, q.spec.dst, now, q.held)
        self.rec.counter("bytes_in_flight", "all", now, self.bytes_in_flight())

    def bytes_in_flight(self) -> int:
        return sum(m.nbytes for q in self.queues.values() for m in q.unreleased)

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
        with q.lane.request() as req:
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
        q.in_transit -= 1
        q.items.append(msg)
        self.bump()

    def _drive(self, sp: StageProgram) -> SimGen:
        backend = _StageBackend(self, sp.stage)
        result: Any = None
        spins, last_now = 0, -1.0
        while True:
            try:
                action = sp.program.send(result)
            except StopIteration:
                self.current.pop(sp.stage, None)
                return
            spins = spins + 1 if self.env.now == last_now else 0
            last_now = float(self.env.now)
            if spins > SPIN_LIMIT:
                raise StallError(f"{sp.stage}: livelock at {action.describe()} "
                                 f"t={self.env.now:.3f} ms; {self._queue_state()}")
            self.current[sp.stage] = action.describe()
            result = yield from action.accept(backend)

    def _queue_state(self) -> str:
        return "; ".join(q.describe() for q in self.queues.values())

    def run(self) -> Trace:
        if self.sc.run.source == "realtime":
            self.env.process(self._feed_inputs())
        for sp in self.sc.policy.programs(self.sc):
            self.env.process(self._drive(sp))
        self.env.run()
        if self.current:
            blocked = ", ".join(f"{s} blocked at '{a}'" for s, a in sorted(self.current.items()))
            raise StallError(f"stall at t={self.env.now:.3f} ms: {blocked}; {self._queue_state()}")
        return self.rec.trace(run_metadata(self.sc, source="sim", backend="simpy"))


class _StageBackend:
    """Interprets actions for one stage's program; each handler is a SimPy generator."""

    def __init__(self, engine: SimEngine, stage: str) -> None:
        self.e = engine
        self.stage = stage

    def on_compute(self, a: Compute) -> SimGen:
        e = self.e
        dur = e.costs.duration(a)
        with e.stage_res[self.stage].request() as req:
            yield req
            start = float(e.env.now)
            yield e.env.timeout(dur)
            for tag in a.items:
                e.rec.span(a.phase, self.stage, "compute", tag, start, float(e.env.now))
        return None

    def on_reserve(self, a: Reserve) -> SimGen:
        q = self.e.queues[a.queue]
        while q.held >= q.spec.capacity:
            yield self.e.changed
        q.held += 1
        self.e.count(q)
        self.e.bump()

    def on_put(self, a: Put) -> SimGen:
        q = self.e.queues[a.queue]
        q.in_transit += 1
        q.unreleased.append(a.message)
        self.e.count(q)
        if not q.spec.transport:
            self.e.arrive(q, a.message)
        elif self.e.sc.transport.time_ms(a.message.nbytes) > 0 or q.lane.count or q.lane.queue:
            # a link is FIFO: a free message still waits behind one in transit
            self.e.env.process(self.e.transport(q, a.message))
        else:
            # a free link delivers within the same instant, before anyone can react to
            # the producer's other state changes (ties would otherwise hinge on event order)
            self.e.deliver(q, a.message, float(self.e.env.now))
        return None
        yield  # makes this a generator

    def on_get(self, a: Get) -> SimGen:
        q = self.e.queues[a.queue]
        while not q.items:
            yield self.e.changed
        msg = q.items.popleft()
        self.e.bump()
        return msg

    def on_release(self, a: Release) -> SimGen:
        q = self.e.queues[a.queue]
        if q.held <= 0:
            raise StallError(f"{self.stage}: release of empty queue {q.describe()}")
        q.held -= 1
        if q.unreleased:
            q.unreleased.popleft()
        self.e.count(q)
        self.e.bump()
        return None
        yield

    def on_flush(self, a: Flush) -> SimGen:
        q = self.e.queues[a.queue]
        flushed = list(q.items)
        q.items.clear()
        q.held -= len(flushed)
        gone = {id(m) for m in flushed}
        q.unreleased = deque(m for m in q.unreleased if id(m) not in gone)
        self.e.count(q)
        self.e.bump()
        return flushed
        yield

    def on_poll(self, a: Poll) -> SimGen:
        return self.e.view()
        yield

    def on_wait_change(self, a: WaitChange) -> SimGen:
        if self.e.version == a.version:
            if a.timeout_ms is None:
                yield self.e.changed
            else:
                yield self.e.changed | self.e.env.timeout(max(0.0, a.timeout_ms))
        return None

    def on_wait_input(self, a: WaitInput) -> SimGen:
        e = self.e
        while e.inputs[a.tag.session] <= a.tag.chunk:
            yield e.changed
        if e.sc.run.source == "saturated":
            e.rec.mark("input", self.stage, a.tag, float(e.env.now))
        return None

    def on_mark(self, a: Mark) -> SimGen:
        self.e.rec.mark(a.name, self.stage, a.tag, float(self.e.env.now))
        return None
        yield


def simulate(scenario: Scenario) -> Trace:
    """Run the scenario's policy on SimPy and return its trace (deterministic per seed)."""
    return SimEngine(scenario).run()
