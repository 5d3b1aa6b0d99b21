"""A zero-time backend that records what each stage's program does: the schedule as data.

It interprets the same actions as the SimPy engine and the executors (one ``on_*``
handler per action type, the queue semantics of :mod:`pipefill.sim.program.queues`), but no
time passes: every input is available, a Put arrives at once and a Compute returns at
once. Programs run cooperatively, each until it blocks, in stage order. The result is
every stage's action list in a global execution order that respects every wait (a Get
runs after the Put it takes, a Reserve after the Release that freed its slot), which
:mod:`pipefill.sim.schedule.derive` turns into a timed event graph.

For a *fixed-order* schedule (``Policy.order(sc).fixed``, see
:class:`pipefill.sim.policies.base.Order`) the lists are the same under every timing, so
recording them once describes every run. Programs are stepped by the same
:class:`~pipefill.sim.program.driver.ProgramDriver` as in every other backend, so the
livelock rule is the driver's; a deadlock (nothing can move) is :class:`RecordStall`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipefill.sim.errors import StallError
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
    StateView,
    WaitChange,
    WaitInput,
)
from pipefill.sim.program.driver import ProgramDriver
from pipefill.sim.program.queues import SlotQueue, describe, make_queues, snapshot
from pipefill.sim.scenario.model import Scenario


class RecordStall(StallError):
    """The programs cannot all finish even with zero durations (a deadlock). A livelock
    is the driver's :class:`~pipefill.sim.program.driver.Livelock`, as in every backend."""


@dataclass(frozen=True)
class Recorded:
    """One executed action: the stage that ran it and its result (a Get's message)."""

    stage: str
    action: Action
    result: Any = None


@dataclass(frozen=True)
class Recording:
    """Every action of a run in execution order; ``choices``: how many times a program
    read the shared state (Poll, WaitChange) or a Flush found items, i.e. made a choice
    that timing could change."""

    steps: tuple[Recorded, ...]
    stages: tuple[str, ...]
    choices: int


_BLOCKED = object()


class _Recorder:
    """Interprets one action for one stage; returns ``_BLOCKED`` when it must wait."""

    def __init__(self, sc: Scenario) -> None:
        self.queues: dict[str, SlotQueue[Message]] = make_queues(sc.policy.queues(sc),
                                                                 _same)
        self.inputs = dict.fromkeys(range(sc.run.sessions), sc.run.chunks)
        self.version = 0
        self.choices = 0
        self.moves = 0  # the driver's progress marker: work done or shared state changed

    def bump(self) -> None:
        self.version += 1
        self.moves += 1

    def on_compute(self, a: Compute) -> Any:
        self.moves += 1
        return None

    def on_reserve(self, a: Reserve) -> Any:
        q = self.queues[a.queue]
        if q.free <= 0:
            return _BLOCKED
        q.take_slot()
        self.bump()
        return None

    def on_put(self, a: Put) -> Any:
        q = self.queues[a.queue]
        q.send(a.message)
        q.arrive(a.message)
        self.bump()
        return None

    def on_get(self, a: Get) -> Any:
        q = self.queues[a.queue]
        if not q.items:
            return _BLOCKED
        self.bump()
        return q.take()

    def on_release(self, a: Release) -> Any:
        if not self.queues[a.queue].release():
            raise RecordStall(f"release of empty queue {a.queue}")
        self.bump()
        return None

    def on_flush(self, a: Flush) -> Any:
        flushed = self.queues[a.queue].flush()
        self.choices += bool(flushed)
        self.bump()
        return flushed

    def on_poll(self, a: Poll) -> StateView:
        self.choices += 1
        return snapshot(self.queues, self.version, 0.0, self.inputs)

    def on_wait_change(self, a: WaitChange) -> Any:
        self.choices += 1
        return _BLOCKED if self.version == a.version else None

    def on_wait_input(self, a: WaitInput) -> Any:
        return None

    def on_mark(self, a: Mark) -> Any:
        self.moves += 1
        return None


def _same(msg: Message) -> Message:
    return msg


def record(sc: Scenario) -> Recording:
    """Run ``sc``'s programs at zero time and return every action in execution order."""
    rec = _Recorder(sc)
    drivers = [ProgramDriver(sp, lambda: rec.moves, lambda: f"; {describe(rec.queues)}")
               for sp in sc.policy.programs(sc)]
    for d in drivers:
        d.next(None)
    steps: list[Recorded] = []
    while any(not d.finished for d in drivers):
        moved = False
        for d in drivers:
            while (action := d.action) is not None:
                result = action.accept(rec)
                if result is _BLOCKED:
                    break
                moved = True
                steps.append(Recorded(d.stage, action, result))
                d.next(result)
        if not moved:
            _unblock_timeouts(rec, drivers)
    return Recording(tuple(steps), tuple(d.stage for d in drivers), rec.choices)


def _unblock_timeouts(rec: _Recorder, drivers: list[ProgramDriver]) -> None:
    """Everyone waits: a WaitChange with a timeout returns (its time has passed)."""
    for d in drivers:
        if isinstance(d.action, WaitChange) and d.action.timeout_ms is not None:
            d.next(None)
            return
    blocked = ", ".join(f"{d.stage} at '{d.describe()}'" for d in drivers if not d.finished)
    raise RecordStall(f"deadlock: {blocked}; {describe(rec.queues)}")
