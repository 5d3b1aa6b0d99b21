"""How the SimPy engine steps one stage's program: one ``on_*`` handler per action type.

Programs run without SimPy processes: a :class:`Runner` steps its program inside the
callback of the event it waited for, where a process would have resumed, so the
instants and the order of everything at one instant are a process's. An action that
needs no waiting (Put, Release, Poll, Mark, a Reserve with a free slot...) returns its
result at once; one that waits returns :data:`PENDING` and resumes the runner from the
callback of the event or waiter it registered (:meth:`SimEngine.wait`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import simpy
from simpy.events import Event

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
    WaitChange,
    WaitInput,
)
from pipefill.sim.program.driver import ProgramDriver
from pipefill.sim.program.queues import SlotQueue, travels_on_lane
from pipefill.traces.recorder import NO_TAG, Tag
from pipefill.traces.schema import WAIT_LANE

if TYPE_CHECKING:
    from pipefill.sim.engine.core import SimEngine

SimGen = Generator[simpy.Event, Any, Any]
_Queue = SlotQueue[Message]
#: an action handler's result when the program resumes later (from a callback)
PENDING: Any = object()


def _succeed_once(ev: Event) -> None:
    if not ev.triggered:
        ev.succeed()


class Runner:
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

    # -- what a blocked program waited on: the wait lane ----------------------------
    def _waited(self, name: str, tag: Tag, since: float) -> None:
        """Record a wait span from ``since`` to now (none when no time passed)."""
        now = float(self.engine.env.now)
        if now > since:
            self.engine.rec.span(name, self.stage, WAIT_LANE, tag, since, now)

    # -- queues --------------------------------------------------------------------
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
        if travels_on_lane(q.spec, transfer_ms, engine.lanes.busy(a.queue)):
            engine.lanes.send(q, a.message)
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
        if a.name == "emit" and a.tag.session == 0:
            engine.emitted += 1
        return None
