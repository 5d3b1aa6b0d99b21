"""Shared state of an executor run: real bounded queues, inputs and a version counter.

Every field is guarded by one condition variable. Each change bumps ``version`` and
wakes every waiter, so ``WaitChange(view.version)`` cannot miss a wake-up: the version
is compared under the same lock that publishes the change. Every blocking wait has a
deadline and also checks, before sleeping, whether the run can still make progress
(some worker running, a transfer in flight, inputs still to come, or some waiter's
condition already true); if none can, it raises :class:`StallDetected` at once
instead of waiting out its timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipefill.exec.errors import Aborted
from pipefill.sim.program.actions import Message, QueueSpec, StateView
from pipefill.sim.program.queues import SlotQueue, describe, make_queues, record_depth, snapshot
from pipefill.traces.recorder import Recorder, Tag


class StallDetected(RuntimeError):
    """No worker can make progress (deadlock) or a wait ran past its timeout."""


@dataclass
class QueuedMessage:
    """A message on a queue plus the device handoff token (CUDA: its ready event)."""

    msg: Message
    ready: Any = None


def _message(item: QueuedMessage) -> Message:
    return item.msg


#: the executor's queues hold queued messages (message + handoff token); semantics in sim.queues
ExecQueue = SlotQueue[QueuedMessage]


class SharedState:
    """Queues, inputs and the version counter shared by the workers of one run.

    ``who`` names a worker (its stage, plus an index when a stage runs several
    programs). ``doing[who]`` is the action it is on, for stall and fault reports.
    """

    def __init__(self, specs: list[QueueSpec], sessions: int, chunks: int, saturated: bool,
                 rec: Recorder, clock: Callable[[], float], timeout_s: float) -> None:
        self.cond = threading.Condition()
        self.queues: dict[str, ExecQueue] = make_queues(specs, _message)
        self.inputs = dict.fromkeys(range(sessions), chunks if saturated else 0)
        self.rec, self.clock, self.timeout_s = rec, clock, timeout_s
        self.version = 0
        self.live = 0
        self.pending = 0  # transfers in flight plus a feeder still to deliver inputs
        self.waiters: dict[str, Callable[[], bool]] = {}
        self.doing: dict[str, object] = {}  # a worker's driver (str() describes its action)
        self.aborted = threading.Event()
        self.progress_at = time.monotonic()
        #: when a worker's current wait began, if it had to sleep (its wait-lane span)
        self.slept: dict[str, float] = {}

    # -- bookkeeping (call with the lock held unless said otherwise) -----------------
    def bump(self) -> None:
        self.version += 1
        self.progress_at = time.monotonic()
        self.cond.notify_all()

    def count(self, q: ExecQueue) -> None:
        record_depth(self.rec, self.queues, q, self.clock())

    def describe_queues(self) -> str:
        return describe(self.queues)

    def blocked(self) -> str:
        return ", ".join(f"{w} blocked at '{self.doing.get(w, '?')}'" for w in sorted(self.waiters))

    def join(self, who: str) -> None:
        with self.cond:
            self.live += 1
            self.doing[who] = "start"

    def leave(self, who: str) -> None:
        """A worker finished: the others re-check whether progress is still possible."""
        with self.cond:
            self.live -= 1
            self.doing.pop(who, None)
            self.cond.notify_all()

    def abort(self) -> None:
        """Stop every wait (thread-safe); waiters raise :class:`Aborted`."""
        self.aborted.set()
        with self.cond:
            self.cond.notify_all()

    def wait_until(self, who: str, ready: Callable[[], bool], wake_at: float | None = None) -> None:
        """Block (lock held) until ``ready()``; raise on abort, deadlock or timeout.

        ``wake_at`` (monotonic s): the caller's own time limit, which ``ready`` checks;
        the waiter is then pending work, never part of a deadlock.
        """
        if ready():
            return
        self.slept[who] = self.clock()  # the caller's wait-lane span starts here
        deadline = time.monotonic() + self.timeout_s
        self.pending += wake_at is not None
        try:
            while not ready():
                if self.aborted.is_set():
                    raise Aborted
                self._sleep(who, ready, deadline, wake_at)
        finally:
            self.pending -= wake_at is not None

    def _sleep(self, who: str, ready: Callable[[], bool], deadline: float,
               wake_at: float | None) -> None:
        self.waiters[who] = ready
        try:
            self._check_progress_possible()
            now = time.monotonic()
            if deadline <= now:
                others = ", ".join(f"{w} at '{a}'" for w, a in sorted(self.doing.items())
                                   if w != who)
                raise StallDetected(f"timed out: waited {self.timeout_s:g} s for the state "
                                    f"to change (meanwhile {others or 'no other worker'})")
            self.cond.wait(min(deadline, wake_at or deadline) - now)
        finally:
            del self.waiters[who]

    def _check_progress_possible(self) -> None:
        if len(self.waiters) < self.live or self.pending:
            return
        if any(ready() for ready in self.waiters.values()):
            return
        raise StallDetected(f"stall at t={self.clock():.3f} ms: {self.blocked()}")

    # -- queue operations (each takes the lock) ---------------------------------------
    def view(self) -> StateView:
        with self.cond:
            return snapshot(self.queues, self.version, self.clock(), self.inputs)

    def reserve(self, who: str, name: str) -> None:
        q = self.queues[name]
        with self.cond:
            self.wait_until(who, lambda: q.free > 0)
            q.take_slot()
            self.count(q)
            self.bump()

    def put(self, name: str, item: QueuedMessage, in_transit: bool) -> None:
        """Send into a reserved slot; without transit it arrives now (a free link, or a
        local buffer, which records no ``send`` span), else a comm lane delivers it."""
        q = self.queues[name]
        with self.cond:
            q.send(item.msg)
            self.pending += in_transit
            self.count(q)
            if in_transit:
                return
            if q.spec.transport:
                self._send_span(q, item.msg, self.clock())
            self._arrive(q, item)

    def arrive(self, name: str, item: QueuedMessage, sent_at: float) -> None:
        """A transfer finished on its comm lane: the message becomes visible to Get."""
        q = self.queues[name]
        with self.cond:
            self.pending -= 1
            self._send_span(q, item.msg, sent_at)
            self._arrive(q, item)

    def _send_span(self, q: ExecQueue, msg: Message, sent_at: float) -> None:
        self.rec.span("send", q.spec.src, "comm", msg.tag, sent_at, self.clock(),
                      value=float(msg.nbytes))

    def _arrive(self, q: ExecQueue, item: QueuedMessage) -> None:
        q.arrive(item)
        self.bump()

    def get(self, who: str, name: str) -> QueuedMessage:
        q = self.queues[name]
        with self.cond:
            self.wait_until(who, lambda: bool(q.items))
            item = q.take()
            self.bump()
            return item

    def release(self, name: str) -> None:
        q = self.queues[name]
        with self.cond:
            if not q.release():
                raise StallDetected(f"release of {name} with no slot held")
            self.count(q)
            self.bump()

    def flush(self, name: str) -> list[Message]:
        q = self.queues[name]
        with self.cond:
            flushed = [p.msg for p in q.flush()]
            self.count(q)
            self.bump()
            return flushed

    def wait_change(self, who: str, version: int, timeout_ms: float | None = None) -> None:
        """Until the version moves on, or ``timeout_ms`` passed (a batching window)."""
        if timeout_ms is None:
            with self.cond:
                self.wait_until(who, lambda: self.version != version)
            return
        wake_at = time.monotonic() + max(0.0, timeout_ms) / 1e3
        with self.cond:
            self.wait_until(who, lambda: self.version != version or time.monotonic() >= wake_at,
                            wake_at)

    def wait_input(self, who: str, tag: Tag) -> None:
        with self.cond:
            self.wait_until(who, lambda: self.inputs[tag.session] > tag.chunk)

    def feed(self, chunk: int, stages: Mapping[int, str]) -> None:
        """Realtime source: chunk's input of each session of ``stages`` (session -> the
        stage it arrives at) has arrived."""
        with self.cond:
            now = self.clock()
            for s, stage in stages.items():
                self.inputs[s] = chunk + 1
                self.rec.mark("input", stage, Tag(s, chunk), now)
            self.bump()

    def add_pending(self, delta: int) -> None:
        with self.cond:
            self.pending += delta
            self.cond.notify_all()
