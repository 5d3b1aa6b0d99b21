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

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from pipefill.sim.policies.base import ENVELOPE, RESULT, CallIds, Order, Policy
from pipefill.sim.program.actions import (
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
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.scenario.model import Scenario


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

    def order(self, sc: Scenario) -> Order:
        if self.batch_window_ms is not None:
            return Order(False, "a batching window forms groups at run time")
        return Order(True, "fixed front-end order and fixed groups")

    def fixed_form(self) -> MultiSession | None:
        return self.model_copy(update={"batch_window_ms": None})

    def front(self, s: int) -> str:
        return "stage0" if self.stage0 == "shared" else f"stage0.{s}"

    def stages(self, sc: Scenario) -> tuple[str, ...]:
        fronts = dict.fromkeys(self.front(s) for s in range(sc.run.sessions))
        return (*fronts, "stage1")

    def source_stage(self, sc: Scenario, session: int) -> str:
        return self.front(session)

    def sharded_stages(self, sc: Scenario) -> tuple[str, ...]:
        return ("stage1",)

    def queue_role(self, sc: Scenario, queue: str) -> str | None:
        kind = queue.split(".", 1)[0]
        return {"q_in": ENVELOPE, "q_out": RESULT}.get(kind)

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
                yield WaitChange(view.version, on=_needs(view, left))
                continue
            want = min(self.max_batch, sum(1 for n in left.values() if n))
            deadline = view.now_ms + window
            while len(ready) < want and view.now_ms < deadline:
                # holding the call open for more sessions: the batch's fill
                yield WaitChange(view.version, timeout_ms=deadline - view.now_ms,
                                 on="fill:batch")
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


def _needs(view: StateView, left: dict[int, int]) -> str:
    """What the mesh waits for when no session is ready (the wait lane's words)."""
    need: list[str] = []
    for s, n in left.items():
        if n:
            need.append(f"get:{q_in(s)}" if view.ready[q_in(s)] == 0 else f"slot:{q_out(s)}")
    return "|".join(dict.fromkeys(need))


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
