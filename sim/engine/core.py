"""The SimPy engine: interprets policy programs against a cost model and records a trace.

The event loop only advances time. Each action type is handled by its own ``on_*``
method of a :class:`~pipefill.sim.engine.runner.Runner`, which steps one stage's
program (:mod:`pipefill.sim.engine.runner`); messages cross stages on comm lanes
(:mod:`pipefill.sim.engine.lanes`). When the loop runs out of events before every
program has finished, the run has stalled: :class:`StallError` names each blocked
stage, the action it is blocked on and the state of every queue.

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
attributes idle time exactly; metrics never read that lane (the runner records them).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy
from simpy.core import NORMAL, URGENT, EmptySchedule
from simpy.events import Event

from pipefill.sim.engine.contention import DeviceModel
from pipefill.sim.engine.lanes import CommLanes
from pipefill.sim.engine.runner import Runner
from pipefill.sim.errors import StallError
from pipefill.sim.program.actions import Message, StateView
from pipefill.sim.program.driver import ProgramDriver
from pipefill.sim.program.queues import SlotQueue, describe, make_queues, record_depth, snapshot
from pipefill.sim.scenario.costs import CostTable
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.meta import run_metadata
from pipefill.traces.recorder import Recorder, Tag
from pipefill.traces.schema import Trace

SimGen = Generator[simpy.Event, Any, Any]
_Queue = SlotQueue[Message]
#: a waiter: the condition it waits for (None: any change) and what resumes it
_Waiter = tuple[Callable[[], bool] | None, Callable[[], None]]

__all__ = ["SimEngine", "StallError", "simulate"]


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
        #: computes of stages that share a device slow each other (sim/engine/contention.py)
        self.devices = DeviceModel(self.env, scenario)
        specs = scenario.policy.queues(scenario)
        self.queues: dict[str, _Queue] = make_queues(specs, _same)
        #: one comm lane per sending stage: its messages travel one at a time, in order
        self.lanes = CommLanes(self, specs)
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
        #: chunks session 0 has emitted (a run advances to a count of them)
        self.emitted = 0

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
        self.start()
        self.advance()
        return self.metadata()

    def start(self) -> None:
        """Set the programs (and a realtime source) going; nothing runs until advanced."""
        if self.sc.run.source == "realtime":
            self.env.process(self._feed_inputs())
        programs = self.sc.policy.programs(self.sc)
        stages = [sp.stage for sp in programs]
        self.shared = {s: simpy.Resource(self.env, 1) for s in stages if stages.count(s) > 1}
        for sp in programs:
            runner = Runner(self, sp)
            self.soon(runner.start, urgent=True)  # where a process would have started

    def advance(self, emits: int | None = None) -> bool:
        """Run until session 0 has emitted ``emits`` chunks (None: to the end); True when
        the run is over. A run that ends with programs still blocked has stalled."""
        step = self.env.step
        try:
            if emits is None:
                while True:
                    step()
            while self.emitted < emits:
                step()
        except EmptySchedule:
            if self.running:
                blocked = ", ".join(sorted(f"{d.stage} blocked at '{d.describe()}'"
                                           for d in self.running))
                raise StallError(f"stall at t={self.env.now:.3f} ms: {blocked}; "
                                 f"{self._queue_state()}") from None
            return True
        return False

    def metadata(self) -> dict[str, Any]:
        return run_metadata(self.sc, source="sim", backend="simpy")


def simulate(scenario: Scenario) -> Trace:
    """Run the scenario's policy on SimPy and return its trace (deterministic per seed)."""
    return SimEngine(scenario).run()
