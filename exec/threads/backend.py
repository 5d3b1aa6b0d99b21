"""The threads backend: one worker thread per StageProgram, blocking action handlers.

:class:`StageBackend` implements the :class:`pipefill.sim.program.actions.Backend`
protocol the SimPy engine implements, but each handler blocks until its action is done
and returns the result directly. :func:`drive` is the worker loop: it sends results back into the
policy's own program, exactly like the engine's driver, so no policy logic lives here.
A worker that raises records the failure (stage, action, chunk, epoch, queues) and
aborts the run; the others stop at their next wait or action (crash-only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipefill.exec.errors import Aborted
from pipefill.exec.kernels.registry import Kernels, prepare
from pipefill.exec.threads.comm_lane import CommLane
from pipefill.exec.threads.runtime import Runtime
from pipefill.exec.threads.state import QueuedMessage, SharedState, StallDetected
from pipefill.exec.threads.trust import StageUsage
from pipefill.sim.program.actions import (
    Action,
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
from pipefill.sim.program.queues import travels_on_lane
from pipefill.sim.scenario.model import Transport
from pipefill.traces.recorder import NO_TAG, Recorder, Tag
from pipefill.traces.schema import WAIT_LANE

Progress = Callable[[int, int], None]


@dataclass
class RunContext:
    """Everything the workers of one run share. ``failure`` is the first error, if any."""

    state: SharedState
    runtime: Runtime
    kernels: dict[str, Kernels]
    rec: Recorder
    transport: Transport
    saturated: bool
    lanes: dict[str, CommLane] = field(default_factory=dict)
    progress: Progress | None = None
    total: int = 0
    emitted: int = 0
    failure: str | None = None
    stage_locks: dict[str, threading.Lock] = field(default_factory=dict)
    #: workers warm up in their own thread, meet here, then wait for time zero (``go``)
    ready: threading.Barrier | None = None
    go: threading.Event = field(default_factory=threading.Event)
    #: CPU time vs wall time of each stage's compute spans (exec/threads/trust.py)
    usage: StageUsage = field(default_factory=StageUsage)
    _fail_lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, message: str) -> None:
        """Record the first failure and abort every wait (later failures are echoes)."""
        with self._fail_lock:
            if self.failure is None:
                self.failure = message
        self.state.abort()

    def lock_of(self, stage: str) -> threading.Lock:
        return self.stage_locks.setdefault(stage, threading.Lock())


class StageBackend:
    """Blocking handlers for one program on ``stage`` (``who`` names the worker).

    Contract: a handler returns when its action is complete with the same result the
    SimPy handler gives (a Message for Get, the flushed messages for Flush, a StateView
    for Poll, the kernel's output for Compute) and raises on abort, stall or timeout.
    """

    def __init__(self, run: RunContext, stage: str, who: str) -> None:
        self.run, self.stage, self.who = run, stage, who
        self.state = run.state
        self.computes = 0  # finished Computes: with the state version, this worker's progress

    def on_compute(self, a: Compute) -> Any:
        run, lock = self.run, self.run.lock_of(self.stage)
        # several programs may share a stage: it still runs one thing at a time
        if not lock.acquire(timeout=self.state.timeout_s):
            raise StallDetected(f"{self.stage} stayed busy for {self.state.timeout_s:g} s")
        try:
            token, cpu0 = run.runtime.begin(self.stage), time.thread_time()
            out = run.kernels[self.stage].run(a)
            start, end = run.runtime.end(self.stage, token)
            run.usage.add(self.stage, (time.thread_time() - cpu0) * 1e3, start, end)
        finally:
            lock.release()
        # a batched call is one span per item, all with the call's start and end
        for tag in a.items:
            run.rec.span(a.phase, self.stage, "compute", tag, start, end)
        self.computes += 1
        return out

    def _waited(self, name: str, tag: Tag) -> None:
        """The wait lane: a span from when the last action had to sleep until now."""
        since = self.state.slept.pop(self.who, None)
        if since is not None:
            self.run.rec.span(name, self.stage, WAIT_LANE, tag, since, self.state.clock())

    def on_reserve(self, a: Reserve) -> None:
        self.state.reserve(self.who, a.queue)
        self._waited(f"slot:{a.queue}", NO_TAG)

    def on_put(self, a: Put) -> None:
        run = self.run
        item = QueuedMessage(a.message, run.runtime.send(self.stage, a.message.payload))
        spec = self.state.queues[a.queue].spec
        lane = run.lanes.get(spec.src)  # None: transport is the real handoff, not modelled
        in_transit = lane is not None and travels_on_lane(
            spec, run.transport.time_ms(a.message.nbytes), lane.busy())
        self.state.put(a.queue, item, in_transit)
        if lane is not None and in_transit:
            lane.submit(a.queue, item)

    def on_get(self, a: Get) -> Message:
        item = self.state.get(self.who, a.queue)
        self._waited(a.wait or f"get:{a.queue}", item.msg.tag)
        self.run.runtime.receive(self.stage, item.msg.payload, item.ready)
        return item.msg

    def on_release(self, a: Release) -> None:
        self.state.release(a.queue)

    def on_flush(self, a: Flush) -> list[Message]:
        return self.state.flush(a.queue)

    def on_poll(self, a: Poll) -> StateView:
        return self.state.view()

    def on_wait_change(self, a: WaitChange) -> None:
        self.state.wait_change(self.who, a.version, a.timeout_ms)
        self._waited(a.on or "change", a.tag)

    def on_wait_input(self, a: WaitInput) -> None:
        self.state.wait_input(self.who, a.tag)
        self._waited("input", a.tag)
        if self.run.saturated:
            self.run.rec.mark("input", self.stage, a.tag, self.state.clock())

    def on_mark(self, a: Mark) -> None:
        run = self.run
        run.rec.mark(a.name, self.stage, a.tag, self.state.clock())
        if a.name == "emit":
            with self.state.cond:
                run.emitted += 1
                done = run.emitted
            if run.progress is not None:
                run.progress(done, run.total)


def tag_of(obj: Any, default: Tag | None) -> Tag | None:
    """The work identity an action or result refers to (for failure reports)."""
    tag = getattr(obj, "tag", None)
    if tag is None:
        tag = getattr(getattr(obj, "message", None), "tag", None)
    return tag if isinstance(tag, Tag) else default


def failure_report(run: RunContext, who: str, action: Action | None, tag: Tag | None,
                   exc: BaseException) -> str:
    what = action.describe() if action is not None else "start"
    where = (f"chunk {tag.chunk}, epoch {tag.epoch}, call_id {tag.call_id}" if tag is not None
             else "before its first chunk")
    return (f"{who} failed at '{what}' ({where}): {type(exc).__name__}: {exc}; "
            f"{run.state.describe_queues()}")


def _warm_up_then_wait(run: RunContext, stage: str) -> None:
    """Warm this stage's kernels up in this thread, then wait until every worker has and
    the clock has started (setup never lands in chunk 0's spans)."""
    if run.ready is None:
        return
    try:
        prepare(run.kernels[stage])
    except BaseException:
        run.ready.abort()  # nobody waits for a worker that cannot start
        raise
    try:
        run.ready.wait(run.state.timeout_s)
    except threading.BrokenBarrierError:
        raise Aborted from None
    if not run.go.wait(run.state.timeout_s) or run.state.aborted.is_set():
        raise Aborted


def drive(run: RunContext, sp: StageProgram, who: str) -> None:
    """Worker thread body: run ``sp``'s program to its end, an abort, or a failure.

    Progress, for the livelock rule, is a change of the shared state or a finished
    compute (the clock of a real run always moves)."""
    state = run.state
    driver: ProgramDriver | None = None
    tag: Tag | None = None
    try:
        with run.runtime.stage_context(sp.stage):
            _warm_up_then_wait(run, sp.stage)
            backend = StageBackend(run, sp.stage, who)
            driver = ProgramDriver(sp, lambda: (state.version, backend.computes))
            state.doing[who] = driver  # described only when a report asks
            result: Any = None
            while not state.aborted.is_set():
                action = driver.next(result)
                if action is None:
                    return
                tag = tag_of(action, tag)
                result = action.accept(backend)
                tag = tag_of(result, tag)
                state.progress_at = time.monotonic()
    except Aborted:
        return
    except Exception as exc:
        run.fail(failure_report(run, who, driver.action if driver else None, tag, exc))
    finally:
        state.leave(who)
