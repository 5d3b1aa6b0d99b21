"""The fast path's trace: a fixed-order schedule re-timed whole, written as trace rows.

A fixed-order schedule (``Policy.order(sc).fixed``) runs the same actions under every
timing, so its recorded event graph (:mod:`pipefill.sim.schedule.derive`) *is* every run:

    start[v] = max(end[u] for u in preds[v]),  end[v] = start[v] + duration[v]

over nodes in topological order. :class:`~pipefill.sim.fast.rounds.Timing` prices every
node with the same ``CostTable`` draws and transport formula as the SimPy engine (same
seed, same floats) and evaluates the recurrence, configurations side by side. Span and
emit times equal SimPy's (checked to 1e-9 ms by ``tests/sim/fast/test_fastpath.py``). Metrics-only
runs never build a trace nor hold the whole run (:mod:`pipefill.sim.fast.run`); this
module is for a written trace (``--engine fast --out``) and multi-session metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipefill.sim.fast.blocks import FullSource
from pipefill.sim.fast.plan import NotFixedOrder, Plan, compile_plan, fast_reason, structure_key
from pipefill.sim.fast.rounds import Timing
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.schedule.derive import COMPUTE, SEND
from pipefill.traces.meta import run_metadata
from pipefill.traces.recorder import Recorder
from pipefill.traces.schema import Trace

__all__ = ["NotFixedOrder", "Timed", "compile_plan", "fast_reason", "fast_trace", "structure_key",
           "time_batch", "trace_of"]


@dataclass(frozen=True)
class Timed:
    """Start and end of every node of ``plan`` for each configuration (N, B)."""

    plan: Plan
    start: np.ndarray
    end: np.ndarray


def time_batch(plan: Plan, scenarios: Sequence[Scenario]) -> Timed:
    """Re-time the whole ``plan`` under each scenario (all of the plan's structure)."""
    source = FullSource(plan)
    timed = Timing(scenarios, plan.stages, source.reach).time(source.next(1 << 62))
    return Timed(plan, timed.start, timed.end)


def fast_trace(sc: Scenario) -> Trace:
    """The run's trace from the fast path: spans, marks and queue counters (changes at
    one instant in recording order, which follows every wait; SimPy may order
    coincident, unrelated changes differently)."""
    return trace_of(time_batch(compile_plan(sc), [sc]), 0, sc)


def trace_of(timed: Timed, column: int, sc: Scenario) -> Trace:
    """Configuration ``column`` of ``timed`` as a trace."""
    rec = Recorder()
    s, start, end = timed.plan.schedule, timed.start[:, column], timed.end[:, column]
    for i, node in enumerate(s.nodes):
        if node.kind == COMPUTE and node.action is not None:
            for tag in node.action.items:
                rec.span(node.label, node.track, "compute", tag, start[i], end[i])
        elif node.kind == SEND and node.tag is not None:
            src = node.track.removeprefix("lane:")
            rec.span("send", src, "comm", node.tag, start[i], end[i], value=node.nbytes)
    for m in s.marks:
        rec.mark(m.name, m.stage, m.tag, float(end[m.node]) if m.node >= 0 else 0.0)
    c = timed.plan.counts
    order, held, total = c.replay(end)
    for k, i in enumerate(order):
        t = float(end[c.node[i]]) if c.node[i] >= 0 else 0.0
        rec.counter(c.names[c.queue[i]], c.dst[c.queue[i]], t, float(held[k]))
        rec.counter("bytes_in_flight", "all", t, float(total[k]))
    return rec.trace(run_metadata(sc, source="sim", backend="fast", extra={"engine": "fast"}))
