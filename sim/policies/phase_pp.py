"""Phase pipelining: rank0 builds and decodes while the mesh generates (DESIGN.md contract)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from pipefill.sim.actions import Poll, Program, QueueSpec, StageProgram, StateView, WaitChange
from pipefill.sim.policies.base import CallIds, Policy
from pipefill.sim.policies.common import Q_IN, Q_OUT, Stage0Ops, coupling_of, generator_program

if TYPE_CHECKING:
    from pipefill.sim.scenario import Scenario

#: a candidate step of stage0: returns a sub-program to run now, or None if not possible
Step = Callable[[Stage0Ops, StateView], Program | None]


class PhasePP(Policy):
    """Rank0-out-of-mesh phase pipelining with bounded queues.

    Stage0 builds envelopes and decodes results; stage1 recomputes and denoises.
    Whenever stage0 is free it takes the first possible step in ``stage0_order``
    (build+send, or decode the oldest result); if none is possible it waits for the
    next state change. Invariants: at most ``d_in`` envelopes and ``d_out`` results
    are held; every chunk of the current epoch is emitted exactly once, in order; no
    result of an older epoch is ever emitted.
    """

    name: ClassVar[str] = "phase_pp"

    d_in: int = Field(2, ge=1, description="envelopes sent whose generator work has not finished")
    d_out: int = Field(2, ge=1, description="results whose decode has not finished")
    stage0_order: Literal["producer_first", "consumer_first"] = Field(
        "producer_first", description="which step stage0 prefers when both are possible")
    recompute: Literal["r1", "r0a", "r0"] = Field(
        "r1", description="r1: none; r0a: context from stage0's decode; r0: latent-anchored")
    recompute_lag: int = Field(0, ge=0, description="r0a: envelope k+1 needs decode of k-lag")
    recompute_every: int = Field(1, ge=1, description="recompute on every Nth chunk of an epoch")
    anchor: Literal["full", "anchor_only"] = Field(
        "full", description="r0a dependency waits for the full decode or only the anchor frames")
    hard_cuts: list[int] = Field(default_factory=list, description="chunks that start a new epoch")

    def required_phases(self, sc: Scenario) -> tuple[str, ...]:
        extra: tuple[str, ...] = ("recompute",) if self.recompute != "r1" else ()
        if self.recompute == "r0a" and self.anchor == "anchor_only":
            extra += ("anchor_decode",)
        return ("build", "denoise", "decode", *extra)

    def queues(self, sc: Scenario) -> list[QueueSpec]:
        return [QueueSpec(Q_IN, self.d_in, "stage0", "stage1"),
                QueueSpec(Q_OUT, self.d_out, "stage1", "stage0")]

    def programs(self, sc: Scenario) -> list[StageProgram]:
        coupling = coupling_of(sc, self.recompute, self.recompute_lag, self.recompute_every,
                               self.hard_cuts)
        anchor_only = self.recompute == "r0a" and self.anchor == "anchor_only"
        ops = Stage0Ops(sc, coupling, CallIds(), anchor_only=anchor_only)
        return [StageProgram("stage0", self._stage0(ops)),
                StageProgram("stage1", generator_program(sc))]

    def _stage0(self, ops: Stage0Ops) -> Program:
        steps: tuple[Step, ...] = (_produce, _consume)
        if self.stage0_order == "consumer_first":
            steps = steps[::-1]
        while not ops.done:
            view = yield Poll()
            sub = next((p for p in (step(ops, view) for step in steps) if p is not None), None)
            if sub is None:
                yield WaitChange(view.version)
            else:
                yield from sub
        yield from ops.shutdown()


def _produce(ops: Stage0Ops, view: StateView) -> Program | None:
    """Cut, anchor-decode a needed context, or build+send the next envelope, if possible."""
    if ops.done_sending or view.inputs.get(0, 0) <= ops.next_chunk:
        return None
    if ops.cut_due():
        return ops.cut()
    if view.free[Q_IN] < 1:
        return None
    if ops.has_context(ops.next_chunk):
        return ops.send()
    src = ops.coupling.source(ops.next_chunk)
    if src is None or not ops.anchor_only:
        return None
    if ops.holds(src):
        return ops.anchor(src)
    return ops.take() if view.ready[Q_OUT] > 0 else None


def _consume(ops: Stage0Ops, view: StateView) -> Program | None:
    """Decode the oldest result if one is held or has arrived."""
    if ops.held or view.ready[Q_OUT] > 0:
        return ops.decode()
    return None
