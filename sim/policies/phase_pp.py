"""Phase pipelining: rank0 builds and decodes while the mesh generates (DESIGN.md contract)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from pipefill.sim.policies import phase_pp_bound
from pipefill.sim.policies.base import CallIds, Order, Policy
from pipefill.sim.policies.common import (
    Q_IN,
    Q_OUT,
    GeneratorMesh,
    Stage0Ops,
    coupling_of,
    generator_program,
)
from pipefill.sim.program.actions import (
    Poll,
    Program,
    QueueSpec,
    StageProgram,
    StateView,
    WaitChange,
)
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.graph.model import LowerBound
    from pipefill.sim.scenario.model import Scenario

#: a candidate step of stage0: returns a sub-program to run now, or None if not possible
Step = Callable[[Stage0Ops, StateView], Program | None]


class PhasePP(GeneratorMesh, Policy):
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

    def order(self, sc: Scenario) -> Order:
        if any(0 < c < sc.run.chunks for c in self.hard_cuts):
            return Order(False, "a hard cut drops whatever has arrived by then (timing)")
        lead, reason = fixed_lead(self, sc)
        return Order(lead is not None, reason)

    def steady(self) -> PhasePP:
        return self.model_copy(update={"hard_cuts": []})

    def levers(self, sc: Scenario) -> dict[str, str]:
        out = {f"backpressure:{Q_OUT}": f"D_out = {self.d_out + 1} (policy.d_out)",
               f"backpressure:{Q_IN}": f"D_in = {self.d_in + 1} (policy.d_in)"}
        if self.recompute == "r0a":
            alt = ' or anchor = "anchor_only"' if self.anchor == "full" else ""
            out["dependency"] = f"recompute_lag >= {self.recompute_lag + 1}{alt}"
        else:  # the stages take turns: not enough envelopes in flight
            out["dependency"] = f"D_in = {self.d_in + 1} (policy.d_in)"
        return out

    def lower_bound(self) -> LowerBound:
        return phase_pp_bound.lower_bound(self)

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
                yield WaitChange(view.version, on=waiting_on(ops, view),
                                 tag=Tag(0, ops.next_chunk, epoch=ops.epoch))
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


def waiting_on(ops: Stage0Ops, view: StateView) -> str:
    """What stage0 waits for when neither step is possible, in the wait lane's words
    (``slot:q_in|get:q_out``): why it cannot build the next envelope, and the result it
    could decode. Mirrors the conditions of :func:`_produce` and :func:`_consume`."""
    produce = ""
    if not ops.done_sending:
        src = ops.coupling.source(ops.next_chunk)
        if view.inputs.get(0, 0) <= ops.next_chunk:
            produce = "input"
        elif view.free[Q_IN] < 1:
            produce = f"slot:{Q_IN}"
        elif src is not None and not ops.has_context(ops.next_chunk):
            produce = f"context:{src}"
    consume = f"get:{Q_OUT}" if ops.outstanding > 0 else ""
    return "|".join(p for p in (produce, consume) if p)


def _consume(ops: Stage0Ops, view: StateView) -> Program | None:
    """Decode the oldest result if one is held or has arrived."""
    if ops.held or view.ready[Q_OUT] > 0:
        return ops.decode()
    return None


def fixed_lead(p: Any, sc: Scenario) -> tuple[int | None, str]:
    """phase_pp: the lead of stage0's order when the greedy choice provably fixes it.

    Proofs (steady state, saturated source, anchor = full, recompute_every = 1 for r0a):
    (1) r0a with lag 0: build k+1 needs decode k and decode k+1 needs build k+1, so
        stage0 alternates build k, decode k whatever the preference: lead 0.
    (2) producer_first, r0a, 0 < lag < d_in: once encode k is done, build k+lag+1 is
        enabled (its D_in slot freed when chunk k finished) and preferred; build k+lag+2
        needs encode k+1, so decode k+1 comes next: lead = lag.
    (3) producer_first, d_out = 1 (r1, r0, or r0a with lag >= d_in): stage1 cannot
        finish chunk k+1 before decode k frees the only D_out slot, so build k+d_in+1
        (which needs that finish) follows decode k; build k+d_in is enabled when chunk
        k finishes, no later than result k arrives, and producer_first takes it first
        (from the start: it fills all d_in slots before its first decode): lead = d_in.
    Otherwise the order depends on timing. (consumer_first with d_out = 1 is not fixed:
    when stage0 is the bottleneck it settles into building fewer than d_in ahead, e.g.
    build k+1, decode k.)
    """
    if sc.run.source == "realtime" and not (p.recompute == "r0a" and p.recompute_lag == 0):
        return None, "a realtime source makes stage0's greedy order depend on input timing"
    if p.recompute == "r0a" and (p.anchor == "anchor_only" or p.recompute_every != 1):
        why = "anchor_only" if p.anchor == "anchor_only" else "recompute_every > 1"
        return None, f"with r0a and {why} stage0's greedy order depends on timing"
    r0a, lag = p.recompute == "r0a", p.recompute_lag
    if r0a and lag == 0:
        return 0, "r0a with lag 0 serialises stage0: build k, decode k, build k+1"
    producer = p.stage0_order == "producer_first"
    if producer and r0a and lag < p.d_in:
        return lag, f"producer_first with lag < d_in: stage0 builds k+{lag} before decoding k"
    if producer and p.d_out == 1 and (not r0a or lag >= p.d_in):
        return p.d_in, f"producer_first, d_out = 1: stage0 builds k+{p.d_in} before decoding k"
    return None, (f"{p.stage0_order} with d_in={p.d_in}, d_out={p.d_out} is a greedy choice "
                  "whose order depends on timing")
