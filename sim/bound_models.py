"""Event-graph models of policies: how each schedule maps onto a :class:`PeriodicGraph`.

Each model mirrors its policy's programs action for action (DESIGN.md semantics): a
node per Compute and per transport, an arc per wait. ``GraphContext`` prices nodes
with the same ``CostTable.duration`` the engine uses, on the expected costs. A model
says whether its graph is ``exact`` (every stage runs a fixed order, so SimPy's
steady state must equal the bound) or a ``lower_bound`` (a greedy choice whose order
depends on timing: only the orders that always hold are in the graph, plus the
stage's total load per chunk).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from pipefill.sim.graph_model import GraphContext, GraphModel, Load, ModelGraph, add_input
from pipefill.sim.policies.common import Coupling
from pipefill.sim.teg import PeriodicGraph
from pipefill.traces.recorder import Tag

if TYPE_CHECKING:
    from pipefill.sim.scenario import Scenario

#: chunk count of a modelled stream: it never ends (the bound is its steady state)
ENDLESS = 2**62


# -- rank0 + mesh (serial, phase_pp) ------------------------------------------------
@dataclass(frozen=True)
class Rank0Mesh:
    """The shared structure of ``serial`` and ``phase_pp``.

    ``lead``: stage0's fixed order builds chunk k+lead right before decoding chunk k
    (None: the order is greedy and only the always-true orders are modelled).
    """

    coupling: Coupling
    d_in: int
    d_out: int
    lead: int | None
    anchor_only: bool = False


def rank0_mesh_graph(ctx: GraphContext, m: Rank0Mesh) -> PeriodicGraph:
    g = PeriodicGraph()
    steps = ctx.sc.steps
    denoise = [f"denoise.{s}" for s in range(steps)]
    fams = [("build", "build", "stage0"), ("send:q_in", None, "stage0"),
            ("recompute", "recompute", "stage1"),
            *((d, "denoise", "stage1") for d in denoise),
            ("send:q_out", None, "stage1"), ("decode", "decode", "stage0"),
            ("encode", "encode", "stage0")]
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
    if m.lead is None:
        g.arc(("build", j - 1), ("build", j))
        g.arc(("encode", j - 1), ("decode", j))
        return
    g.arc(("build", j + m.lead), ("decode", j))
    g.arc(("encode", j), ("build", j + m.lead + 1))


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


def fixed_lead(p: Any, sc: Scenario) -> tuple[int | None, str]:
    """phase_pp: the lead of stage0's order when the greedy choice provably fixes it.

    Proofs (steady state, saturated source, anchor = full, recompute_every = 1 for r0a):
    (1) r0a with lag 0: build k+1 needs decode k and decode k+1 needs build k+1, so
        stage0 alternates build k, decode k whatever the preference: lead 0.
    (2) producer_first, r0a, 0 < lag < d_in: once encode k is done, build k+lag+1 is
        enabled (its D_in slot freed when chunk k finished) and preferred; build k+lag+2
        needs encode k+1, so decode k+1 comes next: lead = lag.
    (3) producer_first, d_out = 1 (r1, r0, or r0a with lag >= d_in): stage1 cannot
        finish chunk k+1 before decode k frees the only D_out slot, so build k+d_in+1
        (which needs that finish) follows decode k; build k+d_in is enabled when chunk
        k finishes, no later than result k arrives, and producer_first takes it first
        (from the start: it fills all d_in slots before its first decode): lead = d_in.
    Otherwise the order depends on timing and the model is a lower bound. (consumer_first
    with d_out = 1 is not fixed: when stage0 is the bottleneck it settles into building
    fewer than d_in ahead, e.g. build k+1, decode k.)
    """
    if sc.run.source == "realtime" and not (p.recompute == "r0a" and p.recompute_lag == 0):
        return None, "a realtime source makes stage0's greedy order depend on input timing"
    if p.recompute == "r0a" and (p.anchor == "anchor_only" or p.recompute_every != 1):
        why = "anchor_only" if p.anchor == "anchor_only" else "recompute_every > 1"
        return None, f"with r0a and {why} stage0's greedy order depends on timing"
    r0a, lag = p.recompute == "r0a", p.recompute_lag
    if r0a and lag == 0:
        return 0, "r0a with lag 0 serialises stage0: build k, decode k, build k+1"
    producer = p.stage0_order == "producer_first"
    if producer and r0a and lag < p.d_in:
        return lag, f"producer_first with lag < d_in: stage0 builds k+{lag} before decoding k"
    if producer and p.d_out == 1 and (not r0a or lag >= p.d_in):
        return p.d_in, f"producer_first, d_out = 1: stage0 builds k+{p.d_in} before decoding k"
    return None, (f"{p.stage0_order} with d_in={p.d_in}, d_out={p.d_out} is a greedy choice "
                  "whose order depends on timing")


def phase_pp_model(p: Any, ctx: GraphContext) -> ModelGraph:
    sc = ctx.sc
    coupling = Coupling(ENDLESS, p.recompute, p.recompute_lag,
                        p.recompute_every, ())
    lead, reason = fixed_lead(p, sc)
    anchor_only = p.recompute == "r0a" and p.anchor == "anchor_only"
    m = Rank0Mesh(coupling, p.d_in, p.d_out, lead, anchor_only)
    g = rank0_mesh_graph(ctx, m)
    notes = ["hard cuts are transients: the bound is the steady state within an epoch"
             ] if p.hard_cuts else []
    if lead is not None:
        return ModelGraph(g, ctx.unroll, "exact", reason, notes=notes)
    loads = [stage0_load(ctx, m)]
    return ModelGraph(g, ctx.unroll, "lower_bound", reason, loads, notes)


def serial_model(p: Any, ctx: GraphContext) -> ModelGraph:
    coupling = Coupling(ENDLESS, p.recompute, 0, p.recompute_every, ())
    g = rank0_mesh_graph(ctx, Rank0Mesh(coupling, 1, 1, 0))
    return ModelGraph(g, ctx.unroll, "exact", "serial runs one chunk at a time in a fixed order")


def every_unroll(p: Any, sc: Scenario) -> int:
    return p.recompute_every if p.recompute != "r1" else 1


CORE_MODELS: dict[str, GraphModel] = {
    "serial": GraphModel(every_unroll, serial_model),
    "phase_pp": GraphModel(every_unroll, phase_pp_model),
}
