"""A fixed-order run handed out as blocks of nodes, so no round holds the whole run.

A :class:`Block` is a contiguous range of the run's nodes with everything absolute
(predecessors, the nodes marks and queue changes hang off, chunks), plus ``floor``:
every node, item or mark after the block has a chunk >= floor, so chunks below it are
finished. :class:`FullSource` cuts a recorded plan; :class:`PeriodicSource` generates the
blocks of ``head + period x m + tail`` (:mod:`pipefill.sim.fast.periodic`) for a run of
any length, whole periods at a time. Marks and counts belong to the block of the node
recorded next after them (``born``), so each one's node is in its block or before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipefill.sim.fast.periodic import Periodic, chunk_floor
from pipefill.sim.fast.plan import Plan


@dataclass(frozen=True)
class Block:
    """Nodes ``n0 .. n0 + len - 1`` of a run (see the module doc); ``reach``: how far back
    (in nodes) any predecessor, mark or count of the run refers."""

    n0: int
    preds: np.ndarray
    kind: np.ndarray
    phase: np.ndarray
    share: np.ndarray
    stage_ix: np.ndarray
    track_ix: np.ndarray
    node_chunk: np.ndarray
    item_ptr: np.ndarray
    item_session: np.ndarray
    item_chunk: np.ndarray
    item_step: np.ndarray
    nbytes: np.ndarray
    mark_node: np.ndarray
    mark_name: np.ndarray
    mark_session: np.ndarray
    mark_chunk: np.ndarray
    count_node: np.ndarray
    count_queue: np.ndarray
    count_held: np.ndarray
    count_nbytes: np.ndarray
    floor: int
    last: bool

    def __len__(self) -> int:
        return len(self.kind)


def _reach(plan: Plan) -> int:
    idx = np.arange(len(plan.kind))
    pr = plan.preds
    r = int((idx[:, None] - np.where(pr >= 0, pr, idx[:, None])).max(initial=0))
    for node, born in ((plan.marks.node, plan.marks.born), (plan.counts.node, plan.counts.born)):
        ok = node >= 0
        if ok.any():
            r = max(r, int((born[ok] - node[ok]).max()))
    return r + 1


def _slice(plan: Plan, n0: int, n1: int, floor: int, last: bool, shift: tuple[int, int] = (0, 0),
           marks: slice | None = None, counts: slice | None = None) -> Block:
    """Nodes n0..n1-1 of ``plan`` as a block, moved ``shift`` = (nodes, chunks) later."""
    dn, dc = shift
    lo, hi = plan.item_ptr[n0], plan.item_ptr[n1]
    pr = plan.preds[n0:n1]
    m, c = plan.marks, plan.counts
    ms = marks if marks is not None else slice(0, 0)
    cs = counts if counts is not None else slice(0, 0)
    return Block(
        n0 + dn, np.where(pr >= 0, pr + dn, -1), plan.kind[n0:n1], plan.phase[n0:n1],
        plan.share[n0:n1], plan.stage_ix[n0:n1], plan.track_ix[n0:n1],
        _move(plan.node_chunk[n0:n1], dc), plan.item_ptr[n0:n1 + 1] - lo,
        plan.item_session[lo:hi], _move(plan.item_chunk[lo:hi], dc), plan.item_step[lo:hi],
        plan.nbytes[n0:n1], np.where(m.node[ms] >= 0, m.node[ms] + dn, -1), m.name[ms],
        m.session[ms], _move(m.chunk[ms], dc), np.where(c.node[cs] >= 0, c.node[cs] + dn, -1),
        c.queue[cs], c.held[cs], c.nbytes[cs], floor, last)


def _move(chunks: np.ndarray, dc: int) -> np.ndarray:
    return np.where(chunks >= 0, chunks + dc, chunks) if dc else chunks


def _born_slice(born: np.ndarray, lo: int, hi: int, last: bool) -> slice:
    """Entries recorded before node ``hi`` and not before ``lo`` (all the rest if last)."""
    a = int(np.searchsorted(born, lo, side="left")) if lo > 0 else 0
    b = len(born) if last else int(np.searchsorted(born, hi, side="left"))
    return slice(a, b)


def concat(blocks: list[Block]) -> Block:
    """Consecutive blocks as one."""
    if len(blocks) == 1:
        return blocks[0]
    ptr = [blocks[0].item_ptr]
    for b in blocks[1:]:
        ptr.append(b.item_ptr[1:] + ptr[-1][-1])
    cat = {f: np.concatenate([getattr(b, f) for b in blocks])
           for f in ("preds", "kind", "phase", "share", "stage_ix", "track_ix", "node_chunk",
                     "item_session", "item_chunk", "item_step", "nbytes", "mark_node",
                     "mark_name", "mark_session", "mark_chunk", "count_node", "count_queue",
                     "count_held", "count_nbytes")}
    return Block(n0=blocks[0].n0, item_ptr=np.concatenate(ptr), floor=blocks[-1].floor,
                 last=blocks[-1].last, **cat)


class FullSource:
    """Blocks of a plan recorded whole."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.floors = chunk_floor(plan)
        self.n = len(plan.kind)
        self.at = 0
        self.reach = _reach(plan)

    @property
    def done(self) -> bool:
        return self.at >= self.n and self.at > 0

    def next(self, upto_chunk: int) -> Block:
        """The next block: up to where every later node is of chunk >= ``upto_chunk``."""
        n0 = self.at
        n1 = int(np.searchsorted(self.floors, upto_chunk, side="left"))
        n1 = min(self.n, max(n1, n0 + 1))
        last = n1 >= self.n
        self.at = n1 if not last else self.n + 1
        p = self.plan
        return _slice(p, n0, n1, int(self.floors[n1]), last,
                      marks=_born_slice(p.marks.born, n0, n1, last),
                      counts=_born_slice(p.counts.born, n0, n1, last))


class PeriodicSource:
    """Blocks of ``head + period x (reps + 1) + tail``, whole periods at a time."""

    def __init__(self, per: Periodic) -> None:
        self.per = per
        plan = per.plan
        self.floors = chunk_floor(plan)
        self.reach = _reach(plan)
        self.copy = 0      # period copies handed out (the recorded one is copy 0)
        self.template: Block | None = None
        self.started = False
        self.finished = False
        span = per.d - per.h
        self.n = len(plan.kind) + per.reps * span

    @property
    def done(self) -> bool:
        return self.finished

    def _floor(self, r: int) -> int:
        """Every node after copy ``r`` is of this chunk or higher."""
        per = self.per
        return min(int(self.floors[per.h]) + (r + 1) * per.q,
                   int(self.floors[per.d]) + per.reps * per.q)

    def _copies(self, r0: int, r1: int) -> Block:
        """Copies ``r0 .. r1 - 1`` of the period (nodes h..d-1 moved r periods on), tiled."""
        per, p = self.per, self.per.plan
        if self.template is None:
            self.template = _slice(p, per.h, per.d, 0, False,
                                   marks=_born_slice(p.marks.born, per.h, per.d, False),
                                   counts=_born_slice(p.counts.born, per.h, per.d, False))
        t, reps = self.template, np.arange(r0, r1)

        def nodes(a: np.ndarray) -> np.ndarray:
            shift = (reps * per.p).reshape((-1,) + (1,) * a.ndim)
            out = np.where(a[None] >= 0, a[None] + shift, -1)
            return out.reshape((-1, *a.shape[1:]))

        def chunks(a: np.ndarray) -> np.ndarray:
            out = np.where(a[None, :] >= 0, a[None, :] + (reps * per.q)[:, None], a[None, :])
            return out.reshape(-1)

        def tile(a: np.ndarray) -> np.ndarray:
            return np.tile(a, len(reps))

        items = int(t.item_ptr[-1])
        ptr = (t.item_ptr[:-1][None, :] + (np.arange(len(reps)) * items)[:, None]).reshape(-1)
        return Block(
            t.n0 + r0 * per.p, nodes(t.preds), tile(t.kind), tile(t.phase), tile(t.share),
            tile(t.stage_ix), tile(t.track_ix), chunks(t.node_chunk),
            np.r_[ptr, len(reps) * items], tile(t.item_session), chunks(t.item_chunk),
            tile(t.item_step), tile(t.nbytes), nodes(t.mark_node), tile(t.mark_name),
            tile(t.mark_session), chunks(t.mark_chunk), nodes(t.count_node), tile(t.count_queue),
            tile(t.count_held), tile(t.count_nbytes), self._floor(r1 - 1), False)

    def next(self, upto_chunk: int) -> Block:
        per, p = self.per, self.per.plan
        parts: list[Block] = []
        if not self.started:
            self.started = True
            parts.append(_slice(p, 0, per.h, int(self.floors[per.h]), False,
                                marks=_born_slice(p.marks.born, 0, per.h, False),
                                counts=_born_slice(p.counts.born, 0, per.h, False)))
        if self.copy <= per.reps:
            # whole copies, until every later node is of chunk >= upto_chunk
            low = int(self.floors[per.h])
            need = -(-(upto_chunk - low) // per.q) if upto_chunk > low else 1
            r1 = min(per.reps + 1, max(self.copy + 1, need))
            parts.append(self._copies(self.copy, r1))
            self.copy = r1
        if self.copy > per.reps:
            n = len(p.kind)
            parts.append(_slice(p, per.d, n, 1 << 62, True, (per.reps * per.p, per.reps * per.q),
                                _born_slice(p.marks.born, per.d, n, True),
                                _born_slice(p.counts.born, per.d, n, True)))
            self.finished = True
        return concat(parts)
