"""The SimPy engine: interprets policy programs against a cost model and records a trace.

The event loop only advances time. Each action type is handled by its own ``on_*``
method of :class:`_StageBackend` (a SimPy generator); a :class:`ProgramDriver` hands
each action's result back to its program. When the loop runs out of events before
every program has finished, the run has stalled: :class:`StallError` names each
blocked stage, the action it is blocked on and the state of every queue.

Waiting is targeted: a blocked action registers a *waiter* (its own event and the
condition it waits for). A state change (:meth:`SimEngine.bump`) hands the waiters
registered so far to one dispatch at the current instant, which resumes those whose
condition now holds, in the order they started waiting, and keeps the others waiting
without running them. That is the order in which one broadcast "changed" event would
have resumed them, so traces do not depend on this optimisation (tests/golden).
Likewise a stage that runs one program needs no SimPy resource, and a comm lane is a
FIFO of transfers: both keep the instants at which a resource would have granted.

What a program waited on is recorded: every action that blocks (a Get, a Reserve, a
WaitInput, a WaitChange) leaves a span on its stage's ``wait`` lane from the instant it
blocked to the instant it resumed, named by what it waited for (``get:q_in``,
``slot:q_out``, ``input``, or the WaitChange's own ``on``), so ``pipefill explain``
attributes idle time exactly; metrics never read that lane.

Programs run without SimPy processes: a :class:`_Runner` steps its program inside the
callback of the event it waited for, where a process would have resumed, so the
instants and the order of everything at one instant are a process's. An action that
needs no waiting (Put, Release, Poll, Mark, a Reserve with a free slot...) returns its
result at once; one that waits returns :data:`PENDING` and resumes the runner from the
callback of the event or waiter it registered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import simpy
from simpy.core import NORMAL, URGENT
from simpy.events import Event

from pipefill.sim.engine.contention import DeviceModel
from pipefill.sim.errors import StallError
from pipefill.sim.program.actions import (
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
from pipefill.sim.program.driver import ProgramDriver
from pipefill.sim.program.queues import (
    SlotQueue,
    describe,
    make_queues,
    record_depth,
    snapshot,
    travels_on_lane,
)
from pipefill.sim.scenario.costs import CostTable
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.meta import run_metadata
from pipefill.traces.recorder import NO_TAG, Recorder, Tag
from pipefill.traces.schema import WAIT_LANE, Trace

SimGen = Generator[simpy.Event, Any, Any]
_Queue = SlotQueue[Message]
#: a waiter: the condition it waits for (None: any change) and what resumes it
_Waiter = tuple[Callable[[], bool] | None, Callable[[], None]]
#: an action handler's result when the program resumes later (from a callback)
PENDING: Any = object()

__all__ = ["SimEngine", "StallError", "simulate"]


def _same(msg: Message) -> Message:
    return msg


def _succeed_once(ev: Event) -> None:
    if not ev.triggered:
        ev.succeed()


class _Lane:
    """One sending stage's comm lane: transfers one at a time, in request order."""

    __slots__ = ("queue", "user")

    def __init__(self) -> None:
        self.user: tuple[_Queue, Message] | None = None
        self.queue: deque[tuple[_Queue, Message]] = deque()

    @property
    def busy(self) -> bool:
        return self.user is not None or bool(self.queue)


class SimEngine:
    """One simulated run of ``scenario``'s policy. Use :func:`simulate`."""

    def __init__(self, scenario: Scenario, rec: Recorder | None = None) -> None:
        self.sc = scenario
        run = scenario.run
        self.env = simpy.Environment()
        self.rec = Recorder() if rec is None else rec
        self.costs = CostTable(scenario.costs, run.sessions, run.chunks, run.seed)
        #: computes of stages that share a device slow each other (sim/engine/contention.py)
        self.devices = DeviceModel(self.env, scenario)
        specs = scenario.policy.queues(scenario)
        self.queues: dict[str, _Queue] = make_queues(specs, _same)
        by_src: dict[str, _Lane] = {}
        #: one comm lane per sending stage: its messages travel one at a time, in order
        self.lanes = {s.name: by_src.setdefault(s.src, _Lane()) for s in specs}
        saturated = run.source == "saturated"
        self.inputs = dict.fromkeys(range(run.sessions), run.chunks if saturated else 0)
        #: session -> the stage its inputs arrive at (the policy's hook)
        self.source = {s: scenario.policy.source_stage(scenario, s) for s in self.inputs}
        self.version = 0
        self.waiters: list[_Waiter] = []
        #: a resource only for a stage that several programs share
        self.shared: dict[str, simpy.Resource] = {}
        #: the programs still running (what each is doing is described only for a stall)
        self.running: list[ProgramDriver] = []

    # -- scheduling primitives -----------------------------------------------------
    def soon(self, then: Callable[[Event], None] | None = None, urgent: bool = False) -> Event:
        """An event processed at this instant after those already due (a resource grant,
        a process start when ``urgent``); ``then`` runs when it is processed."""
        ev = Event(self.env)
        ev._ok, ev._value = True, None
        if then is not None:
            ev.callbacks.append(then)
        self.env.schedule(ev, URGENT if urgent else NORMAL)
        return ev

    def wait(self, until: Callable[[], bool] | None, then: Callable[[], None]) -> None:
        """Call ``then`` at the first state change after which ``until()`` holds (any
        change when None), inside that change's dispatch."""
        self.waiters.append((until, then))

    # -- shared state ------------------------------------------------------------
    def bump(self) -> None:
        """Publish a state change: the waiters so far are dispatched at this instant."""
        self.version += 1
        if self.waiters:
            batch, self.waiters = self.waiters, []
            self.soon(lambda _: self._dispatch(batch))

    def _dispatch(self, batch: list[_Waiter]) -> None:
        for until, then in batch:
            if until is None or until():
                then()
            else:
                self.waiters.append((until, then))

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
                self.rec.mark("input", self.source[s], Tag(s, k), float(self.env.now))
            self.bump()

    def transport(self, q: _Queue, msg: Message) -> None:
        """Queue a transfer on the sender's lane (as a process starting now would)."""
        lane = self.lanes[q.spec.name]
        self.soon(lambda _: self._request(lane, (q, msg)), urgent=True)

    def _request(self, lane: _Lane, job: tuple[_Queue, Message]) -> None:
        lane.queue.append(job)
        self._grant(lane)

    def _grant(self, lane: _Lane) -> None:
        if lane.user is None and lane.queue:
            job = lane.user = lane.queue.popleft()
            self.soon(lambda _: self._start(lane, job))

    def _start(self, lane: _Lane, job: tuple[_Queue, Message]) -> None:
        start = float(self.env.now)
        ev = self.env.timeout(self.sc.transport.time_ms(job[1].nbytes))
        ev.callbacks.append(lambda _: self._finish(lane, job, start))

    def _finish(self, lane: _Lane, job: tuple[_Queue, Message], start: float) -> None:
        self.deliver(job[0], job[1], start)
        lane.user = None
        self.soon(lambda _: self._grant(lane))

    def deliver(self, q: _Queue, msg: Message, sent_at: float) -> None:
        self.rec.span("send", q.spec.src, "comm", msg.tag, sent_at, float(self.env.now),
                      value=float(msg.nbytes))
        self.arrive(q, msg)

    def arrive(self, q: _Queue, msg: Message) -> None:
        """The message becomes visible to Get (a local buffer skips transport)."""
        q.arrive(msg)
        self.bump()

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
        programs = self.sc.policy.programs(self.sc)
        stages = [sp.stage for sp in programs]
        self.shared = {s: simpy.Resource(self.env, 1) for s in stages if stages.count(s) > 1}
        for sp in programs:
            runner = _Runner(self, sp)
            self.soon(runner.start, urgent=True)  # where a process would have started
        self.env.run()
        if self.running:
            blocked = ", ".join(sorted(f"{d.stage} blocked at '{d.describe()}'"
                                       for d in self.running))
            raise StallError(f"stall at t={self.env.now:.3f} ms: {blocked}; {self._queue_state()}")
        return self.metadata()

    def metadata(self) -> dict[str, Any]:
        return run_metadata(self.sc, source="sim", backend="simpy")


class _Runner:
    """Steps one stage's program and interprets its actions (one ``on_*`` per type).

    Contract: :meth:`resume` runs the program until an action must wait; a handler
    either returns the action's result or :data:`PENDING`, having arranged that a
    callback calls :meth:`resume` with the result when the wait ends. Handlers that
    are SimPy generators (a compute on a shared stage or device) are followed as a
    process would follow them (:meth:`_follow`).
    """

    __slots__ = ("device", "driver", "engine", "gap", "hosted", "shared", "stage")

    def __init__(self, engine: SimEngine, sp: StageProgram) -> None:
        self.engine = engine
        self.stage = sp.stage
        self.driver = ProgramDriver(sp, engine._now, engine._livelock_context)
        self.shared: simpy.Resource | None = None
        self.device = sp.stage in engine.devices.of
        #: the stage's dispatch gap before each compute (host time; device work only on
        #: a shared device that hosts it, see ``hosted``)
        self.gap = engine.sc.dispatch_ms(sp.stage)
        #: the gap runs on the stage's shared device (a CPU core runs the Python too)
        self.hosted = sp.stage in engine.devices.hosted

    def start(self, _ev: Event) -> None:
        self.shared = self.engine.shared.get(self.stage)
        self.engine.running.append(self.driver)
        self.resume(None)

    def resume(self, result: Any) -> None:
        driver = self.driver
        while (action := driver.next(result)) is not None:
            result = action.accept(self)
            if result is PENDING:
                return
        self.engine.running.remove(driver)

    def _follow(self, gen: SimGen, value: Any = None) -> None:
        """Run a generator handler: at each event it yields, continue from its callback
        (at once if it was processed already, as a process does)."""
        while True:
            try:
                ev = gen.send(value)
            except StopIteration as stop:
                self.resume(stop.value)
                return
            if ev.callbacks is not None:
                ev.callbacks.append(lambda done: self._follow(gen, done._value))
                return
            value = ev._value

    # -- compute -------------------------------------------------------------------
    def on_compute(self, a: Compute) -> Any:
        engine = self.engine
        dur = engine.costs.duration(a)
        if self.shared is not None or self.device:
            self._follow(self._compute_shared(a, dur))
        else:
            engine.soon(lambda _: self._compute_start(a, dur))  # when a resource would grant
        return PENDING

    def _compute_start(self, a: Compute, dur: float) -> None:
        if self.gap > 0:  # the stage's launch and bookkeeping, before the span
            self.engine.env.timeout(self.gap).callbacks.append(lambda _: self._run(a, dur))
        else:
            self._run(a, dur)

    def _run(self, a: Compute, dur: float) -> None:
        start = float(self.engine.env.now)
        self.engine.env.timeout(dur).callbacks.append(lambda _: self._computed(a, start))

    def _computed(self, a: Compute, start: float) -> None:
        self._record(a, start)
        self.resume(None)

    def _record(self, a: Compute, start: float) -> None:
        engine = self.engine
        end = float(engine.env.now)
        for tag in a.items:
            engine.rec.span(a.phase, self.stage, "compute", tag, start, end)

    def _compute_shared(self, a: Compute, dur: float) -> SimGen:
        engine = self.engine
        if self.shared is None:
            yield engine.soon()
            yield from self._gap()
            start = float(engine.env.now)
            yield from engine.devices.work(self.stage, dur)
        else:
            with self.shared.request() as req:
                yield req
                yield from self._gap()
                start = float(engine.env.now)
                yield from engine.devices.work(self.stage, dur)
        self._record(a, start)
        return None

    def _gap(self) -> SimGen:
        if self.gap <= 0:
            return
        if self.hosted:
            yield from self.engine.devices.work(self.stage, self.gap)
        else:
            yield self.engine.env.timeout(self.gap)

    # -- queues --------------------------------------------------------------------
    # -- what a blocked program waited on: the wait lane ----------------------------
    def _waited(self, name: str, tag: Tag, since: float) -> None:
        """Record a wait span from ``since`` to now (none when no time passed)."""
        now = float(self.engine.env.now)
        if now > since:
            self.engine.rec.span(name, self.stage, WAIT_LANE, tag, since, now)

    def on_reserve(self, a: Reserve) -> Any:
        q = self.engine.queues[a.queue]
        if q.free > 0:
            return self._reserved(q)
        since = float(self.engine.env.now)

        def granted() -> None:
            self._waited(f"slot:{a.queue}", NO_TAG, since)
            self.resume(self._reserved(q))

        self.engine.wait(lambda: q.free > 0, granted)
        return PENDING

    def _reserved(self, q: _Queue) -> Any:
        """Take the free slot; the action's result (None)."""
        q.take_slot()
        self.engine.count(q)
        self.engine.bump()
        return None

    def on_put(self, a: Put) -> Any:
        engine = self.engine
        q = engine.queues[a.queue]
        q.send(a.message)
        engine.count(q)
        transfer_ms = engine.sc.transport.time_ms(a.message.nbytes)
        if travels_on_lane(q.spec, transfer_ms, engine.lanes[a.queue].busy):
            engine.transport(q, a.message)
        elif not q.spec.transport:
            engine.arrive(q, a.message)
        else:
            # a free link delivers within the same instant, before anyone can react to
            # the producer's other state changes (ties would otherwise hinge on event order)
            engine.deliver(q, a.message, float(engine.env.now))
        return None

    def on_get(self, a: Get) -> Any:
        q = self.engine.queues[a.queue]
        if q.items:
            return self._take(q)
        since = float(self.engine.env.now)

        def arrived() -> None:
            msg = self._take(q)
            self._waited(a.wait or f"get:{a.queue}", msg.tag, since)
            self.resume(msg)

        self.engine.wait(lambda: bool(q.items), arrived)
        return PENDING

    def _take(self, q: _Queue) -> Message:
        msg = q.take()
        self.engine.bump()
        return msg

    def on_release(self, a: Release) -> Any:
        engine = self.engine
        q = engine.queues[a.queue]
        if not q.release():
            raise StallError(f"{self.stage}: release of empty queue {q.describe()}")
        engine.count(q)
        engine.bump()
        return None

    def on_flush(self, a: Flush) -> Any:
        engine = self.engine
        q = engine.queues[a.queue]
        flushed = q.flush()
        engine.count(q)
        engine.bump()
        return flushed

    # -- state and time ------------------------------------------------------------
    def on_poll(self, a: Poll) -> Any:
        return self.engine.view()

    def on_wait_change(self, a: WaitChange) -> Any:
        engine = self.engine
        if engine.version != a.version:
            return None
        since = float(engine.env.now)

        def changed() -> None:
            self._waited(a.on or "change", a.tag, since)
            self.resume(None)

        if a.timeout_ms is None:
            engine.wait(None, changed)
            return PENDING
        # whichever comes first, the change or the timeout, resumes it one grant later
        # (as a SimPy AnyOf condition would)
        done = engine.env.event()
        engine.wait(None, lambda: _succeed_once(done))
        timer = engine.env.timeout(max(0.0, a.timeout_ms))
        timer.callbacks.append(lambda _: _succeed_once(done))
        done.callbacks.append(lambda _: changed())
        return PENDING

    def on_wait_input(self, a: WaitInput) -> Any:
        inputs, tag = self.engine.inputs, a.tag
        if inputs[tag.session] > tag.chunk:
            return self._input(tag)
        since = float(self.engine.env.now)

        def came() -> None:
            self._waited("input", tag, since)
            self.resume(self._input(tag))

        self.engine.wait(lambda: inputs[tag.session] > tag.chunk, came)
        return PENDING

    def _input(self, tag: Tag) -> Any:
        """The input is there (a saturated source records it now); the result (None)."""
        engine = self.engine
        if engine.sc.run.source == "saturated":
            engine.rec.mark("input", self.stage, tag, float(engine.env.now))
        return None

    def on_mark(self, a: Mark) -> Any:
        engine = self.engine
        engine.rec.mark(a.name, self.stage, a.tag, float(engine.env.now))
        return None


def simulate(scenario: Scenario) -> Trace:
    """Run the scenario's policy on SimPy and return its trace (deterministic per seed)."""
    return SimEngine(scenario).run()
