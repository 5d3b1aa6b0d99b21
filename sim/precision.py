"""Precision-driven runs: when to look at a run's interval and when it is precise enough.

A run with ``--precision REL`` goes on until the 95% half-width of its steady-state
period (batch means over the window: :mod:`pipefill.traces.steady`) is at most ``REL``
times the period, ``run.chunks`` being the cap. Both engines look at the interval at the
same emit counts (:func:`checkpoints`: :data:`FIRST_CHECK` emits, then 25% more each
time, and the cap), each exactly after that many emits of session 0, so a converged run's
answer does not depend on how the engine cut the run into blocks: the same seed and
precision give the same answer, and its chunks are the first ``chunks_run`` chunks'
draws of the fixed-length run (costs are drawn per chunk, not per run).

A look that misses the target says how long the run must be (the half-width falls as
one over the root of the length); the next look is the first checkpoint beyond that,
aimed :data:`SAFETY` further and at most :data:`MAX_JUMP` times the length so far
(:func:`next_check`). Fewer looks matter: every look is a chance to stop on an interval
that is narrow by chance, and over 600 runs of an exact reference (a two-station line with
exponential stations, ``tests/helpers/tandem.py``) 94% of the intervals cover the true
period with these looks against 90-91% with a look at every checkpoint
(``bench/bench_precision.py`` prints the figure).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from pipefill.traces.window import Interval, WindowStats

#: emits at the first look at the interval
FIRST_CHECK = 128
#: each look comes this much later than the one before
GROWTH = 1.25
#: a predicted length is aimed this much beyond
SAFETY = 1.2
#: a look comes at most this many times later than the one before (an early interval,
#: from short batches, is a rough guide)
MAX_JUMP = 4.0


@dataclass(frozen=True)
class Precision:
    """The target: half-width <= ``rel`` x period (``rel`` > 0)."""

    rel: float

    def met(self, iv: Interval) -> bool:
        return (iv.halfwidth is not None and iv.period is not None and iv.period > 0
                and iv.halfwidth <= self.rel * iv.period)


def checkpoints(cap: int) -> Iterator[int]:
    """Emit counts at which a run looks at its interval, ending with ``cap``."""
    n = min(FIRST_CHECK, cap)
    while n < cap:
        yield n
        n = min(cap, max(n + 1, math.ceil(n * GROWTH)))
    yield cap


def next_check(after: int, cap: int, iv: Interval | None = None,
               precision: Precision | None = None) -> int:
    """The first checkpoint after ``after`` emits, or, when the interval at ``after`` says
    how long the run must be for the target (``n (hw / (rel P))^2``, the half-width
    falling as one over the root of the length), the first checkpoint beyond that: fewer
    looks at the interval, so a run stops less often on one that is narrow by chance."""
    want = after + 1
    if iv is not None and precision is not None and iv.halfwidth and iv.period:
        ratio = iv.halfwidth / (precision.rel * iv.period)
        want = max(want, int(after * min(ratio * ratio * SAFETY, MAX_JUMP)))
    for n in checkpoints(cap):
        if n >= want:
            return n
    return cap


class Watch:
    """Judges a session's window at the checkpoints (called after each of its emits, with
    its :class:`~pipefill.traces.window.WindowStats`); once the target is met it freezes
    the window there (``converged``), so later emits leave it as it was."""

    def __init__(self, precision: Precision, cap: int) -> None:
        self.precision, self.cap = precision, cap
        self.next = next_check(0, cap)
        self.converged = False

    def __call__(self, stats: WindowStats) -> None:
        if stats.emits != self.next:
            return
        if self.next >= self.cap:
            self.next = 1 << 62  # the cap: the run goes to its end
        else:
            iv = stats.interval()
            if self.precision.met(iv):
                stats.frozen = True
                self.converged = True
            else:
                self.next = next_check(self.next, self.cap, iv, self.precision)
