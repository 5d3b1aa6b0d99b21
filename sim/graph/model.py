"""What a bound is read from: an event graph plus its kind, loads and notes, and the
hook type through which a policy supplies an explicit lower-bound model.

These types are generic: the derived (exact) graph of any fixed-order policy and a
policy's own lower-bound model (``Policy.lower_bound``, e.g. phase_pp's greedy stage0)
both produce a :class:`ModelGraph`. Nothing here knows a policy, a stage or a phase.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pipefill.sim.graph.periodic import PeriodicGraph
from pipefill.sim.program.actions import Compute
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.scenario.costs import CostTable
    from pipefill.sim.scenario.model import Scenario

#: exact: the simulated steady state equals it; lower_bound: every run's period is >= it;
#: estimate: a dynamic choice replaced by its fixed-order form
Kind = Literal["exact", "lower_bound", "estimate"]


@dataclass(frozen=True)
class GraphContext:
    """Prices for one unrolled period: ``chunks`` are the absolute chunk indices in it.

    ``base`` is a multiple of the unroll, far enough from chunk 0 that every lookback
    (queue depth, recompute lag) lands on steady-state chunks. ``stage_of`` maps a phase
    to the stage whose dispatch gap a call of it pays (the model's own stage map).
    """

    sc: Scenario
    table: CostTable
    unroll: int
    base: int
    stage_of: Mapping[str, str] = field(default_factory=dict)

    @property
    def chunks(self) -> range:
        return range(self.base, self.base + self.unroll)

    def cost(self, phase: str, tag: Tag, batch: tuple[Tag, ...] = (), share: float = 1.0) -> float:
        """What the engine would charge for this Compute, its stage's dispatch gap included
        (0 when the phase has no cost)."""
        if not self.table.has(phase):
            return 0.0
        gap = self.sc.dispatch_ms(self.stage_of.get(phase, ""))
        return gap + self.table.duration(Compute(phase, tag, batch=batch, share=share))

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
class LowerBound:
    """A policy's explicit lower-bound model of a timing-dependent order (the hook
    ``Policy.lower_bound`` returns it; None there means the policy has none).

    ``unroll``: chunks per period before cost patterns; ``stage_of``: phase -> stage
    (dispatch gaps); ``build(ctx, reason)`` returns a ``lower_bound`` ModelGraph whose
    maximum cycle ratio (and loads) no run of the policy can beat.
    """

    unroll: int
    stage_of: Mapping[str, str]
    build: Callable[[GraphContext, str], ModelGraph]


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
