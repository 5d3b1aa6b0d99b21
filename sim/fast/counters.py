"""Queue depths and bytes in flight of one configuration, from the fast path's changes.

Every queue change (a Reserve, Release, Put or Flush) happens at the end of a node; the
engine records the queue's depth and the run's bytes in flight at each. :class:`QueueBook`
takes changes as blocks are timed and applies them in time order (ties in recording
order, which follows every wait), never past the instant it is asked about, so what it
reports equals the trace reducer's reading of the same run's counters: each queue's max
depth and time integral, bytes per queue, per receiving stage and in total, and their
peaks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipefill.sim.fast.kernels import compiled, queue_scan

#: state slots per queue (see :func:`pipefill.sim.fast.kernels.queue_scan`)
_Q = 7


class QueueBook:
    """One configuration's queues (``names``, each with its receiving stage ``dst``)."""

    def __init__(self, names: tuple[str, ...], dst: tuple[str, ...]) -> None:
        self.names = names
        self.dsts = sorted(set(dst))
        self.stage_of = np.array([self.dsts.index(d) for d in dst], dtype=np.int64)
        nq, ns = len(names), len(self.dsts)
        self.state = np.zeros(_Q * nq + 2 * ns + 2)
        self.first = np.full(nq, np.nan)
        self._t = np.zeros(0)
        self._q = np.zeros(0, dtype=np.int64)
        self._dh = np.zeros(0)
        self._db = np.zeros(0)
        #: element steps that decide whether the scan is compiled (the batch's, not ours)
        self.work = 0

    def add(self, t: np.ndarray, q: np.ndarray, dh: np.ndarray, db: np.ndarray,
            work: int = 0) -> None:
        """Changes in recording order (after those added before); ``work``: how much
        scanning the whole batch does per block (compiled scans pay from a size on). The
        pending changes are kept in time order (ties: recording order)."""
        self.work = work
        t = np.r_[self._t, t]
        order = np.argsort(t, kind="stable")
        self._t = t[order]
        self._q = np.r_[self._q, q][order]
        self._dh = np.r_[self._dh, dh][order]
        self._db = np.r_[self._db, db][order]

    def settle(self, upto: float) -> None:
        """Apply the changes at or before ``upto``."""
        k = int(np.searchsorted(self._t, upto, side="right"))
        if not k:
            return
        t, q = self._t[:k], self._q[:k]
        held, integral = np.empty(k), np.empty(k)
        compiled(queue_scan, max(k, self.work))(t, q, self._dh[:k], self._db[:k], self.stage_of,
                                                self.state, held, integral)
        fresh = np.isnan(self.first)
        if fresh.any():
            for i in np.flatnonzero(fresh):
                hit = np.flatnonzero(q == i)
                if len(hit):
                    self.first[i] = t[hit[0]]
        self._t, self._q = self._t[k:], self._q[k:]
        self._dh, self._db = self._dh[k:], self._db[k:]

    def integrals_at(self, x: float) -> dict[str, float]:
        """Every queue's depth integral up to ``x`` (queues not changed yet: absent)."""
        self.settle(x)
        st = self.state
        out = {}
        for i, name in enumerate(self.names):
            b = _Q * i
            if st[b] > 0:
                out[name] = float(st[b + 4] + st[b + 1] * (x - st[b + 3]))
        return out

    def summary(self) -> dict[str, Any]:
        """Max depth per queue (those that changed), peak bytes in flight, memory."""
        self.settle(np.inf)
        st = self.state
        nq, ns = len(self.names), len(self.dsts)
        seen = [st[_Q * i] > 0 for i in range(nq)]
        queues = {n: {"max": float(st[_Q * i + 2])} for i, n in enumerate(self.names)
                  if seen[i]}
        total = int(st[_Q * nq + 2 * ns + 1])
        memory = {"peak_bytes": total,
                  "queues": dict(sorted((n, int(st[_Q * i + 6])) for i, n in
                                        enumerate(self.names) if seen[i])),
                  "stages": {d: int(st[_Q * nq + 2 * k + 1]) for k, d in enumerate(self.dsts)
                             if any(seen[i] for i in np.flatnonzero(self.stage_of == k))}}
        return {"queues": queues, "peak_bytes": total if any(seen) else None,
                "memory": memory if any(seen) else {}}
