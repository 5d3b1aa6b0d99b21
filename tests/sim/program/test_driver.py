"""ProgramDriver: the one action-driving loop and livelock rule of every backend."""

from __future__ import annotations

import pytest

from pipefill.sim.errors import StallError
from pipefill.sim.program.actions import Get, Poll, Program, StageProgram
from pipefill.sim.program.driver import SPIN_LIMIT, Livelock, ProgramDriver


def test_results_are_handed_back_and_the_end_is_none():
    seen = []

    def prog() -> Program:
        seen.append((yield Get("q")))
        seen.append((yield Poll()))

    d = ProgramDriver(StageProgram("stage1", prog()), progress=iter(range(10)).__next__)
    assert d.describe() == "start"
    assert isinstance(d.next(None), Get) and d.describe() == "get q" and str(d) == "get q"
    assert isinstance(d.next("msg"), Poll)
    assert d.next("view") is None and d.action is None and d.describe() == "finished"
    assert seen == ["msg", "view"]


def _spinner() -> Program:
    while True:
        yield Poll()


def test_a_livelock_is_the_action_after_spin_limit_ones_without_progress():
    d = ProgramDriver(StageProgram("stage0", _spinner()), progress=lambda: 0,
                      context=lambda: " (at t=1)")
    for _ in range(SPIN_LIMIT + 1):  # the first is progress, then SPIN_LIMIT spins
        d.next(None)
    with pytest.raises(Livelock, match=r"^stage0: livelock at poll \(at t=1\)$") as err:
        d.next(None)
    assert isinstance(err.value, StallError)


def test_progress_resets_the_count():
    ticks = iter(range(10**9))
    marker = {"v": 0}

    def progress() -> int:
        n = next(ticks)
        if n % SPIN_LIMIT == 0:
            marker["v"] += 1  # progress just before the limit, every time
        return marker["v"]

    d = ProgramDriver(StageProgram("stage0", _spinner()), progress=progress)
    for _ in range(3 * SPIN_LIMIT):
        d.next(None)
