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

from pipefill.sim.errors import ScenarioError
from pipefill.sim.policies.base import CallIds, Order, Policy
from pipefill.sim.policies.common import Q_IN, Q_OUT, GeneratorMesh, Stage0Ops, coupling_of
from pipefill.sim.program.actions import (
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
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.scenario.model import Scenario

WINDOW = "window"


class RollingWindow(GeneratorMesh, Policy):
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

    def order(self, sc: Scenario) -> Order:
        if any(0 < c < sc.run.chunks for c in self.hard_cuts):
            return Order(False, "after a hard cut stage0 drops stale results as they arrive "
                         "(timing)")
        return Order(True, "fixed call schedule and fixed stage0 order")

    def steady(self) -> RollingWindow:
        return self.model_copy(update={"hard_cuts": []})

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
        yield WaitChange(view.version, on=f"get:{Q_OUT}")
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
