"""Multi-session: S independent streams share the mesh; its generator calls batch sessions.

The front end (``stage0`` shared by all sessions, or ``stage0.<s>`` per session) runs a
fixed order: build round k + lead for its sessions, then decode round k. The mesh
(``stage1``) batches the envelopes of up to ``max_batch`` sessions into one generator
call priced by the batch cost model. With ``batch_window_ms`` unset the groups are fixed
(sessions 0..B-1, B..2B-1, ... of each round, waiting for the whole group); with a
window, the mesh takes whatever has arrived, oldest chunk first, and waits at most the
window for the batch to fill. Each session has its own queues ``q_in.<s>``/``q_out.<s>``
of capacity d_in/d_out, so D_in and D_out keep their per-stream meaning.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from pipefill.sim.actions import (
    INFER,
    Compute,
    Get,
    Mark,
    Message,
    Poll,
    Program,
    Put,
    QueueSpec,
    Release,
    Reserve,
    StageProgram,
    StateView,
    WaitChange,
    WaitInput,
)
from pipefill.sim.graph_model import GraphContext, GraphModel, ModelGraph, add_input
from pipefill.sim.policies.base import CallIds, Policy
from pipefill.sim.teg import PeriodicGraph
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.scenario import Scenario


def q_in(s: int) -> str:
    return f"q_in.{s}"


def q_out(s: int) -> str:
    return f"q_out.{s}"


class MultiSession(Policy):
    """S sessions through one front end (or one each) and a batching mesh.

    Invariants: each session's chunks are built, generated, decoded and emitted in
    order, exactly once; at most d_in envelopes and d_out results per session are held;
    a generator call holds at most ``max_batch`` sessions, each at most once.
    """

    name: ClassVar[str] = "multi_session"
    multi_session: ClassVar[bool] = True

    d_in: int = Field(2, ge=1, description="per session: envelopes whose generation is not done")
    d_out: int = Field(2, ge=1, description="per session: results whose decode is not done")
    lead: int = Field(
        1, ge=0, description="rounds the front end builds ahead of its decodes (< d_in + d_out)")
    max_batch: int = Field(4, ge=1, description="sessions one generator call may batch")
    batch_window_ms: float | None = Field(
        None, ge=0, description="wait at most this long for a batch to fill; unset: fixed "
        "groups of max_batch sessions, each call waits for its whole group")
    stage0: Literal["shared", "per_session"] = Field(
        "shared", description="one front end for all sessions, or one per session")
    recompute: Literal["r1", "r0"] = Field(
        "r1", description="r1: none; r0: a latent-anchored recompute pass per chunk")

    @field_validator("lead")
    @classmethod
    def _lead(cls, v: int, info: ValidationInfo) -> int:
        d_in, d_out = info.data.get("d_in"), info.data.get("d_out")
        if d_in is not None and d_out is not None and v >= d_in + d_out:
            raise ValueError(f"must be < d_in + d_out = {d_in + d_out}: building round k+lead "
                             "needs round k's decode to free its slots (deadlock)")
        return v

    def required_phases(self, sc: Scenario) -> tuple[str, ...]:
        extra = ("recompute",) if self.recompute == "r0" else ()
        return ("build", "denoise", "decode", *extra)

    def front(self, s: int) -> str:
        return "stage0" if self.stage0 == "shared" else f"stage0.{s}"

    def stages(self, sc: Scenario) -> tuple[str, ...]:
        fronts = dict.fromkeys(self.front(s) for s in range(sc.run.sessions))
        return (*fronts, "stage1")

    def queues(self, sc: Scenario) -> list[QueueSpec]:
        out: list[QueueSpec] = []
        for s in range(sc.run.sessions):
            out += [QueueSpec(q_in(s), self.d_in, self.front(s), "stage1"),
                    QueueSpec(q_out(s), self.d_out, "stage1", self.front(s))]
        return out

    def groups(self, sc: Scenario) -> list[list[int]]:
        sessions = list(range(sc.run.sessions))
        return [sessions[i:i + self.max_batch] for i in range(0, len(sessions), self.max_batch)]

    def programs(self, sc: Scenario) -> list[StageProgram]:
        ids = CallIds()
        sessions = list(range(sc.run.sessions))
        fronts = [sessions] if self.stage0 == "shared" else [[s] for s in sessions]
        progs = [StageProgram(self.front(group[0]), self._front(sc, group, ids))
                 for group in fronts]
        mesh = self._mesh_fixed(sc) if self.batch_window_ms is None else self._mesh_window(sc)
        return [*progs, StageProgram("stage1", mesh)]

    def _front(self, sc: Scenario, sessions: list[int], ids: CallIds) -> Program:
        chunks = sc.run.chunks
        for k in range(-self.lead, chunks):
            if k + self.lead < chunks:
                for s in sessions:
                    yield from self._build(sc, Tag(s, k + self.lead, ids.next(), 0))
            if k >= 0:
                for s in sessions:
                    yield from _decode(s)

    def _build(self, sc: Scenario, tag: Tag) -> Program:
        yield WaitInput(tag)
        yield Reserve(q_in(tag.session))
        yield Compute("build", tag)
        msg = Message(INFER, tag, sc.transport.envelope_size, init_cache=tag.chunk == 0,
                      recompute=self.recompute == "r0" and tag.chunk > 0)
        yield Put(q_in(tag.session), msg)

    def _mesh_fixed(self, sc: Scenario) -> Program:
        for _ in range(sc.run.chunks):
            for group in self.groups(sc):
                msgs = []
                for s in group:
                    msgs.append((yield Get(q_in(s))))
                yield from _generate(sc, msgs)

    def _mesh_window(self, sc: Scenario) -> Program:
        window = float(self.batch_window_ms or 0.0)
        left = dict.fromkeys(range(sc.run.sessions), sc.run.chunks)
        while any(left.values()):
            view = yield Poll()
            ready = _ready(view, left, sc.run.chunks)
            if not ready:
                yield WaitChange(view.version)
                continue
            want = min(self.max_batch, sum(1 for n in left.values() if n))
            deadline = view.now_ms + window
            while len(ready) < want and view.now_ms < deadline:
                yield WaitChange(view.version, timeout_ms=deadline - view.now_ms)
                view = yield Poll()
                ready = _ready(view, left, sc.run.chunks)
            msgs = []
            for s in ready[:self.max_batch]:
                left[s] -= 1
                msgs.append((yield Get(q_in(s))))
            yield from _generate(sc, msgs)


def _ready(view: StateView, left: dict[int, int], chunks: int) -> list[int]:
    """Sessions whose next envelope has arrived and whose result has a free D_out slot,
    oldest chunk first. The slot check keeps the mesh from waiting on a session the
    front end may only serve after it got a slot of another one (a deadlock)."""
    ready = [s for s, n in left.items()
             if n and view.ready[q_in(s)] > 0 and view.free[q_out(s)] > 0]
    return sorted(ready, key=lambda s: (chunks - left[s], s))


def _decode(s: int) -> Program:
    msg = yield Get(q_out(s))
    yield Compute("decode", msg.tag)
    yield Release(q_out(s))
    yield Mark("emit", msg.tag)


def _generate(sc: Scenario, msgs: list[Message]) -> Program:
    """One batched generator call over ``msgs`` (one per session)."""
    sessions = [m.tag.session for m in msgs]
    for s in sessions:
        yield Reserve(q_out(s))  # the result buffers this call writes
    tags = tuple(m.tag for m in msgs)
    if any(m.recompute for m in msgs):
        yield Compute("recompute", tags[0], batch=tags)
    for step in range(sc.steps):
        batch = tuple(t.at_step(step) for t in tags)
        yield Compute("denoise", batch[0], batch=batch)
    for s in sessions:
        yield Release(q_in(s))
    for m in msgs:
        yield Put(q_out(m.tag.session), Message(INFER, m.tag, sc.transport.result_size))


def _unroll(p: MultiSession, sc: Scenario) -> int:
    return 1


def _model(p: MultiSession, ctx: GraphContext) -> ModelGraph:
    """One round (every session's chunk k) per period, fixed groups."""
    sc, g = ctx.sc, PeriodicGraph()
    sessions, groups = list(range(sc.run.sessions)), p.groups(sc)
    for s in sessions:
        for fam, phase, stage in (("build", "build", p.front(s)), ("send:q_in", None, p.front(s)),
                                  ("decode", "decode", p.front(s)), ("send:q_out", None, "stage1")):
            g.family(f"{fam}.{s}", ctx.unroll, f"{fam} s{s}", phase, stage)
    for gi, group in enumerate(groups):
        who = f"s{group[0]}" + (f"..s{group[-1]}" if len(group) > 1 else "")
        g.family(f"recompute.{gi}", ctx.unroll, f"recompute {who}", "recompute", "stage1")
        for st in range(sc.steps):
            g.family(f"denoise.{gi}.{st}", ctx.unroll, f"denoise {who}", "denoise", "stage1")
    for k in ctx.chunks:
        _price_round(p, ctx, g, groups, k)
    for k in ctx.chunks:
        _round_arcs(p, g, groups, k, sc.steps)
    add_input(g, ctx, *(f"build.{s}" for s in sessions))
    if p.batch_window_ms is None:
        return ModelGraph(g, ctx.unroll, "exact", "fixed front-end order and fixed groups")
    return ModelGraph(g, ctx.unroll, "estimate", "a batching window forms groups at run time; "
                      "the bound assumes full fixed groups")


def _price_round(p: MultiSession, ctx: GraphContext, g: PeriodicGraph,
                 groups: list[list[int]], k: int) -> None:
    tr = ctx.sc.transport
    for s in range(ctx.sc.run.sessions):
        g.node(f"build.{s}", k, ctx.cost("build", Tag(s, k)))
        g.node(f"send:q_in.{s}", k, ctx.transport(tr.envelope_size))
        g.node(f"decode.{s}", k, ctx.cost("decode", Tag(s, k)))
        g.node(f"send:q_out.{s}", k, ctx.transport(tr.result_size))
    for gi, group in enumerate(groups):
        tags = tuple(Tag(s, k) for s in group)
        rec = ctx.cost("recompute", tags[0], batch=tags) if p.recompute == "r0" else 0.0
        g.node(f"recompute.{gi}", k, rec)
        for st in range(ctx.sc.steps):
            batch = tuple(t.at_step(st) for t in tags)
            g.node(f"denoise.{gi}.{st}", k, ctx.cost("denoise", batch[0], batch=batch))


def _round_arcs(p: MultiSession, g: PeriodicGraph, groups: list[list[int]], k: int,
                steps: int) -> None:
    last = [f"denoise.{gi}.{steps - 1}" for gi in range(len(groups))]
    sessions = [s for group in groups for s in group]
    for gi, group in enumerate(groups):
        first = f"recompute.{gi}"
        prev = (last[gi - 1], k) if gi else (last[-1], k - 1)
        g.arc(prev, (first, k))                                  # the mesh's call order
        g.arc((first, k), (f"denoise.{gi}.0", k))
        for st in range(1, steps):
            g.arc((f"denoise.{gi}.{st - 1}", k), (f"denoise.{gi}.{st}", k))
        for s in group:
            g.arc((f"send:q_in.{s}", k), (first, k))             # the envelope arrived
            g.arc((f"decode.{s}", k - p.d_out), (first, k))      # a D_out slot
            g.arc((last[gi], k - p.d_in), (f"build.{s}", k))     # a D_in slot
            g.arc((last[gi], k), (f"send:q_out.{s}", k))
            g.arc((f"send:q_out.{s}", k), (f"decode.{s}", k))    # the result arrived
            g.arc((f"build.{s}", k), (f"send:q_in.{s}", k))
    _lane_arcs(p, g, sessions, k)
    _front_arcs(p, g, sessions, k)


def _lane_arcs(p: MultiSession, g: PeriodicGraph, sessions: list[int], k: int) -> None:
    """Each sending stage's link carries its messages one at a time, in put order."""
    order = [(f"send:q_out.{s}", k) for s in sessions]
    for a, b in zip([(f"send:q_out.{sessions[-1]}", k - 1), *order], order, strict=False):
        g.arc(a, b)
    if p.stage0 == "per_session":
        for s in sessions:
            g.arc((f"send:q_in.{s}", k - 1), (f"send:q_in.{s}", k))
        return
    ins = [(f"send:q_in.{s}", k) for s in sessions]
    for a, b in zip([(f"send:q_in.{sessions[-1]}", k - 1), *ins], ins, strict=False):
        g.arc(a, b)


def _front_arcs(p: MultiSession, g: PeriodicGraph, sessions: list[int], k: int) -> None:
    """The front end's fixed order: builds of round k+lead, then decodes of round k."""
    fronts = [sessions] if p.stage0 == "shared" else [[s] for s in sessions]
    for members in fronts:
        seq = [(f"build.{s}", k + p.lead) for s in members]
        seq += [(f"decode.{s}", k) for s in members]
        seq.append((f"build.{members[0]}", k + p.lead + 1))
        for a, b in pairwise(seq):
            g.arc(a, b)


MODEL = GraphModel(_unroll, _model)
