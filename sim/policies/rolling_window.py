"""Rolling window: up to W chunks in the generator at once, each call advances all of them.

The seed's path (2) to a generator batch B > 1 (FIFO/rolling diffusion): the mesh keeps
a window of chunks at different noise levels. Every generator call first admits the
next envelope if the window has room (its D_in slot is freed: the envelope's latents now
live in the window), then runs one denoise step over the whole window as one batched
call; the chunk that has had all its steps leaves the window and its result goes back
for decode. With W >= steps one chunk enters and one leaves per call.

KV-cache lifecycle: the window is a local buffer ``window`` (its bytes count as memory
in flight); an envelope that starts a new epoch (hard cut) evicts every chunk of the
old epoch, whose stale results go back to stage0 and are dropped, never emitted.
Stage0 runs a fixed order: it keeps ``d_in + min(W, steps) - 1`` chunks ahead of its
decodes (enough to keep the window full and every D_in slot busy, never so many that it
blocks on a slot the mesh can only free after stage0 decodes).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from pipefill.sim.actions import (
    INFER,
    Action,
    Compute,
    Get,
    Message,
    Poll,
    Program,
    Put,
    QueueSpec,
    Release,
    Reserve,
    StageProgram,
    WaitChange,
)
from pipefill.sim.errors import ScenarioError
from pipefill.sim.graph_model import GraphContext, GraphModel, ModelGraph, add_input
from pipefill.sim.policies.base import CallIds, Policy
from pipefill.sim.policies.common import Q_IN, Q_OUT, Stage0Ops, coupling_of
from pipefill.sim.teg import PeriodicGraph
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.scenario import Scenario

WINDOW = "window"


class RollingWindow(Policy):
    """Rank0 builds and decodes; the mesh advances a rolling window of chunks per call.

    Invariants: at most ``window`` chunks are in the generator; chunks enter and leave
    the window in chunk order, each after exactly ``steps`` calls; no chunk of an older
    epoch is ever emitted; stage0 has at most ``lead + 1`` chunks outstanding.
    """

    name: ClassVar[str] = "rolling_window"

    window: int = Field(2, ge=1, description="W: chunks the generator holds (KV window)")
    d_in: int = Field(1, ge=1, description="envelopes sent that have not entered the window")
    d_out: int = Field(2, ge=1, description="results whose decode has not finished")
    window_bytes: int | None = Field(
        None, ge=0, description="bytes one chunk holds in the window (default: result size)")
    hard_cuts: list[int] = Field(default_factory=list, description="chunks that start a new epoch")

    def check(self, sc: Scenario) -> None:
        """Also: an explicit ``window_bytes`` must hold one chunk's result latents."""
        super().check(sc)
        need = sc.transport.result_size
        if self.window_bytes is not None and self.window_bytes < need:
            raise ScenarioError("policy.window_bytes", f"{self.window_bytes} bytes cannot hold "
                                f"one chunk (its result is {need} bytes; transport.result_*)")

    def queues(self, sc: Scenario) -> list[QueueSpec]:
        return [QueueSpec(Q_IN, self.d_in, "stage0", "stage1"),
                QueueSpec(Q_OUT, self.d_out, "stage1", "stage0"),
                QueueSpec(WINDOW, self.window, "stage1", "stage1", transport=False)]

    def lead(self, sc: Scenario) -> int:
        return self.d_in + min(self.window, sc.steps) - 1

    def programs(self, sc: Scenario) -> list[StageProgram]:
        ops = Stage0Ops(sc, coupling_of(sc, "r1", 0, 1, self.hard_cuts), CallIds())
        return [StageProgram("stage0", self._stage0(ops, self.lead(sc) + 1)),
                StageProgram("stage1", self._mesh(sc))]

    def _stage0(self, ops: Stage0Ops, cap: int) -> Program:
        """Fixed order: send while fewer than ``cap`` chunks are out, else decode.

        After a hard cut the old epoch's chunks still come back (the mesh evicts them
        when the new epoch's first envelope enters): until all are dropped stage0 never
        blocks on a D_in slot and drops whatever arrives first, so the mesh can always
        return them.
        """
        stale = 0
        while not ops.done:
            if not ops.done_sending and ops.cut_due():
                yield from ops.cut()
                stale = ops.outstanding
            elif stale:
                stale -= yield from _drain_step(ops, cap)
            elif not ops.done_sending and ops.outstanding < cap:
                yield from ops.send()
            else:
                yield from ops.decode()

    def _mesh(self, sc: Scenario) -> Program:
        win: deque[_Slot] = deque()
        last_chunk, steps = -1, sc.steps
        nbytes = self.window_bytes if self.window_bytes is not None else sc.transport.result_size
        while win or last_chunk < sc.run.chunks - 1:
            if len(win) < self.window and last_chunk < sc.run.chunks - 1:
                msg = yield Get(Q_IN)
                yield Release(Q_IN)  # the envelope's latents now live in the window
                if msg.init_cache:
                    yield from _evict(win)
                yield Reserve(WINDOW)
                yield Put(WINDOW, Message(INFER, msg.tag, nbytes))
                yield Get(WINDOW)
                win.append(_Slot(msg.tag))
                last_chunk = msg.tag.chunk
            yield from _advance(sc, win, steps)


def _drain_step(ops: Stage0Ops, cap: int) -> Generator[Action, Any, int]:
    """One step of the transient after a hard cut; returns the stale chunks it dropped."""
    view = yield Poll()
    if ops.held or view.ready[Q_OUT] > 0:
        if not ops.held:
            yield from ops.take()
        stale = ops.held[0].tag.epoch != ops.epoch
        yield from ops.decode()
        return int(stale)
    if not ops.done_sending and ops.outstanding < cap and view.free[Q_IN] > 0:
        yield from ops.send()
    else:
        yield WaitChange(view.version)
    return 0


@dataclass
class _Slot:
    """A chunk in the window and the denoise step it runs next."""

    tag: Tag
    step: int = 0


def _evict(win: deque[_Slot]) -> Program:
    """A new epoch: every chunk in the window is stale; send it back to be dropped."""
    while win:
        slot = win.popleft()
        yield Release(WINDOW)
        yield Reserve(Q_OUT)
        yield Put(Q_OUT, Message(INFER, slot.tag))


def _advance(sc: Scenario, win: deque[_Slot], steps: int) -> Program:
    """One generator call: every chunk in the window takes its next denoise step."""
    if not win:
        return
    done = [s for s in win if s.step == steps - 1]
    for _ in done:
        yield Reserve(Q_OUT)  # the result buffer this call writes
    batch = tuple(s.tag.at_step(s.step) for s in win)
    yield Compute("denoise", batch[0], batch=batch)
    for s in win:
        s.step += 1
    for s in done:
        win.popleft()
        yield Release(WINDOW)
        yield Put(Q_OUT, Message(INFER, s.tag, sc.transport.result_size))


# -- the event-graph model -----------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One generator call of the steady schedule: who enters, who runs, who leaves."""

    admits: int | None
    items: tuple[tuple[int, int], ...]  # (chunk, step)
    finishes: int | None


def call_plan(window: int, steps: int, calls: int) -> list[Call]:
    """The mesh's call sequence for an endless stream (it does not depend on timing)."""
    win: deque[list[int]] = deque()
    plan, nxt = [], 0
    for _ in range(calls):
        admits = None
        if len(win) < window:
            admits, nxt = nxt, nxt + 1
            win.append([admits, 0])
        items = tuple((j, s) for j, s in win)
        finishes = win[0][0] if win[0][1] == steps - 1 else None
        for slot in win:
            slot[1] += 1
        if finishes is not None:
            win.popleft()
        plan.append(Call(admits, items, finishes))
    return plan


def schedule_period(window: int, steps: int) -> tuple[int, int]:
    """(calls, chunks) per period of the steady call pattern."""
    seen: dict[tuple[int, ...], tuple[int, int]] = {}
    win: list[int] = []
    admitted = 0
    for c in range(4 * (window + steps) + 8):
        state = tuple(win)
        if state in seen:
            c0, a0 = seen[state]
            return c - c0, admitted - a0
        seen[state] = (c, admitted)
        if len(win) < window:
            win.append(0)
            admitted += 1
        win = [s + 1 for s in win if s + 1 < steps]
    raise AssertionError("the window schedule did not settle")


def _unroll(p: RollingWindow, sc: Scenario) -> int:
    return schedule_period(p.window, sc.steps)[1]


def _model(p: RollingWindow, ctx: GraphContext) -> ModelGraph:
    sc, g = ctx.sc, PeriodicGraph()
    per_calls, per_chunks = schedule_period(p.window, sc.steps)
    n_calls = per_calls * ctx.unroll // per_chunks
    plan = call_plan(p.window, sc.steps, (ctx.base + 3 * ctx.unroll) * per_calls // per_chunks
                     + 4 * (p.window + sc.steps))
    c0 = next(c for c, call in enumerate(plan) if call.admits == ctx.base)
    calls = range(c0, c0 + n_calls)
    for fam, phase, stage in (("build", "build", "stage0"), ("send:q_in", None, "stage0"),
                              ("send:q_out", None, "stage1"), ("decode", "decode", "stage0")):
        g.family(fam, ctx.unroll, fam, phase, stage)
    g.family("admit", n_calls, "admit", None, "stage1", "c", work=False)
    g.family("call", n_calls, "call", "denoise", "stage1", "c")
    _price_rolling(ctx, g, plan, calls)
    _rolling_arcs(p, ctx, g, plan, calls)
    add_input(g, ctx, "build")
    notes = ["hard cuts are transients: the bound is the steady state within an epoch"
             ] if p.hard_cuts else []
    return ModelGraph(g, ctx.unroll, "exact", "fixed call schedule and fixed stage0 order",
                      notes=notes)


def _price_rolling(ctx: GraphContext, g: PeriodicGraph, plan: list[Call], calls: range) -> None:
    tr = ctx.sc.transport
    for j in ctx.chunks:
        g.node("build", j, ctx.cost("build", Tag(0, j)))
        g.node("send:q_in", j, ctx.transport(tr.envelope_size))
        g.node("send:q_out", j, ctx.transport(tr.result_size))
        g.node("decode", j, ctx.cost("decode", Tag(0, j)))
    for c in calls:
        batch = tuple(Tag(0, j, step=s) for j, s in plan[c].items)
        g.node("admit", c, 0.0)
        g.node("call", c, ctx.cost("denoise", batch[0], batch=batch))


def _rolling_arcs(p: RollingWindow, ctx: GraphContext, g: PeriodicGraph, plan: list[Call],
                  calls: range) -> None:
    admitted_at = {call.admits: c for c, call in enumerate(plan) if call.admits is not None}
    lead = p.lead(ctx.sc)
    for c in calls:
        call = plan[c]
        g.arc(("call", c - 1), ("admit", c))                   # calls in order
        g.arc(("admit", c), ("call", c))
        if call.admits is not None:
            g.arc(("send:q_in", call.admits), ("admit", c))     # the envelope arrived
        if call.finishes is not None:
            g.arc(("decode", call.finishes - p.d_out), ("call", c))  # a D_out slot
            g.arc(("call", c), ("send:q_out", call.finishes))
    for j in ctx.chunks:
        g.arc(("admit", admitted_at[j - p.d_in]), ("build", j), 0.0)  # a D_in slot freed
        g.arc(("build", j), ("send:q_in", j))
        g.arc(("send:q_in", j - 1), ("send:q_in", j))
        g.arc(("send:q_out", j - 1), ("send:q_out", j))
        g.arc(("send:q_out", j), ("decode", j))
        g.arc(("build", j + lead), ("decode", j))                # stage0's fixed order
        g.arc(("decode", j), ("build", j + lead + 1))


MODEL = GraphModel(_unroll, _model)
