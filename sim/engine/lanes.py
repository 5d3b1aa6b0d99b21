"""Comm lanes of the SimPy engine: each sending stage's transfers, one at a time, in order.

A lane is a FIFO of transfers that keeps the instants at which a SimPy resource of
capacity 1 would have granted them (a request is queued where a process started now
would ask, a grant lands one event later, a finished transfer lets the next one in one
event after that). No SimPy processes: each step runs in the callback of the event
before it, which is what makes the ties of a trace independent of this optimisation.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from pipefill.sim.program.actions import Message, QueueSpec
from pipefill.sim.program.queues import SlotQueue

if TYPE_CHECKING:
    from pipefill.sim.engine.core import SimEngine

_Queue = SlotQueue[Message]
_Job = tuple[_Queue, Message]


class Lane:
    """One sending stage's comm lane: transfers one at a time, in request order."""

    __slots__ = ("queue", "user")

    def __init__(self) -> None:
        self.user: _Job | None = None
        self.queue: deque[_Job] = deque()

    @property
    def busy(self) -> bool:
        return self.user is not None or bool(self.queue)


class CommLanes:
    """Every queue's lane (one per sending stage, shared by that stage's queues).

    Contract: :meth:`send` hands a message to its lane; when its transfer ends the
    engine's :meth:`~pipefill.sim.engine.core.SimEngine.deliver` records the ``send``
    span and makes the message visible to Get.
    """

    __slots__ = ("by_queue", "engine")

    def __init__(self, engine: SimEngine, specs: list[QueueSpec]) -> None:
        self.engine = engine
        by_src: dict[str, Lane] = {}
        self.by_queue = {s.name: by_src.setdefault(s.src, Lane()) for s in specs}

    def busy(self, queue: str) -> bool:
        return self.by_queue[queue].busy

    def send(self, q: _Queue, msg: Message) -> None:
        """Queue a transfer on the sender's lane (as a process starting now would)."""
        lane = self.by_queue[q.spec.name]
        self.engine.soon(lambda _: self._request(lane, (q, msg)), urgent=True)

    def _request(self, lane: Lane, job: _Job) -> None:
        lane.queue.append(job)
        self._grant(lane)

    def _grant(self, lane: Lane) -> None:
        if lane.user is None and lane.queue:
            job = lane.user = lane.queue.popleft()
            self.engine.soon(lambda _: self._start(lane, job))

    def _start(self, lane: Lane, job: _Job) -> None:
        engine = self.engine
        start = float(engine.env.now)
        ev = engine.env.timeout(engine.sc.transport.time_ms(job[1].nbytes))
        ev.callbacks.append(lambda _: self._finish(lane, job, start))

    def _finish(self, lane: Lane, job: _Job, start: float) -> None:
        self.engine.deliver(job[0], job[1], start)
        lane.user = None
        self.engine.soon(lambda _: self._grant(lane))
