"""Bounded-queue bookkeeping shared by every backend (the slot semantics of sim/program/actions.py).

The SimPy engine and the executor differ only in *how they wait* (SimPy events vs a
condition variable); what a Reserve, Put, arrival, Get, Release or Flush does to a
queue, which counters it records and what a :class:`StateView` shows is defined once,
here, so predicted and measured runs cannot drift apart in queue semantics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pipefill.sim.program.actions import Message, QueueSpec, StateView
from pipefill.traces.recorder import Recorder

T = TypeVar("T")


@dataclass
class SlotQueue(Generic[T]):
    """A bounded queue whose slots are held from Reserve until Release.

    ``items`` are arrived, not yet taken entries (a backend may wrap each message, e.g.
    with a device handoff token: ``message_of`` unwraps it); ``unreleased`` are the
    messages put and not yet released (their bytes, ``nbytes`` in all, are "in
    flight"). Invariant: ``0 <= held <= spec.capacity`` and
    ``len(items) + in_transit <= held`` for programs that only put into reserved slots.
    Change these fields only through the methods: the byte total follows them.

    When the two ends of a queue live in two processes (``replay --backend dist``), each
    keeps a *remote-slot view* of it: the producer's end holds the slot accounting and
    the sent messages (:meth:`send_remote`, :meth:`forget`), the consumer's end the
    arrived items, each holding a slot until released (:meth:`arrive_remote`,
    :meth:`release_oldest`, :meth:`flush`).
    """

    spec: QueueSpec
    message_of: Callable[[T], Message]
    held: int = 0
    items: deque[T] = field(default_factory=deque)
    unreleased: deque[Message] = field(default_factory=deque)
    in_transit: int = 0
    nbytes: int = 0

    @property
    def free(self) -> int:
        return self.spec.capacity - self.held

    def take_slot(self) -> None:
        """Reserve: the caller has waited until ``free > 0``."""
        self.held += 1

    def send(self, msg: Message) -> None:
        """Put into a reserved slot: the message is in transit until :meth:`arrive`."""
        self._hold(msg)
        self.in_transit += 1

    def arrive(self, item: T) -> None:
        self.in_transit -= 1
        self.items.append(item)

    def take(self) -> T:
        """Get: the caller has waited until ``items`` is not empty."""
        return self.items.popleft()

    def release(self) -> bool:
        """Free one slot (FIFO, so the oldest message's bytes leave); False if none held."""
        if self.held <= 0:
            return False
        self.held -= 1
        if self.unreleased:
            self.nbytes -= self.unreleased.popleft().nbytes
        return True

    def flush(self) -> list[T]:
        """Drop every arrived, untaken item and free its slot; return the dropped items."""
        flushed = list(self.items)
        self.items.clear()
        self.held -= len(flushed)
        gone = {id(self.message_of(item)) for item in flushed}
        self._keep(lambda m: id(m) not in gone)
        return flushed

    # -- the remote-slot view (one end of a queue whose other end is another process) --
    def send_remote(self, msg: Message) -> None:
        """Producer's end: a message left for the consumer's process; its slot stays held
        (reserved before) until the consumer credits it (:meth:`forget`)."""
        self._hold(msg)

    def forget(self, call_ids: set[int]) -> list[Message]:
        """Producer's end: the consumer released or discarded these messages; free their
        slots and return them (in send order)."""
        gone = [m for m in self.unreleased if m.tag.call_id in call_ids]
        self._keep(lambda m: m.tag.call_id not in call_ids)
        self.held -= len(gone)
        return gone

    def arrive_remote(self, item: T) -> None:
        """Consumer's end: a message from the producer's process arrived; it holds a slot
        here until it is released."""
        self.held += 1
        self._hold(self.message_of(item))
        self.items.append(item)

    def release_oldest(self) -> Message | None:
        """Consumer's end: free the oldest held slot and return its message (the credit
        names it); None if no slot is held."""
        if self.held <= 0 or not self.unreleased:
            return None
        self.held -= 1
        msg = self.unreleased.popleft()
        self.nbytes -= msg.nbytes
        return msg

    # -- bookkeeping ---------------------------------------------------------------
    def _hold(self, msg: Message) -> None:
        self.unreleased.append(msg)
        self.nbytes += msg.nbytes

    def _keep(self, keep: Callable[[Message], bool]) -> None:
        self.unreleased = deque(m for m in self.unreleased if keep(m))
        self.nbytes = sum(m.nbytes for m in self.unreleased)

    def describe(self) -> str:
        return (f"{self.spec.name}: {self.held}/{self.spec.capacity} slots held, "
                f"{len(self.items)} arrived, {self.in_transit} in transit")


def travels_on_lane(spec: QueueSpec, transfer_ms: float, lane_busy: bool) -> bool:
    """Whether a Put's message goes onto its sending stage's comm lane (and arrives when
    its transfer ends) instead of arriving at once. A local buffer never travels; a link
    is FIFO, so even a message of zero transfer time waits behind one still on the lane.
    The one place every backend makes this decision."""
    return spec.transport and (transfer_ms > 0 or lane_busy)


def make_queues(specs: list[QueueSpec],
                message_of: Callable[[T], Message]) -> dict[str, SlotQueue[T]]:
    return {s.name: SlotQueue(s, message_of) for s in specs}


def snapshot(queues: Mapping[str, SlotQueue[T]], version: int, now_ms: float,
             inputs: Mapping[int, int]) -> StateView:
    """The read-only view a program's Poll returns."""
    return StateView(version=version, now_ms=now_ms,
                     free={n: q.free for n, q in queues.items()},
                     ready={n: len(q.items) for n, q in queues.items()},
                     inputs=dict(inputs))


def bytes_in_flight(queues: Mapping[str, SlotQueue[T]]) -> int:
    return sum(q.nbytes for q in queues.values())


def record_depth(rec: Recorder, queues: Mapping[str, SlotQueue[T]], q: SlotQueue[T],
                 now_ms: float) -> None:
    """Counters after a change of ``q``: its depth and the run's bytes in flight."""
    rec.counters(now_ms, ((q.spec.name, q.spec.dst, q.held),
                          ("bytes_in_flight", "all", bytes_in_flight(queues))))


def describe(queues: Mapping[str, SlotQueue[T]]) -> str:
    return "; ".join(q.describe() for q in queues.values())
