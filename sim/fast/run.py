"""Fast-path runs of a batch of configurations, block by block, to a length or a precision.

A batch (configurations sharing one structure, :func:`~pipefill.sim.fast.plan.
structure_key`) is re-timed in blocks of whole chunks (:mod:`pipefill.sim.fast.rounds`)
sized so a block holds about :data:`BLOCK_ELEMENTS` node times, and its metrics are fed
online (:mod:`pipefill.sim.fast.feed`), so neither the run's length nor the batch's
width makes memory grow beyond a block. A long run (more than :data:`FULL_MAX` chunks)
is generated from its repeating period (:mod:`pipefill.sim.fast.periodic`) instead of
being recorded whole. With a :class:`~pipefill.sim.precision.Precision`, each
configuration is looked at at the common checkpoints and leaves the batch as soon as its
interval is within the target; the others go on in the next round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from pipefill.sim.fast.blocks import FullSource, PeriodicSource
from pipefill.sim.fast.feed import BatchFeed
from pipefill.sim.fast.periodic import Periodic, find_period
from pipefill.sim.fast.plan import (
    CacheHolder,
    NotFixedOrder,
    Plan,
    compile_plan,
    fast_reason,
    structure_key,
)
from pipefill.sim.fast.rounds import Timing
from pipefill.sim.fast.summary import fast_summary
from pipefill.sim.precision import Precision, next_check
from pipefill.sim.scenario.model import Scenario

#: runs up to this many chunks are recorded whole (longer: from their period, if any)
FULL_MAX = 96
#: node times (nodes x configurations) a block holds, about
BLOCK_ELEMENTS = 1 << 20
#: chunks past a checkpoint a block reaches (so the checkpoint's emits are settled)
MARGIN = 32

Progress = Callable[[int, int], None]


class _Shape:
    """How a structure's runs are generated: a plan recorded whole, or its period."""

    def __init__(self, plan: Plan, periodic: Periodic | None) -> None:
        self.plan, self.periodic = plan, periodic

    def source(self) -> FullSource | PeriodicSource:
        return PeriodicSource(self.periodic) if self.periodic is not None \
            else FullSource(self.plan)

    def per_chunk(self, chunks: int) -> float:
        if self.periodic is not None:
            return self.periodic.p / self.periodic.q
        return len(self.plan.kind) / max(chunks, 1)


@lru_cache(maxsize=64)
def _shape_cached(key: str, holder: CacheHolder) -> _Shape:
    sc = holder.sc
    per = find_period(sc, sc.run.chunks) if sc.run.chunks > FULL_MAX else None
    return _Shape(per.plan if per is not None else compile_plan(sc), per)


def shape_of(sc: Scenario) -> _Shape:
    reason = fast_reason(sc)
    if reason is not None:
        raise NotFixedOrder(reason)
    return _shape_cached(structure_key(sc), CacheHolder(sc))


def run_batch(scenarios: Sequence[Scenario], precision: Precision | None = None,
              progress: Progress | None = None, keep_on_interrupt: bool = False
              ) -> list[dict[str, Any]]:
    """Metrics of single-session ``scenarios`` of one structure (see the module doc).
    ``keep_on_interrupt``: Ctrl-C ends the runs where they are and returns what ran
    (``interrupted`` in each result) instead of raising."""
    shape = shape_of(scenarios[0])
    batch = _Batch(shape, list(scenarios), precision, progress)
    try:
        return batch.run()
    except KeyboardInterrupt:
        if not keep_on_interrupt:
            raise
        return batch.stop()


class _Batch:
    def __init__(self, shape: _Shape, scs: list[Scenario], precision: Precision | None,
                 progress: Progress | None) -> None:
        self.shape, self.precision, self.progress = shape, precision, progress
        self.src = shape.source()
        work = int(shape.per_chunk(scs[0].run.chunks) * scs[0].run.chunks * len(scs))
        self.timing = Timing(scs, shape.plan.stages, self.src.reach, work)
        self.feed = BatchFeed(shape.plan, scs, work)
        self.ids = list(range(len(scs)))
        self.results: list[dict[str, Any] | None] = [None] * len(scs)
        self.cap = scs[0].run.chunks
        self.checks = [next_check(0, self.cap)] * len(scs)

    def _round(self) -> int:
        per = self.shape.per_chunk(self.cap) * max(1, len(self.ids))
        return int(np.clip(BLOCK_ELEMENTS / max(per, 1.0), 32, 1 << 14))

    def run(self) -> list[dict[str, Any]]:
        upto = 0
        while self.ids:
            target = max(self.checks) + MARGIN if self.precision else self.cap + 1
            upto = min(target, upto + self._round())
            block = self.src.next(upto)
            horizon = self.feed.add(self.timing.time(block))
            stopped = [j for j in range(len(self.ids)) if self._feed(j, float(horizon[j]))]
            for j in range(len(self.ids)):
                self.feed.chunks(j, force=block.last)
            self.feed.settle(horizon)
            if block.last:
                stopped = list(range(len(self.ids)))
            self._finish(stopped)
            if self.ids:
                self.feed.forget()
            if self.progress:
                self.progress(min(upto, self.cap), self.cap)
        return [r for r in self.results if r is not None]

    def stop(self) -> list[dict[str, Any]]:
        """End every run still going where it is (what was fed so far)."""
        alive = list(self.ids)
        self._finish(list(range(len(self.ids))))
        for i in alive:
            self.results[i] = {**(self.results[i] or {}), "interrupted": True}
        return [r for r in self.results if r is not None]

    def _feed(self, j: int, horizon: float) -> bool:
        """Feed column ``j`` up to the horizon; True when it has converged."""
        feed, prec = self.feed, self.precision
        if prec is None:
            feed.feed(j, horizon)
            return False
        while True:
            n = feed.feed(j, horizon, limit=self.checks[j])
            if n < self.checks[j]:
                return False
            if n >= self.cap:
                self.checks[j] = 1 << 62  # the cap: the run goes to its end
                feed.feed(j, horizon)
                return False
            iv = feed.cols[j].stats.interval()
            if prec.met(iv):
                return True
            self.checks[j] = next_check(n, self.cap, iv, prec)

    def _finish(self, stopped: list[int]) -> None:
        if not stopped:
            return
        rel = self.precision.rel if self.precision else None
        for j in stopped:
            self.feed.chunks(j, force=True)
            self.feed.cols[j].stats.finish()
            self.results[self.ids[j]] = fast_summary(self.feed, j, rel)
        keep = np.array([j for j in range(len(self.ids)) if j not in set(stopped)],
                        dtype=np.int64)
        self.ids = [self.ids[j] for j in keep]
        self.checks = [self.checks[j] for j in keep]
        if len(keep):
            self.timing.keep(keep)
            self.feed.keep(keep)
