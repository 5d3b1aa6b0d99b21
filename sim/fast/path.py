"""The fast path: re-time a fixed-order schedule with sampled costs by a max-plus recurrence.

A fixed-order schedule (``Policy.order(sc).fixed``) runs the same actions under every
timing, so its recorded event graph (:mod:`pipefill.sim.schedule.derive`) *is* every run:

    start[v] = max(end[u] for u in preds[v]),  end[v] = start[v] + duration[v]

over nodes in topological order. This module prices every node with the same
``CostTable`` draws and transport formula as the SimPy engine (same seed, same floats)
and evaluates the recurrence for many configurations at once (a numba loop over nodes,
configurations side by side): replicas and sweep points that share a structure share
one compiled plan. Span and emit times equal SimPy's (checked to 1e-9 ms by
``tests/sim/fast/test_fastpath.py``); metrics come straight from the arrays
(:mod:`pipefill.sim.fast.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from pipefill.sim.scenario.costs import PHASES, CostTable
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.schedule.derive import COMPUTE, INPUT, SEND, Schedule, derive
from pipefill.traces.meta import run_metadata
from pipefill.traces.recorder import Recorder
from pipefill.traces.schema import Trace


class NotFixedOrder(ValueError):
    """The fast path was asked for a schedule whose order depends on timing."""


def fast_reason(sc: Scenario) -> str | None:
    """None when the fast path is valid for ``sc``, else why not (one line)."""
    if sc.has_shared_device:
        shared = ", ".join(f"{d} ({', '.join(s)})" for d, s in sc.shared_devices().items())
        return (f"stages share a device ({shared}): contention makes the timing decide the "
                "order; the fast path needs a fixed order")
    order = sc.policy.order(sc)
    if not order.fixed:
        return f"{sc.policy.name}: {order.reason}; the fast path needs a fixed order"
    return None


@dataclass(frozen=True)
class Plan:
    """A fixed-order run as arrays: ``preds`` (N, 2, -1 = none) in topological order;
    compute nodes' items as CSR (``item_ptr``) with phase index, session, chunk, step;
    ``share`` per node; ``nbytes`` of send nodes; ``at_ms`` of input nodes. A compute
    node lasts its stage's dispatch gap plus its cost; its span starts after the gap."""

    schedule: Schedule
    preds: np.ndarray
    kind: np.ndarray  # 0 wait, 1 compute, 2 send, 3 input
    phase: np.ndarray
    share: np.ndarray
    item_ptr: np.ndarray
    item_session: np.ndarray
    item_chunk: np.ndarray
    item_step: np.ndarray
    nbytes: np.ndarray
    at_ms: np.ndarray
    counts: Counts
    #: compute nodes' stage (index into ``stages``; -1 for other nodes): their dispatch gap
    stage_ix: np.ndarray
    stages: tuple[str, ...]


@dataclass(frozen=True)
class Counts:
    """Queue changes in recording order: the node whose end times them, the queue (index
    into ``names``), the change of slots held and of bytes in flight."""

    node: np.ndarray
    queue: np.ndarray
    held: np.ndarray
    nbytes: np.ndarray
    names: tuple[str, ...]
    dst: tuple[str, ...]

    def replay(self, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Changes in time order (ties: recording order, which follows every wait):
        (order, slots held by the changed queue after it, total bytes after it)."""
        t = np.where(self.node >= 0, end[np.maximum(self.node, 0)], 0.0)
        order = np.argsort(t, kind="stable")
        q, dh = self.queue[order], self.held[order]
        held = np.zeros(len(order), dtype=np.int64)
        for i in range(len(self.names)):
            sel = q == i
            held[sel] = np.cumsum(dh[sel])
        return order, held, np.cumsum(self.nbytes[order])


_KIND = {COMPUTE: 1, SEND: 2, INPUT: 3}


def compile_plan(sc: Scenario) -> Plan:
    """Record ``sc`` (which must be fixed-order) and flatten it; cached per structure."""
    reason = fast_reason(sc)
    if reason is not None:
        raise NotFixedOrder(reason)
    return _plan_cached(structure_key(sc), _Holder(sc))


def structure_key(sc: Scenario) -> str:
    """What the recorded actions depend on: everything but cost values, seed and warm-up
    (costs matter only through which phases exist, the denoise steps and whatever the
    policy derives from them, :meth:`Policy.structure`: a balanced block split)."""
    run = sc.run.model_dump(exclude={"seed", "warmup", "target_fps"})
    phases = sorted(sc.costs)
    tr = (sc.transport.envelope_size, sc.transport.result_size, sc.transport.context_bytes)
    return repr((sc.policy.params(), sc.policy.structure(sc), run, phases, sc.steps, tr))


class _Holder:
    """Carries the scenario into the cache without taking part in its key."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return True


@lru_cache(maxsize=64)
def _plan_cached(key: str, holder: _Holder) -> Plan:
    return _flatten(derive(holder.sc))


def _flatten(s: Schedule) -> Plan:
    n = len(s.nodes)
    preds = np.full((n, 2), -1, dtype=np.int64)
    kind = np.zeros(n, dtype=np.int64)
    phase = np.full(n, -1, dtype=np.int64)
    share = np.ones(n)
    nbytes = np.zeros(n)
    at_ms = np.zeros(n)
    ptr = [0]
    sess: list[int] = []
    chunk: list[int] = []
    step: list[int] = []
    stage_ix = np.full(n, -1, dtype=np.int64)
    stages: dict[str, int] = {}
    for i, node in enumerate(s.nodes):
        preds[i, :len(node.preds)] = node.preds
        kind[i] = _KIND.get(node.kind, 0)
        nbytes[i], at_ms[i] = node.nbytes, node.at_ms
        if node.kind == COMPUTE:
            stage_ix[i] = stages.setdefault(node.track, len(stages))
        if node.action is not None:
            phase[i] = PHASES.index(node.action.phase)
            share[i] = node.action.share
            for t in node.action.items:
                sess.append(t.session)
                chunk.append(t.chunk)
                step.append(max(t.step, 0))
        ptr.append(len(sess))
    return Plan(s, preds, kind, phase, share, np.asarray(ptr, dtype=np.int64),
                np.asarray(sess, dtype=np.int64), np.asarray(chunk, dtype=np.int64),
                np.asarray(step, dtype=np.int64), nbytes, at_ms, _counts(s), stage_ix,
                tuple(stages))


def _counts(s: Schedule) -> Counts:
    names = tuple(q.name for q in s.queues)
    pos = {n: i for i, n in enumerate(names)}
    return Counts(np.array([c.node for c in s.counts], dtype=np.int64),
                  np.array([pos[c.queue] for c in s.counts], dtype=np.int64),
                  np.array([c.held for c in s.counts], dtype=np.int64),
                  np.array([c.nbytes for c in s.counts], dtype=np.int64),
                  names, tuple(q.dst for q in s.queues))


@dataclass(frozen=True)
class _Group:
    """Compute nodes of one phase with the same item count: where their items' costs are
    in the cost table (flat session/chunk/step indices per item position)."""

    phase: str
    n_items: int
    nodes: np.ndarray
    share: np.ndarray
    items: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]


def _groups(plan: Plan) -> list[_Group]:
    out = []
    for idx, name in enumerate(PHASES):
        nodes = np.flatnonzero(plan.phase == idx)
        lo, hi = plan.item_ptr[nodes], plan.item_ptr[nodes + 1]
        count = hi - lo
        for n_items in np.unique(count):
            sel = nodes[count == n_items]
            first = lo[count == n_items]
            items = tuple((plan.item_session[first + j], plan.item_chunk[first + j],
                           plan.item_step[first + j]) for j in range(int(n_items)))
            out.append(_Group(name, int(n_items), sel, plan.share[sel], items))
    return out


def durations(plan: Plan, sc: Scenario, groups: list[_Group],
              gaps: np.ndarray | None) -> np.ndarray:
    """Every node's duration in ``sc`` (same draws and float operations as the engine);
    ``gaps``: its dispatch gaps (:func:`_gaps`; None: none)."""
    run = sc.run
    table = CostTable(sc.costs, run.sessions, run.chunks, run.seed)
    dur = np.zeros(len(plan.kind))
    send = plan.kind == 2
    tr = sc.transport
    dur[send] = tr.latency_ms + plan.nbytes[send] / (tr.bandwidth_gbps * 1e6)
    inp = plan.kind == 3
    dur[inp] = plan.at_ms[inp]
    for g in groups:
        if table.has(g.phase):
            dur[g.nodes] = _group_durations(table, g, sc.costs[g.phase])
    if gaps is not None:
        dur += gaps
    return dur


def _gaps(plan: Plan, sc: Scenario) -> np.ndarray | None:
    """Each node's dispatch gap (its stage's, for compute nodes; 0 elsewhere), or None
    when the scenario has none."""
    per_stage = np.array([sc.dispatch_ms(st) for st in plan.stages] + [0.0])
    if not per_stage.any():
        return None
    return per_stage[plan.stage_ix]  # -1 picks the trailing 0


def _group_durations(table: CostTable, g: _Group, spec: object) -> np.ndarray:
    arr = table._tables[g.phase]
    acc = np.zeros(len(g.nodes))
    for sess, chunk, step in g.items:  # summed in item order, as sum() in CostTable
        acc = acc + arr[sess, chunk, step % arr.shape[2]]
    if g.n_items == 1:
        return g.share * acc
    scale = spec.batch_scale(g.n_items)  # type: ignore[attr-defined]
    return g.share * scale * (acc / g.n_items)


@njit(cache=True)
def _recurrence(preds: np.ndarray, dur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, b = dur.shape
    start = np.zeros((n, b))
    end = np.zeros((n, b))
    for i in range(n):
        p0, p1 = preds[i, 0], preds[i, 1]
        for j in range(b):
            t = 0.0
            if p0 >= 0 and end[p0, j] > t:
                t = end[p0, j]
            if p1 >= 0 and end[p1, j] > t:
                t = end[p1, j]
            start[i, j] = t
            end[i, j] = t + dur[i, j]
    return start, end


@dataclass(frozen=True)
class Timed:
    """Start and end of every node of ``plan`` for each configuration (N, B)."""

    plan: Plan
    start: np.ndarray
    end: np.ndarray
    dur: np.ndarray


def time_batch(plan: Plan, scenarios: Sequence[Scenario]) -> Timed:
    """Re-time ``plan`` under each scenario (all of the plan's structure) at once."""
    groups = _groups(plan)
    gaps = [_gaps(plan, sc) for sc in scenarios]
    dur = np.stack([durations(plan, sc, groups, gap) for sc, gap in zip(scenarios, gaps,
                                                                        strict=True)], axis=1)
    start, end = _recurrence(plan.preds, dur)
    for col, gap in enumerate(gaps):
        if gap is not None:  # a compute's span starts after its stage's dispatch gap
            start[:, col] += gap
    return Timed(plan, start, end, dur)


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
