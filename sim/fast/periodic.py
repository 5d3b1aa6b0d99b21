"""A long fixed-order run as a head, a repeating period and a tail: a plan of any length.

Recording a run of C chunks costs O(C) time and memory, so a long run is not recorded
whole. A fixed-order policy's programs repeat themselves once the pipeline has filled:
after a head, every q chunks add the same p nodes (and marks and queue changes), with
chunk numbers q higher and predecessors at the same distance back, until the tail
where the programs run out of input. :func:`find_period` records the run at three short
lengths L, L + q and L + 2q (L = C mod q, plus a margin) and checks that the longer
ones are the shorter with one and two periods inserted, element by element, before the
tail; if so the C-chunk run is ``head + period x m + tail`` (m = (C - L) / q), which
:class:`Periodic` hands out block by block without ever holding it. A policy whose
recordings do not repeat this way (no q up to :data:`MAX_PERIOD` passes) is recorded
whole instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipefill.sim.fast.plan import Plan, flatten_scenario

#: longest period (in chunks) searched for
MAX_PERIOD = 16
#: chunks recorded before the tail, at least (the head must have filled the pipeline)
MIN_LEAD = 24

Record = tuple[Any, ...]
_BIG = 1 << 40


def _shift(c: int, q: int) -> int:
    return c + q if c >= 0 else c


def node_records(plan: Plan, q: int = 0) -> list[Record]:
    """Each node as a hashable record, predecessors relative, chunks shifted by ``q``."""
    s = plan.schedule
    out = []
    for i, node in enumerate(s.nodes):
        items = () if node.action is None else tuple(
            (t.session, _shift(t.chunk, q), t.step) for t in node.action.items)
        share = node.action.share if node.action is not None else 1.0
        out.append((node.kind, node.track, node.label, _shift(node.chunk, q),
                    tuple(i - p for p in node.preds), items, share, node.nbytes))
    return out


def _records_of(plan: Plan) -> list[Record]:
    """:func:`node_records` of ``plan``, unshifted, computed once per plan."""
    got = _RECORDS.get(id(plan))
    if got is None or got[0] is not plan:
        got = _RECORDS[id(plan)] = (plan, node_records(plan))
        if len(_RECORDS) > 16:
            _RECORDS.pop(next(iter(_RECORDS)))
    return got[1]


_RECORDS: dict[int, tuple[Plan, list[Record]]] = {}


def mark_records(plan: Plan, q: int, seg: tuple[int, int]) -> list[Record]:
    """Marks recorded before node ``seg[1]`` and not before node ``seg[0]`` (``born`` in
    [seg[0], seg[1])), relative to ``seg[0]``."""
    m = plan.marks
    lo, hi = seg
    sel = (m.born >= lo) & (m.born < hi)
    return [(int(n), int(s), _shift(int(c), q), int(b) - lo,
             "o" if nd < 0 else int(b) - int(nd))
            for n, s, c, b, nd in zip(m.name[sel], m.session[sel], m.chunk[sel], m.born[sel],
                                      m.node[sel], strict=True)]


def count_records(plan: Plan, seg: tuple[int, int]) -> list[Record]:
    c = plan.counts
    lo, hi = seg
    sel = (c.born >= lo) & (c.born < hi)
    return [(int(qq), int(h), int(nb), int(b) - lo, "o" if nd < 0 else int(b) - int(nd))
            for qq, h, nb, b, nd in zip(c.queue[sel], c.held[sel], c.nbytes[sel],
                                        c.born[sel], c.node[sel], strict=True)]


@dataclass(frozen=True)
class Periodic:
    """``plan`` recorded at ``length`` chunks is ``head`` (nodes < ``h``), one period
    (nodes ``h .. d - 1``: ``p`` nodes, ``q`` chunks) and a tail (nodes ``d ..``); the run
    of ``chunks`` chunks repeats the period ``reps`` more times before the tail."""

    plan: Plan
    length: int
    h: int
    d: int
    q: int
    chunks: int

    @property
    def p(self) -> int:
        return self.d - self.h

    @property
    def reps(self) -> int:
        return (self.chunks - self.length) // self.q


def find_period(sc: Any, chunks: int) -> Periodic | None:
    """The head/period/tail form of ``sc`` run for ``chunks`` chunks, or None (hard cuts
    are transients: a run with them is recorded whole)."""
    if getattr(sc.policy, "hard_cuts", None):
        return None
    plans: dict[int, Plan] = {}  # recordings by length, shared by the periods tried

    def plan(n: int) -> Plan:
        if n not in plans:
            plans[n] = flatten_scenario(sc, n)
        return plans[n]

    for q in range(1, MAX_PERIOD + 1):
        lead = max(MIN_LEAD, 3 * q)
        length = lead + (chunks - lead) % q
        if length + 2 * q > chunks:
            return None
        got = _try(plan, length, q, chunks)
        if got is not None:
            return got
    return None


def _try(plan: Any, length: int, q: int, chunks: int) -> Periodic | None:
    a, b = plan(length), plan(length + q)
    ra, rb = _records_of(a), _records_of(b)
    p = len(rb) - len(ra)
    if p <= 0:
        return None
    first = next((i for i, (x, y) in enumerate(zip(ra, rb, strict=False)) if x != y), len(ra))
    c = plan(length + 2 * q)
    shifted = {0: ra, 1: node_records(a, q), 2: node_records(a, 2 * q)}
    # the tail may begin a little before the first node that differs (a node of the
    # last period can look like the tail's first): try insertion points back from it
    for d in range(first, max(p, first - p) - 1, -1):
        if all(_inserted(a, plan, d - p, d, q, extra, shifted)
               for extra, plan in ((1, b), (2, c))):
            return Periodic(a, length, d - p, d, q, chunks)
    return None


def _inserted(a: Plan, x: Plan, h: int, d: int, q: int, extra: int,
              shifted: dict[int, list[Record]]) -> bool:
    """``x`` is ``a`` with ``extra`` more periods (nodes h..d-1, q chunks) before its tail."""
    p = d - h
    want = shifted[0][:d]
    for r in range(1, extra + 1):
        want = want + shifted[r][h:d]
    want = want + shifted[extra][d:]
    if _records_of(x) != want:
        return False
    segs_x = [(0, h), *((h + r * p, d + r * p) for r in range(extra + 1)),
              (d + extra * p, _BIG)]
    marks_want = [mark_records(a, 0, (0, h)), mark_records(a, 0, (h, d))]
    counts_want = [count_records(a, (0, h)), count_records(a, (h, d))]
    for r in range(1, extra + 1):
        marks_want.append(mark_records(a, r * q, (h, d)))
        counts_want.append(counts_want[1])
    marks_want.append(mark_records(a, extra * q, (d, _BIG)))
    counts_want.append(count_records(a, (d, _BIG)))
    return [mark_records(x, 0, s) for s in segs_x] == marks_want and \
        [count_records(x, s) for s in segs_x] == counts_want


def chunk_floor(plan: Plan) -> np.ndarray:
    """For each node index n (0..N), the least chunk of any node, item or mark recorded
    from n on (a large number past the end): chunks below it are finished at n."""
    n = len(plan.kind)
    big = np.iinfo(np.int64).max // 4
    low = np.where(plan.node_chunk >= 0, plan.node_chunk, big)
    items = np.where(plan.item_chunk >= 0, plan.item_chunk, big)
    if len(items):
        first = plan.item_ptr[:-1]
        has = plan.item_ptr[1:] > first
        per = np.full(n, big)
        per[has] = np.minimum.reduceat(items, first[has])
        low = np.minimum(low, per)
    m = plan.marks
    mk = np.where(m.chunk >= 0, m.chunk, big)
    at = np.clip(m.born, 0, max(n - 1, 0))  # recorded before node born (after the last)
    if n:
        np.minimum.at(low, at, mk)
    floor = np.minimum.accumulate(np.r_[low, big][::-1])[::-1]
    return floor
