"""Layer pipelining (GPipe-style): the generator's blocks split over P stages, M items a batch.

Each chunk is one item: stage p runs its slice of the DiT for every denoise step of the
item and sends the activations on. Items go through in batches of ``items``; the next
batch enters stage0 only when the last item of the current one has left the last stage
(the GPipe flush: the next chunks need this batch's KV cache), so a batch of M items on
P balanced stages of t ms takes (M + P - 1) t and each stage idles (P - 1) / (M + P - 1)
of it. Build and decode are outside the layer pipeline and not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from pipefill.sim.policies.base import ACTIVATION, CONTROL, CallIds, Order
from pipefill.sim.policies.block_split import BlockSplitPolicy, link
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

FLUSH = "flush"


class LayerPP(BlockSplitPolicy):
    """P stages each run a contiguous slice of the DiT's blocks; items move in batches.

    Invariants: every stage handles items in chunk order; at most ``items`` items of one
    batch are between stages; a batch starts only after the previous one fully left the
    last stage; every chunk is emitted exactly once, by the last stage.
    """

    name: ClassVar[str] = "layer_pp"

    items: int = Field(4, ge=1, description="items (chunks) per batch: M micro-batches in flight")

    def required_phases(self, sc: Scenario) -> tuple[str, ...]:
        return ("denoise",)

    def levers(self, sc: Scenario) -> dict[str, str]:
        p, m = self.n_stages, self.items
        bubble = (p - 1) / (m + p - 1)
        more = (p - 1) / (2 * m + p - 1)
        return {**super().levers(sc),
                "fill/drain bubbles": f"items = {2 * m} (policy.items): each stage idles "
                                      f"(P-1)/(M+P-1) = {bubble:.0%} of a batch, then {more:.0%}"}

    def order(self, sc: Scenario) -> Order:
        return Order(True, "every stage runs items in a fixed order")

    def queue_role(self, sc: Scenario, queue: str) -> str | None:
        return CONTROL if queue == FLUSH else ACTIVATION

    def queues(self, sc: Scenario) -> list[QueueSpec]:
        names = self.stages_of()
        specs = [QueueSpec(link(p), self.items, names[p], names[p + 1])
                 for p in range(self.n_stages - 1)]
        if self.n_stages > 1:
            specs.append(QueueSpec(FLUSH, 1, names[-1], names[0]))
        return specs

    def programs(self, sc: Scenario) -> list[StageProgram]:
        ids = CallIds()
        shares, slices = self.shares(sc), self.slices(sc)
        return [StageProgram(name, self._stage(sc, p, (shares[p], slices[p]), ids))
                for p, name in enumerate(self.stages_of())]

    def _stage(self, sc: Scenario, p: int, part: tuple[float, tuple[float, float]],
               ids: CallIds) -> Program:
        """Stage p's items. Payloads (None in the simulator): each step's call takes the
        previous call's output, the first one the activations received; the last call's
        output is sent on."""
        last, nbytes = p == self.n_stages - 1, self.act_bytes(sc)
        for i in range(sc.run.chunks):
            x: Any = None
            if p == 0:
                tag = Tag(0, i, ids.next(), 0)
                if i and i % self.items == 0 and self.n_stages > 1:
                    # the previous batch has left the pipeline: stage0's drain bubble
                    yield Get(FLUSH, wait=f"drain:{FLUSH}")
                    yield Release(FLUSH)
                yield WaitInput(tag)
            else:
                # a batch's first item reaches stage p only after the pipeline refilled
                first = i % self.items == 0
                x = yield Get(link(p - 1), wait=f"fill:{link(p - 1)}" if first else "")
                tag = x.tag
            if not last:
                yield Reserve(link(p))
            for s in range(sc.steps):
                x = yield Compute("denoise", tag.at_step(s), inputs=x, share=part[0],
                                  blocks=part[1])
            if p > 0:
                yield Release(link(p - 1))
            if not last:
                yield Put(link(p), Message(INFER, tag, nbytes, payload=x))
                continue
            yield Mark("emit", tag)
            batch_done = i % self.items == self.items - 1
            if self.n_stages > 1 and batch_done and i < sc.run.chunks - 1:
                yield Reserve(FLUSH)
                yield Put(FLUSH, Message(INFER, tag))
