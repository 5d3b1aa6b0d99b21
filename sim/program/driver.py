"""The one loop that drives a policy program, shared by every backend.

A backend (the SimPy engine, the threads executor, a dist rank) asks a
:class:`ProgramDriver` for the next action, interprets it with its own ``on_*``
handler and hands the result back. The driver owns what must not differ between
backends: the hand-back of results, the end of a program, what it is doing now
(described lazily, only when a stall or fault report asks) and the livelock rule.

Livelock rule: a program that takes more than :data:`SPIN_LIMIT` actions in a row
without *progress* can never finish. What counts as progress is the backend's
``progress()`` marker, which changes when the run moved on: simulated time for the
SimPy engine (any action at a later instant); the shared-state version or a finished
compute for the executors (whose clock always moves).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from pipefill.sim.errors import StallError
from pipefill.sim.program.actions import Action, StageProgram

#: actions a program may take without progress before it is declared a livelock
SPIN_LIMIT = 100_000


class Livelock(StallError):
    """A program spun through :data:`SPIN_LIMIT` actions without progress."""


class ProgramDriver:
    """Steps one stage's program. ``action`` is the action in progress (None before the
    first and after the last); :meth:`describe` names it for reports.

    Contract: call :meth:`next` with the previous action's result (None at first) until
    it returns None (the program ended). It raises :class:`Livelock` from the action that
    exceeded the limit (its line ends with ``context()``); the program's own exceptions
    propagate unchanged.
    """

    __slots__ = ("_marker", "_spins", "action", "context", "finished", "program", "progress",
                 "stage")

    def __init__(self, sp: StageProgram, progress: Callable[[], Hashable],
                 context: Callable[[], str] = str) -> None:
        self.stage = sp.stage
        self.program = sp.program
        self.progress = progress
        self.context = context  # the backend's words after a livelock line (time, queues)
        self.action: Action | None = None
        self.finished = False
        self._marker: Hashable = object()  # no marker equals it: the first action is progress
        self._spins = 0

    def next(self, result: Any) -> Action | None:
        try:
            action = self.program.send(result)
        except StopIteration:
            self.action, self.finished = None, True
            return None
        self.action = action
        marker = self.progress()
        if marker != self._marker:
            self._marker, self._spins = marker, 0
            return action
        self._spins += 1
        if self._spins > SPIN_LIMIT:
            raise Livelock(f"{self.stage}: livelock at {action.describe()}{self.context()}")
        return action

    def describe(self) -> str:
        if self.action is not None:
            return self.action.describe()
        return "finished" if self.finished else "start"

    def __str__(self) -> str:
        return self.describe()
