"""What a policy's event-graph model is made of (shared by ``pipefill.sim.bound_models`` and the
policy modules, which must not import the policy registry).

``GraphContext`` prices nodes with the same ``CostTable.duration`` the engine uses, on
the expected costs; a model returns a ``ModelGraph`` saying whether its graph is
``exact`` (fixed order on every stage), a ``lower_bound`` or an ``estimate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pipefill.sim.actions import Compute
from pipefill.sim.costs import CostTable
from pipefill.sim.teg import PeriodicGraph
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.scenario import Scenario

Kind = Literal["exact", "lower_bound", "estimate"]


@dataclass(frozen=True)
class GraphContext:
    """Prices for one unrolled period: ``chunks`` are the absolute chunk indices in it.

    ``base`` is a multiple of the unroll, far enough from chunk 0 that every lookback
    (queue depth, recompute lag) lands on steady-state chunks.
    """

    sc: Scenario
    table: CostTable
    unroll: int
    base: int

    @property
    def chunks(self) -> range:
        return range(self.base, self.base + self.unroll)

    def cost(self, phase: str, tag: Tag, batch: tuple[Tag, ...] = (), share: float = 1.0) -> float:
        """What the engine would charge for this Compute (0 when the phase has no cost)."""
        if not self.table.has(phase):
            return 0.0
        return self.table.duration(Compute(phase, tag, batch=batch, share=share))

    def transport(self, nbytes: int) -> float:
        return self.sc.transport.time_ms(nbytes)


@dataclass(frozen=True)
class Load:
    """A stage's total work per period: a lower bound the graph cannot express."""

    stage: str
    ms: float
    phases: dict[str, float]  # phase -> occurrences per period (d load / d phase cost)


@dataclass
class ModelGraph:
    """A policy's event graph plus how to read it."""

    graph: PeriodicGraph
    chunks_per_period: int
    kind: Kind
    reason: str
    loads: list[Load] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GraphModel:
    """How to model one policy: the unroll it needs and the builder."""

    unroll: Callable[[Any, Scenario], int]
    build: Callable[[Any, GraphContext], ModelGraph]


def add_input(g: PeriodicGraph, ctx: GraphContext, *firsts: str) -> None:
    """A realtime source: input k completes every 1000 * frames / fps_in ms (for every
    session at once); the families ``firsts`` wait for it."""
    run = ctx.sc.run
    if run.source != "realtime" or run.fps_in is None:
        return
    period = run.frames_per_chunk * 1000.0 / run.fps_in
    g.family("input", ctx.unroll, "input", stage="source", work=False)
    for j in ctx.chunks:
        g.node("input", j, period)
    for j in ctx.chunks:
        g.arc(("input", j - 1), ("input", j))
        for first in firsts:
            g.arc(("input", j), (first, j))
