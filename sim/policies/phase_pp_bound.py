"""phase_pp's greedy stage0: its explicit LOWER-BOUND event graph (``PhasePP.lower_bound``).

When stage0's choice between building and decoding depends on timing (see
``pipefill.sim.policies.phase_pp.fixed_lead``), no single recorded order describes every
run, so the bound cannot be derived from the programs. This model keeps only the orders
that always hold (builds in chunk order, decodes in chunk order, the queue, transport
and recompute dependencies of DESIGN.md) plus stage0's total load per chunk: every run's
period is >= its maximum cycle ratio. It is labelled ``lower_bound`` wherever it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from pipefill.sim.graph.model import GraphContext, Load, LowerBound, ModelGraph, add_input
from pipefill.sim.graph.periodic import PeriodicGraph
from pipefill.sim.policies.common import Coupling
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.policies.phase_pp import PhasePP

#: chunk count of a modelled stream: it never ends (the bound is its steady state)
ENDLESS = 2**62

#: the stage of each phase in the rank0 + mesh model: its families' stage, and whose
#: dispatch gap a call of the phase pays
RANK0_MESH_STAGE = {"build": "stage0", "decode": "stage0", "encode": "stage0",
                    "anchor_decode": "stage0", "recompute": "stage1", "denoise": "stage1"}


@dataclass(frozen=True)
class Rank0Mesh:
    """phase_pp's structure as the model needs it: the context coupling, the queue
    depths, and whether the context waits only for the anchor decode."""

    coupling: Coupling
    d_in: int
    d_out: int
    anchor_only: bool = False


def rank0_mesh_graph(ctx: GraphContext, m: Rank0Mesh) -> PeriodicGraph:
    g = PeriodicGraph()
    steps = ctx.sc.steps
    denoise = [f"denoise.{s}" for s in range(steps)]
    of = RANK0_MESH_STAGE
    fams = [("build", "build", of["build"]), ("send:q_in", None, of["build"]),
            ("recompute", "recompute", of["recompute"]),
            *((d, "denoise", of["denoise"]) for d in denoise),
            ("send:q_out", None, of["denoise"]), ("decode", "decode", of["decode"]),
            ("encode", "encode", of["encode"])]
    for name, phase, stage in fams:
        g.family(name, ctx.unroll, name.split(".")[0], phase, stage)
    _price_rank0_mesh(g, ctx, m, denoise)
    for j in ctx.chunks:
        _mesh_arcs(g, m, j, denoise)
        _stage0_arcs(g, ctx, m, j)
    add_input(g, ctx, "build")
    return g


def _price_rank0_mesh(g: PeriodicGraph, ctx: GraphContext, m: Rank0Mesh,
                      denoise: list[str]) -> None:
    tr = ctx.sc.transport
    has_encode = ctx.table.has("encode")
    for j in ctx.chunks:
        tag = Tag(0, j)
        ctx_bytes = tr.context_bytes if m.coupling.source(j) is not None else 0
        g.node("build", j, ctx.cost("build", tag))
        g.node("send:q_in", j, ctx.transport(tr.envelope_size + ctx_bytes))
        g.node("recompute", j, ctx.cost("recompute", tag) if m.coupling.recomputes(j) else 0.0)
        for s, name in enumerate(denoise):
            g.node(name, j, ctx.cost("denoise", Tag(0, j, step=s)))
        g.node("send:q_out", j, ctx.transport(tr.result_size))
        g.node("decode", j, ctx.cost("decode", tag))
        # anchor_only may re-encode after the anchor decode instead: not on this chain
        feeds = m.coupling.feeds(j) and has_encode and not m.anchor_only
        g.node("encode", j, ctx.cost("encode", tag) if feeds else 0.0)


def _mesh_arcs(g: PeriodicGraph, m: Rank0Mesh, j: int, denoise: list[str]) -> None:
    last = denoise[-1]
    g.arc(("build", j), ("send:q_in", j))
    g.arc(("send:q_in", j - 1), ("send:q_in", j))      # one link, FIFO
    g.arc(("send:q_in", j), ("recompute", j))          # the envelope arrived
    g.arc((last, j - 1), ("recompute", j))             # stage1 runs chunks in order
    g.arc(("decode", j - m.d_out), ("recompute", j))   # a D_out slot for the result
    g.arc(("recompute", j), (denoise[0], j))
    for a, b in pairwise(denoise):
        g.arc((a, j), (b, j))
    g.arc((last, j), ("send:q_out", j))
    g.arc(("send:q_out", j - 1), ("send:q_out", j))
    g.arc(("send:q_out", j), ("decode", j))            # the result arrived
    g.arc((last, j - m.d_in), ("build", j))            # a D_in slot for the envelope


def _stage0_arcs(g: PeriodicGraph, ctx: GraphContext, m: Rank0Mesh, j: int) -> None:
    g.arc(("decode", j), ("encode", j))                # encode is part of decode's step
    src = m.coupling.source(j)
    if src is not None:
        if m.anchor_only:
            g.arc(("send:q_out", src), ("build", j), _anchor_context_ms(g, ctx, src))
        else:
            g.arc(("encode", src), ("build", j))
    # a greedy stage0 keeps only the orders that always hold: builds in order, decodes in order
    g.arc(("build", j - 1), ("build", j))
    g.arc(("encode", j - 1), ("decode", j))


def _anchor_context_ms(g: PeriodicGraph, ctx: GraphContext, src: int) -> float:
    """Result arrival to context ready with anchor_only: the cheaper of the anchor decode
    and the full decode (stage0 takes whichever comes first), then the re-encode."""
    tag = Tag(0, src)
    first = min(ctx.cost("anchor_decode", tag), g.duration("decode", src))
    return g.duration("send:q_out", src) + first + ctx.cost("encode", tag)


def stage0_load(ctx: GraphContext, m: Rank0Mesh) -> Load:
    """Stage0's build + decode + re-encode per period: bounds any order of stage0."""
    total, counts = 0.0, {"build": 0.0, "decode": 0.0, "encode": 0.0}
    for j in ctx.chunks:
        tag = Tag(0, j)
        encodes = m.coupling.feeds(j) and ctx.table.has("encode")
        for phase in counts:
            d = ctx.cost(phase, tag) if phase != "encode" or encodes else 0.0
            total += d
            counts[phase] += 1.0 if d > 0 else 0.0
    return Load("stage0", total, counts)


def lower_bound(p: PhasePP) -> LowerBound:
    """The lower-bound model of a phase_pp whose stage0 order is greedy: builds and
    decodes each in chunk order, the queue, transport and context arcs, stage0's load."""
    coupling = Coupling(ENDLESS, p.recompute, p.recompute_lag, p.recompute_every, ())
    anchor_only = p.recompute == "r0a" and p.anchor == "anchor_only"
    m = Rank0Mesh(coupling, p.d_in, p.d_out, anchor_only)

    def build(ctx: GraphContext, reason: str) -> ModelGraph:
        return ModelGraph(rank0_mesh_graph(ctx, m), ctx.unroll, "lower_bound", reason,
                          [stage0_load(ctx, m)])

    return LowerBound(p.recompute_every if p.recompute != "r1" else 1, RANK0_MESH_STAGE,
                      build)
