"""Building blocks shared by the rank0 + mesh policies (serial, phase_pp).

Stage0 (rank0) builds envelopes, decodes results and emits frames; stage1 (the mesh)
runs recompute and the denoise steps. :class:`Coupling` answers the static questions
about recompute and hard cuts; :class:`Stage0Ops` holds stage0's protocol state and
the sub-programs (send, decode, anchor, cut, shutdown) that policies sequence.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipefill.sim.policies.base import ENVELOPE, RESULT, CallIds
from pipefill.sim.program.actions import (
    INFER,
    SHUTDOWN,
    Compute,
    Flush,
    Get,
    Mark,
    Message,
    Program,
    Put,
    Release,
    Reserve,
    WaitInput,
)
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.scenario.model import Scenario

Q_IN, Q_OUT = "q_in", "q_out"
#: the generator's stage: the mesh that may run tensor-parallel
MESH = "stage1"


class GeneratorMesh:
    """The distributed hooks of the rank0 + mesh policies (mixed into the policy class):
    the generator's stage may run tensor-parallel; q_in carries envelopes, q_out results."""

    def sharded_stages(self, sc: Scenario) -> tuple[str, ...]:
        return (MESH,)

    def queue_role(self, sc: Scenario, queue: str) -> str | None:
        return {Q_IN: ENVELOPE, Q_OUT: RESULT}.get(queue)


@dataclass(frozen=True)
class Coupling:
    """Recompute and epoch structure of a run, known before it starts.

    ``recomputes(j)``: stage1 runs a recompute pass for chunk j (never on the first chunk
    of an epoch, which starts from an init-cache envelope). ``source(j)``: the earlier
    chunk whose decode (r0a) feeds j's context, or None.
    """

    chunks: int
    recompute: str = "r1"
    lag: int = 0
    every: int = 1
    cuts: tuple[int, ...] = ()

    def epoch_start(self, j: int) -> int:
        i = bisect.bisect_right(self.cuts, j)
        return self.cuts[i - 1] if i else 0

    def recomputes(self, j: int) -> bool:
        start = self.epoch_start(j)
        return self.recompute != "r1" and j > start and (j - start) % self.every == 0

    def source(self, j: int) -> int | None:
        if self.recompute != "r0a" or not self.recomputes(j):
            return None
        c = j - 1 - self.lag
        return c if c >= self.epoch_start(j) else None

    def feeds(self, c: int) -> bool:
        """Chunk c's decoded frames are some later chunk's context."""
        j = c + 1 + self.lag
        return j < self.chunks and self.source(j) == c


def coupling_of(sc: Scenario, recompute: str, lag: int, every: int,
                cuts: list[int]) -> Coupling:
    valid = tuple(sorted({c for c in cuts if 0 < c < sc.run.chunks}))
    return Coupling(sc.run.chunks, recompute, lag, every, valid)


@dataclass
class Stage0Ops:
    """Stage0's protocol state and sub-programs (each a generator to ``yield from``).

    Invariants: envelopes are built in chunk order; results are decoded in arrival
    (= chunk) order; a result whose epoch is older than the current one is dropped,
    never decoded or emitted; ``outstanding`` counts envelopes sent whose result was
    neither emitted nor dropped.
    """

    sc: Scenario
    coupling: Coupling
    ids: CallIds
    anchor_only: bool = False
    next_chunk: int = 0
    epoch: int = 0
    outstanding: int = 0
    held: deque[Message] = field(default_factory=deque)
    context: dict[int, Any] = field(default_factory=dict)
    encoded: set[int] = field(default_factory=set)

    @property
    def done_sending(self) -> bool:
        return self.next_chunk >= self.sc.run.chunks

    @property
    def done(self) -> bool:
        return self.done_sending and self.outstanding == 0

    def cut_due(self) -> bool:
        j = self.next_chunk
        return j in self.coupling.cuts and self.epoch < self.coupling.cuts.index(j) + 1

    def has_context(self, j: int) -> bool:
        src = self.coupling.source(j)
        return src is None or src in self.encoded

    def holds(self, chunk: int) -> bool:
        return any(m.tag.chunk == chunk for m in self.held)

    def send(self) -> Program:
        """Reserve a D_in slot, build the next envelope and send it."""
        j = self.next_chunk
        tag = Tag(0, j, self.ids.next(), self.epoch)
        yield WaitInput(tag)
        yield Reserve(Q_IN)
        src = self.coupling.source(j)
        ctx = self.context.pop(src, None) if src is not None else None
        payload = yield Compute("build", tag, inputs=ctx)
        self.context = {c: v for c, v in self.context.items() if src is None or c > src}
        tr = self.sc.transport
        nbytes = tr.envelope_size + (tr.context_bytes if src is not None else 0)
        first = j == self.coupling.epoch_start(j)
        msg = Message(INFER, tag, nbytes, init_cache=first,
                      recompute=self.coupling.recomputes(j), payload=payload)
        yield Put(Q_IN, msg)
        self.next_chunk += 1
        self.outstanding += 1

    def take(self) -> Program:
        """Receive the next result and hold it (its D_out slot stays taken)."""
        msg = yield Get(Q_OUT)
        self.held.append(msg)

    def anchor(self, chunk: int) -> Program:
        """Decode only the anchor frames of a held result (+ re-encode) for the next build."""
        msg = next(m for m in self.held if m.tag.chunk == chunk)
        frames = yield Compute("anchor_decode", msg.tag, inputs=msg)
        self.context[chunk] = yield from self._encode(msg.tag, frames)
        self.encoded.add(chunk)

    def _encode(self, tag: Tag, frames: Any) -> Program:
        if self.sc.cost("encode") is None:
            return frames
        out = yield Compute("encode", tag, inputs=frames)
        return out

    def decode(self) -> Program:
        """Fully decode the oldest result (receiving it first if needed) and emit it."""
        if not self.held:
            yield from self.take()
        msg = self.held.popleft()
        if msg.tag.epoch != self.epoch:
            yield from self._drop(msg)
            return
        frames = yield Compute("decode", msg.tag, inputs=msg)
        yield Release(Q_OUT)
        yield Mark("emit", msg.tag)
        self.outstanding -= 1
        c = msg.tag.chunk
        if self.coupling.feeds(c) and c not in self.encoded:
            # the frames are out; re-encoding them is for the next envelope's context
            self.context[c] = yield from self._encode(msg.tag, frames)
            self.encoded.add(c)
        self._forget(c)

    def _forget(self, decoded: int) -> None:
        """Drop what no later step looks up, so a long stream's state stays bounded:
        results decode in order (every chunk <= ``decoded`` is done) and a build j's
        context source, when it has one, is j - 1 - lag >= next_chunk - 1 - lag."""
        horizon = min(decoded, self.next_chunk - 2 - self.coupling.lag)
        if self.encoded and min(self.encoded) <= horizon:
            self.encoded = {e for e in self.encoded if e > horizon}

    def _drop(self, msg: Message) -> Program:
        yield Mark("drop", msg.tag)
        yield Release(Q_OUT)
        self.outstanding -= 1

    def cut(self) -> Program:
        """Hard cut before chunk ``next_chunk``: flush both queues, bump the epoch.

        Envelopes still queued are discarded unrun; results already received are
        dropped; work in flight on stage1 comes back later with the old epoch and is
        dropped on receipt (never emitted).
        """
        j = self.next_chunk
        yield Mark("hard_cut", Tag(0, j, self.ids.next(), self.epoch + 1))
        self.epoch += 1
        self.context.clear()
        stale_in = yield Flush(Q_IN)
        for msg in stale_in:
            yield Mark("drop", msg.tag)
            self.outstanding -= 1
        stale_out = yield Flush(Q_OUT)
        while self.held:
            yield from self._drop(self.held.popleft())
        for msg in stale_out:
            yield Mark("drop", msg.tag)
            self.outstanding -= 1

    def shutdown(self) -> Program:
        """Tell stage1 to stop (a control call through q_in)."""
        yield Reserve(Q_IN)
        tag = Tag(0, self.sc.run.chunks, self.ids.next(), self.epoch)
        yield Put(Q_IN, Message(SHUTDOWN, tag))


def generator_program(sc: Scenario) -> Program:
    """Stage1 (mesh): receive an envelope, take a D_out slot, recompute, denoise, return.

    The D_out slot is taken *before* the generator starts, because the result buffer
    it writes into is what D_out bounds; the D_in slot is freed when the work ends.
    """
    steps = sc.steps
    result_bytes = sc.transport.result_size
    while True:
        msg = yield Get(Q_IN)
        if msg.is_shutdown:
            yield Release(Q_IN)
            return
        yield Reserve(Q_OUT)
        if msg.recompute:
            out = yield Compute("recompute", msg.tag, inputs=msg)
            msg = msg.carrying(out)
        for s in range(steps):
            out = yield Compute("denoise", msg.tag.at_step(s), inputs=msg)
            msg = msg.carrying(out)
        yield Release(Q_IN)
        yield Put(Q_OUT, Message(INFER, msg.tag, result_bytes, payload=msg.payload))
