"""Serial: one chunk at a time through every phase; the baseline with no overlap."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from pipefill.sim.policies.base import CallIds, Order, Policy
from pipefill.sim.policies.common import (
    Q_IN,
    Q_OUT,
    GeneratorMesh,
    Stage0Ops,
    coupling_of,
    generator_program,
)
from pipefill.sim.program.actions import Program, QueueSpec, StageProgram

if TYPE_CHECKING:
    from pipefill.sim.scenario.model import Scenario


class Serial(GeneratorMesh, Policy):
    """Build, send, (recompute,) denoise, return, decode, emit; then the next chunk.

    Invariant: at most one chunk is in flight, so the period is the serial sum of its
    phases and transports, and no hard cut ever finds work to drop.
    """

    name: ClassVar[str] = "serial"

    recompute: Literal["r1", "r0a", "r0"] = Field("r1", description="as in phase_pp")
    recompute_every: int = Field(1, ge=1, description="recompute on every Nth chunk of an epoch")
    hard_cuts: list[int] = Field(default_factory=list, description="chunks that start a new epoch")

    def required_phases(self, sc: Scenario) -> tuple[str, ...]:
        extra = ("recompute",) if self.recompute != "r1" else ()
        return ("build", "denoise", "decode", *extra)

    def order(self, sc: Scenario) -> Order:
        return Order(True, "serial runs one chunk at a time in a fixed order")

    def steady(self) -> Serial:
        return self.model_copy(update={"hard_cuts": []})

    def queues(self, sc: Scenario) -> list[QueueSpec]:
        return [QueueSpec(Q_IN, 1, "stage0", "stage1"), QueueSpec(Q_OUT, 1, "stage1", "stage0")]

    def programs(self, sc: Scenario) -> list[StageProgram]:
        coupling = coupling_of(sc, self.recompute, 0, self.recompute_every, self.hard_cuts)
        ops = Stage0Ops(sc, coupling, CallIds())
        return [StageProgram("stage0", self._stage0(ops)),
                StageProgram("stage1", generator_program(sc))]

    def _stage0(self, ops: Stage0Ops) -> Program:
        while not ops.done_sending:
            if ops.cut_due():
                yield from ops.cut()
            yield from ops.send()
            yield from ops.decode()
        yield from ops.shutdown()
