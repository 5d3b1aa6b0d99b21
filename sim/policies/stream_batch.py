"""Stream Batch (StreamDiffusionV2): denoising steps as the batch, DiT blocks over W stages.

Time is cut into *ticks*. In tick t every stage runs its slice of the DiT once over a
batch of up to n latents, one per noise level: chunk t at step 0, chunk t - W at step 1,
..., chunk t - W(n-1) at step n-1. A latent at step s comes back to stage0 from the
last stage W ticks later, so W ticks are in flight around the ring and every stage can
be busy. Stage0 VAE-encodes chunk t's input before tick t; the last stage decodes the
chunk that finished its last step in tick t and emits it. A chunk's first frame needs
n x W micro-steps (n passes over W stages): that is the pipeline fill in TTFF.

Links between stages hold ``max_outstanding`` ticks (a slot is freed when the next stage
has finished the tick); the loop link back to stage0 holds W ticks, which the ring can
never exceed, so it never blocks and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from pipefill.sim.policies.base import ACTIVATION, RESULT, CallIds, Order
from pipefill.sim.policies.block_split import BlockSplitPolicy, balanced_split, link
from pipefill.sim.program.actions import (
    INFER,
    Compute,
    Get,
    Mark,
    Message,
    Program,
    Put,
    QueueSpec,
    Release,
    Reserve,
    StageProgram,
    WaitInput,
)
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.scenario.model import Scenario

LOOP = "loop"


class StreamBatch(BlockSplitPolicy):
    """W stages, n denoise steps of n different chunks batched in every tick.

    Invariants: every stage runs ticks in order; a latent advances exactly one step per
    W ticks; each chunk is encoded once (stage0), decoded and emitted once (last stage),
    in chunk order; at most ``max_outstanding`` ticks wait on each forward link.
    """

    name: ClassVar[str] = "stream_batch"

    steps: int | None = Field(
        None, ge=1, description="n: denoise steps per chunk, all in flight as the batch "
        "(default: costs.denoise.steps)")
    balance: bool = Field(
        False, description="reassign blocks so stages with encode/decode get fewer")
    max_outstanding: int = Field(
        2, ge=1, description="ticks a stage may have sent that the next stage has not finished")

    @model_validator(mode="after")
    def _one_split(self) -> StreamBatch:
        if self.balance and self.split is not None:
            raise ValueError("give split or balance = true, not both")
        return self

    def required_phases(self, sc: Scenario) -> tuple[str, ...]:
        return ("denoise", "decode")

    def n_steps(self, sc: Scenario) -> int:
        return self.steps if self.steps is not None else sc.steps

    def structure_reads_costs(self) -> bool:
        return self.balance and self.split is None

    def block_counts(self, sc: Scenario) -> list[int]:
        """Blocks per stage; ``balance`` prices a block at the steady batch of n latents."""
        if self.split is not None or not self.balance:
            return super().block_counts(sc)
        spec = sc.costs["denoise"]
        n = self.n_steps(sc)
        per_block = spec.base_mean() * spec.batch_scale(n) / self.blocks
        edges = [0.0] * self.n_stages
        edges[0] += _mean(sc, "encode")
        edges[-1] += _mean(sc, "decode")
        return balanced_split(self.blocks, per_block, edges)

    def order(self, sc: Scenario) -> Order:
        return Order(True, "every stage runs ticks in a fixed order")

    def queue_role(self, sc: Scenario, queue: str) -> str | None:
        return RESULT if queue == LOOP else ACTIVATION

    def queues(self, sc: Scenario) -> list[QueueSpec]:
        names = self.stages_of()
        specs = [QueueSpec(link(w), self.max_outstanding, names[w], names[w + 1])
                 for w in range(self.n_stages - 1)]
        if self.n_stages > 1 and self.n_steps(sc) > 1:
            specs.append(QueueSpec(LOOP, self.n_stages, names[-1], names[0]))
        return specs

    def programs(self, sc: Scenario) -> list[StageProgram]:
        plan = TickPlan(sc.run.chunks, self.n_stages, self.n_steps(sc))
        ids = CallIds()
        call_ids = [ids.next() for _ in range(sc.run.chunks)]
        shares, slices = self.shares(sc), self.slices(sc)
        return [StageProgram(name, self._stage(sc, plan, w, (shares[w], slices[w]), call_ids))
                for w, name in enumerate(self.stages_of())]

    def _stage(self, sc: Scenario, plan: TickPlan, w: int,
               part: tuple[float, tuple[float, float]], call_ids: list[int]) -> Program:
        """Stage w's ticks. Payloads (None in the simulator): stage0's call takes the
        fresh chunk's encoded input and the looped-in latents, every other stage the
        previous stage's activations; what a call returns is what it sends on."""
        first, last = w == 0, w == self.n_stages - 1
        for t in plan.ticks():
            tags = tuple(Tag(0, j, call_ids[j], 0, s) for j, s in plan.items(t))
            inputs: Any = None
            if first:
                fresh = yield from _enter(sc, plan, t, call_ids)
                looped = (yield Get(LOOP)) if plan.looped_in(t) else None
                inputs = (fresh, looped)
            else:
                inputs = yield Get(link(w - 1))
            out = None if last else link(w)
            if last and plan.loops_out(t):
                out = LOOP
            if out is not None:
                yield Reserve(out)
            done = yield Compute("denoise", tags[0], inputs=inputs, batch=tags, share=part[0],
                                 blocks=part[1])
            if not first:
                yield Release(link(w - 1))
            elif plan.looped_in(t):
                yield Release(LOOP)
            if out is not None:
                moving = len(tags) if out != LOOP else plan.continuing(t)
                yield Put(out, Message(INFER, tags[0], self._bytes(sc, out, moving),
                                       payload=done))
            if last:
                yield from _finish(plan, t, call_ids, done)

    def _bytes(self, sc: Scenario, queue: str, items: int) -> int:
        return items * (sc.transport.result_size if queue == LOOP else self.act_bytes(sc))


def _mean(sc: Scenario, phase: str) -> float:
    spec = sc.cost(phase)
    return spec.base_mean() if spec is not None else 0.0


def _enter(sc: Scenario, plan: TickPlan, t: int, call_ids: list[int]) -> Program:
    """Stage0 before tick t: chunk t's input arrives and is VAE-encoded; returns the
    encoded input (None without an encode phase, or in the simulator)."""
    if t >= plan.chunks:
        return None
    tag = Tag(0, t, call_ids[t], 0)
    yield WaitInput(tag)
    if sc.cost("encode") is None:
        return None
    return (yield Compute("encode", tag))


def _finish(plan: TickPlan, t: int, call_ids: list[int], latents: Any) -> Program:
    """Last stage after tick t: decode and emit the chunk whose last step ran
    (``latents``: the tick's output, which holds that chunk's)."""
    j = plan.finished(t)
    if j is not None:
        tag = Tag(0, j, call_ids[j], 0)
        yield Compute("decode", tag, inputs=latents)
        yield Mark("emit", tag)


class TickPlan:
    """Which (chunk, step) pairs tick t batches: chunk t - W*s at step s, when it exists."""

    def __init__(self, chunks: int, stages: int, steps: int) -> None:
        self.chunks, self.w, self.n = chunks, stages, steps

    def items(self, t: int) -> list[tuple[int, int]]:
        return [(t - self.w * s, s) for s in range(self.n) if 0 <= t - self.w * s < self.chunks]

    def ticks(self) -> Iterator[int]:
        """Non-empty ticks in order (fewer than W chunks leave gaps in the ring)."""
        return (t for t in range(self.chunks + self.w * (self.n - 1)) if self.items(t))

    def continuing(self, t: int) -> int:
        """Latents of tick t that still have steps to go (they loop back to stage0)."""
        return sum(1 for _, s in self.items(t) if s < self.n - 1)

    def loops_out(self, t: int) -> bool:
        return self.w > 1 and self.continuing(t) > 0

    def looped_in(self, t: int) -> bool:
        return self.w > 1 and any(s > 0 for _, s in self.items(t))

    def finished(self, t: int) -> int | None:
        return next((j for j, s in self.items(t) if s == self.n - 1), None)
