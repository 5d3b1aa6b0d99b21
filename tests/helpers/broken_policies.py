"""Policies that cannot progress, shared by the simulator's and the executor's stall tests."""

from __future__ import annotations

from typing import Any, ClassVar

from pipefill.sim.policies.base import Policy
from pipefill.sim.program.actions import Get, Poll, Program, QueueSpec, Reserve, StageProgram
from pipefill.sim.scenario.model import Scenario
from tests.helpers.scenarios import make_scenario


class Deadlock(Policy):
    """stage0 fills q_in and then waits for another slot; stage1 waits for a result."""

    name: ClassVar[str] = "deadlock"

    def queues(self, sc):
        return [QueueSpec("q_in", 1, "stage0", "stage1"),
                QueueSpec("q_out", 1, "stage1", "stage0")]

    def programs(self, sc):
        def stage0() -> Program:
            yield Reserve("q_in")
            yield Reserve("q_in")

        def stage1() -> Program:
            yield Get("q_out")

        return [StageProgram("stage0", stage0()), StageProgram("stage1", stage1())]


class Spin(Deadlock):
    """stage0 polls forever without waiting: a livelock."""

    name: ClassVar[str] = "spin"

    def programs(self, sc):
        def stage0() -> Program:
            while True:
                yield Poll()

        return [StageProgram("stage0", stage0())]


def scenario_with(policy: Policy, costs: dict[str, Any], chunks: int = 2) -> Scenario:
    """A valid scenario whose policy is swapped for ``policy`` (bypassing the registry)."""
    sc = make_scenario({"name": "serial"}, costs, chunks=chunks)
    return sc.model_copy(update={"policy": policy})
