"""Bounded-queue bookkeeping shared by every backend (the slot semantics of sim/actions.py).

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

from pipefill.sim.actions import Message, QueueSpec, StateView
from pipefill.traces.recorder import Recorder

T = TypeVar("T")


@dataclass
class SlotQueue(Generic[T]):
    """A bounded queue whose slots are held from Reserve until Release.

    ``items`` are arrived, not yet taken entries (a backend may wrap each message, e.g.
    with a device handoff token: ``message_of`` unwraps it); ``unreleased`` are the
    messages put and not yet released (their bytes are "in flight").
    Invariant: ``0 <= held <= spec.capacity`` and ``len(items) + in_transit <= held``
    for programs that only put into reserved slots.
    """

    spec: QueueSpec
    message_of: Callable[[T], Message]
    held: int = 0
    items: deque[T] = field(default_factory=deque)
    unreleased: deque[Message] = field(default_factory=deque)
    in_transit: int = 0

    @property
    def free(self) -> int:
        return self.spec.capacity - self.held

    def take_slot(self) -> None:
        """Reserve: the caller has waited until ``free > 0``."""
        self.held += 1

    def send(self, msg: Message) -> None:
        """Put into a reserved slot: the message is in transit until :meth:`arrive`."""
        self.unreleased.append(msg)
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
            self.unreleased.popleft()
        return True

    def flush(self) -> list[T]:
        """Drop every arrived, untaken item and free its slot; return the dropped items."""
        flushed = list(self.items)
        self.items.clear()
        self.held -= len(flushed)
        gone = {id(self.message_of(item)) for item in flushed}
        self.unreleased = deque(m for m in self.unreleased if id(m) not in gone)
        return flushed

    def describe(self) -> str:
        return (f"{self.spec.name}: {self.held}/{self.spec.capacity} slots held, "
                f"{len(self.items)} arrived, {self.in_transit} in transit")


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
    return sum(m.nbytes for q in queues.values() for m in q.unreleased)


def record_depth(rec: Recorder, queues: Mapping[str, SlotQueue[T]], q: SlotQueue[T],
                 now_ms: float) -> None:
    """Counters after a change of ``q``: its depth and the run's bytes in flight."""
    rec.counter(q.spec.name, q.spec.dst, now_ms, q.held)
    rec.counter("bytes_in_flight", "all", now_ms, bytes_in_flight(queues))


def describe(queues: Mapping[str, SlotQueue[T]]) -> str:
    return "; ".join(q.describe() for q in queues.values())
