"""Clock offsets between ranks: an NTP-style handshake, recorded at start and at end.

Each rank times its events on its own monotonic clock (ms since its recorder started).
A handshake asks the reference rank (rank 0) for its clock ``rounds`` times and keeps
the reading with the shortest round trip: the reference read ``ref_ms`` at about the
midpoint ``local_ms`` of that round trip (error at most half the round trip). With a
handshake at the start and one at the end of a run, :func:`fit_clock` maps local times
to the reference clock linearly, so a constant offset *and* a drift are corrected.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class ClockError(ValueError):
    """Sync points that cannot describe a clock (out of order, non-finite)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class SyncPoint:
    """One handshake: at local time ``local_ms`` the reference clock read ``ref_ms``;
    ``rtt_ms`` is the round trip it was measured over (the error bound is half of it)."""

    local_ms: float
    ref_ms: float
    rtt_ms: float

    def as_list(self) -> list[float]:
        return [self.local_ms, self.ref_ms, self.rtt_ms]


@dataclass(frozen=True)
class ClockMap:
    """``ref = offset_ms + rate * local``: a rank's clock expressed in the reference's."""

    offset_ms: float = 0.0
    rate: float = 1.0

    def __call__(self, local_ms: float) -> float:
        return self.offset_ms + self.rate * local_ms


IDENTITY = ClockMap()


def handshake(now_ms: Callable[[], float], ask_ref_ms: Callable[[], float],
              rounds: int = 8) -> SyncPoint:
    """Ask the reference clock ``rounds`` times; keep the shortest round trip."""
    if rounds < 1:
        raise ValueError(f"rounds: must be >= 1 (got {rounds})")
    best: SyncPoint | None = None
    for _ in range(rounds):
        t0 = now_ms()
        ref = ask_ref_ms()
        t1 = now_ms()
        point = SyncPoint((t0 + t1) / 2.0, float(ref), t1 - t0)
        if best is None or point.rtt_ms < best.rtt_ms:
            best = point
    assert best is not None
    return best


def parse_points(raw: object, field: str) -> list[SyncPoint]:
    """Sync points from a trace's metadata (``[[local, ref, rtt], ...]``)."""
    if not isinstance(raw, list):
        raise ClockError(field, "must be a list of [local_ms, ref_ms, rtt_ms]")
    points = []
    for item in raw:
        ok = isinstance(item, list) and len(item) == 3 and all(
            isinstance(v, int | float) and v == v and abs(v) != float("inf") for v in item)
        if not ok:
            raise ClockError(field, f"bad sync point {item!r} (want [local_ms, ref_ms, rtt_ms])")
        points.append(SyncPoint(float(item[0]), float(item[1]), float(item[2])))
    return points


def fit_clock(points: Sequence[SyncPoint], field: str = "probe.sync") -> ClockMap:
    """The line through the first and last sync points (offset only with one point).

    Raises :class:`ClockError` when the points go back in time on either clock: a rank
    whose clock runs backwards relative to the reference cannot be aligned.
    """
    if not points:
        return IDENTITY
    for a, b in itertools.pairwise(points):
        if b.local_ms <= a.local_ms or b.ref_ms <= a.ref_ms:
            raise ClockError(field, f"clocks out of order: sync at local {b.local_ms:.3f} ms "
                             f"(reference {b.ref_ms:.3f} ms) does not follow local "
                             f"{a.local_ms:.3f} ms (reference {a.ref_ms:.3f} ms)")
    first, last = points[0], points[-1]
    if len(points) == 1:
        return ClockMap(first.ref_ms - first.local_ms, 1.0)
    rate = (last.ref_ms - first.ref_ms) / (last.local_ms - first.local_ms)
    return ClockMap(first.ref_ms - rate * first.local_ms, rate)
