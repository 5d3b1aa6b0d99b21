"""The engine reports a schedule that cannot progress instead of hanging."""

from __future__ import annotations

from typing import ClassVar

import pytest

from sim.actions import Get, Poll, Program, QueueSpec, Reserve, StageProgram
from sim.engine import StallError, simulate
from sim.policies.base import Policy
from tests.conftest import make_scenario


class _Deadlock(Policy):
    """stage0 fills q_in and then waits for a result nobody produces."""

    name: ClassVar[str] = "deadlock"

    def queues(self, sc):
        return [QueueSpec("q_in", 1, "stage0", "stage1"), QueueSpec("q_out", 1, "stage1", "stage0")]

    def programs(self, sc):
        def stage0() -> Program:
            yield Reserve("q_in")
            yield Reserve("q_in")

        def stage1() -> Program:
            yield Get("q_out")

        return [StageProgram("stage0", stage0()), StageProgram("stage1", stage1())]


class _Spin(_Deadlock):
    name: ClassVar[str] = "spin"

    def programs(self, sc):
        def stage0() -> Program:
            while True:
                yield Poll()

        return [StageProgram("stage0", stage0())]


def _with(policy):
    sc = make_scenario({"name": "serial"}, {"build": 1, "denoise": 1, "decode": 1})
    return sc.model_copy(update={"policy": policy})


def test_deadlock_names_stages_actions_and_queues():
    with pytest.raises(StallError) as info:
        simulate(_with(_Deadlock()))
    msg = str(info.value)
    assert "stage0 blocked at 'reserve q_in'" in msg
    assert "stage1 blocked at 'get q_out'" in msg
    assert "q_in: 1/1 slots held" in msg


def test_livelock_is_caught():
    with pytest.raises(StallError, match="stage0: livelock at poll"):
        simulate(_with(_Spin()))
