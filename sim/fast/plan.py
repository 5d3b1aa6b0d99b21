"""A fixed-order schedule flattened into arrays: what the fast path re-times.

A fixed-order schedule (``Policy.order(sc).fixed``) runs the same actions under every
timing, so its recorded event graph (:mod:`pipefill.sim.schedule.derive`) *is* every run.
:class:`Plan` holds it as arrays (nodes in topological order, their predecessors, what
each compute prices; the marks and queue changes that hang off nodes), cached per
structure (:func:`structure_key`): sweep points and replicas that differ only in cost
values or seeds share one plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipefill.sim.scenario.costs import PHASES
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.schedule.derive import COMPUTE, INPUT, SEND, Schedule, derive


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
    marks: Marks
    #: each node's track (index into ``tracks``) and chunk
    track_ix: np.ndarray
    tracks: tuple[str, ...]
    node_chunk: np.ndarray


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
    born: np.ndarray

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
    return _plan_cached(structure_key(sc), CacheHolder(sc))


def structure_key(sc: Scenario) -> str:
    """What the recorded actions depend on: everything but cost values, seed and warm-up
    (costs matter only through which phases exist, the denoise steps and whatever the
    policy derives from them, :meth:`Policy.structure`: a balanced block split)."""
    run = sc.run.model_dump(exclude={"seed", "warmup", "target_fps"})
    phases = sorted(sc.costs)
    tr = (sc.transport.envelope_size, sc.transport.result_size, sc.transport.context_bytes)
    return repr((sc.policy.params(), sc.policy.structure(sc), run, phases, sc.steps, tr))


class CacheHolder:
    """Carries the scenario into the cache without taking part in its key."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return True


@lru_cache(maxsize=64)
def _plan_cached(key: str, holder: CacheHolder) -> Plan:
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
    tracks: dict[str, int] = {}
    track_ix = np.array([tracks.setdefault(n.track, len(tracks)) for n in s.nodes],
                        dtype=np.int64)
    return Plan(s, preds, kind, phase, share, np.asarray(ptr, dtype=np.int64),
                np.asarray(sess, dtype=np.int64), np.asarray(chunk, dtype=np.int64),
                np.asarray(step, dtype=np.int64), nbytes, at_ms, _counts(s), stage_ix,
                tuple(stages), _marks(s), track_ix, tuple(tracks),
                np.array([n.chunk for n in s.nodes], dtype=np.int64))


def _counts(s: Schedule) -> Counts:
    names = tuple(q.name for q in s.queues)
    pos = {n: i for i, n in enumerate(names)}
    return Counts(np.array([c.node for c in s.counts], dtype=np.int64),
                  np.array([pos[c.queue] for c in s.counts], dtype=np.int64),
                  np.array([c.held for c in s.counts], dtype=np.int64),
                  np.array([c.nbytes for c in s.counts], dtype=np.int64),
                  names, tuple(q.dst for q in s.queues),
                  np.asarray(s.count_born, dtype=np.int64))


#: mark names the metrics read (their codes in :class:`Marks`)
MARK_NAMES = ("emit", "input", "hard_cut", "drop")


def _marks(s: Schedule) -> Marks:
    names = [MARK_NAMES.index(m.name) if m.name in MARK_NAMES else -1 for m in s.marks]
    return Marks(np.array([m.node for m in s.marks], dtype=np.int64),
                 np.asarray(names, dtype=np.int64),
                 np.array([m.tag.session for m in s.marks], dtype=np.int64),
                 np.array([m.tag.chunk for m in s.marks], dtype=np.int64),
                 np.asarray(s.mark_born, dtype=np.int64))


@dataclass(frozen=True)
class Marks:
    """Marks in recording order: the node whose end times them (-1: the origin), the
    name (index into :data:`MARK_NAMES`, -1 other), session, chunk, and how many nodes
    existed when each was recorded (``born``)."""

    node: np.ndarray
    name: np.ndarray
    session: np.ndarray
    chunk: np.ndarray
    born: np.ndarray


def flatten_scenario(sc: Scenario, chunks: int) -> Plan:
    """``sc`` recorded for ``chunks`` chunks (not cached: the periodic search's short runs)."""
    short = sc.model_copy(update={"run": sc.run.model_copy(update={"chunks": chunks})})
    return _flatten(derive(short))
