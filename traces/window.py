"""The steady-state window of one session, kept online in bounded memory.

What DESIGN.md's metrics need from a run, fed in emit order by whoever reads the run
(the trace reducer, row by row; the fast path, an array per round) as two streams:

- the *emit* stream (:meth:`WindowStats.emit`): each emit's time, whether it falls in
  the cool-down (after the session's last input entered: the drain of a finite run) and,
  when :meth:`WindowStats.wants_anchor` asks, an :class:`Anchor` of the cumulative busy
  time and counter integrals at that instant (bubbles, queue means);
- the *chunk* stream (:meth:`WindowStats.chunk`), in the same order and never ahead of
  the emit stream (a chunk's work may end after its emit): per emitted chunk its busy
  time on stage0 and stage1, its latency and the mesh idle gap before it.

The window runs from emit ``first - 1`` to the last emit before the cool-down. With a
fixed warm-up ``first = max(warmup, 1)``. With ``warmup = None`` (``"auto"``) emits are
held (at most :data:`HOLD` of them) and MSER-5 (:func:`pipefill.traces.steady.mser`)
picks the truncation when the run ends or the hold is full. Everything else is online:
batch means for the period's interval, quantile sketches
(:class:`pipefill.traces.sketch.QuantileSketch`) for medians and percentiles, fed in
blocks of :data:`FLUSH` positions.
"""

from __future__ import annotations

import copy
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipefill.traces.sketch import QuantileSketch
from pipefill.traces.steady import MSER_BATCH, BatchMeans, mser

#: emits held for MSER before the warm-up is fixed (it looks at half of them at most)
HOLD = 1 << 14
#: positions buffered before they are added to the sketches
FLUSH = 1024
#: values per position in the chunk stream: busy0, busy1, latency, mesh idle
_COLS = 4


@dataclass
class Anchor:
    """Cumulative quantities at emit time ``x``: per stage, an object whose ``value`` is
    the stage's busy time up to ``x`` (it may still settle: a span that straddles ``x``
    arrives later); per counter, its time integral up to ``x``."""

    x: float
    busy: dict[str, Any]
    counters: dict[str, float]


class Fixed:
    """A settled value (what the fast path's anchors hold)."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


class Sketches:
    """The window's per-chunk distributions (gap, stage busy, hidden share, latency,
    mesh idle) and how many chunk records fed them."""

    def __init__(self) -> None:
        self.gap = QuantileSketch()
        self.busy0 = QuantileSketch()
        self.busy1 = QuantileSketch()
        self.ratio = QuantileSketch()
        self.latency = QuantileSketch()
        self.mesh = QuantileSketch()
        self.chunks = 0


@dataclass(frozen=True)
class Interval:
    """The period over the window so far, its 95% half-width (None: too few batches),
    the gaps it covers and the window's first position (the warm-up it used)."""

    period: float | None
    halfwidth: float | None
    gaps: int
    first: int
    mser_at_limit: bool = False


class WindowStats:
    """One session's window (see the module doc). ``warmup``: emits before the window,
    None for MSER-5.

    Invariants: window positions are ``first .. end - 1`` (``end``: emits before the
    cool-down); positions ``base ..`` are buffered (their times in ``_t``, their chunk
    values in ``_v``), everything before ``base`` is in the accumulators.
    """

    def __init__(self, warmup: int | None) -> None:
        self.first: int | None = None if warmup is None else max(warmup, 1)
        self.auto = warmup is None
        self.emits = 0
        self.end = 0
        self.cooling = False
        self.t_first = np.nan
        self.t0 = self.t1 = np.nan
        self.anchor0: Anchor | None = None
        self.anchor1: Anchor | None = None
        self.batch = BatchMeans()
        self.sk = Sketches()
        self.chunks_in = 0
        self.mser_at_limit = False
        self.base = 0
        self._t_before = np.nan   # time of position base - 1
        self._t = array("d")
        self._v = array("d")
        self._anchors: dict[int, Anchor] = {}
        self._c = array("q")      # held chunk ids (automatic warm-up only)
        self.chunk_first = self.chunk_last = -1
        #: set once a precise run stopped here: later emits are not part of it
        self.frozen = False

    # -- the emit stream -----------------------------------------------------------
    def wants_anchor(self, pos: int) -> bool:
        """Whether emit ``pos`` (0-based, the next one) needs an :class:`Anchor`."""
        if self.cooling:
            return False
        return self.first is None or pos >= self.first - 1

    def emit(self, t: float, chunk: int, cool: bool, anchor: Anchor | None = None) -> None:
        """Emit ``pos = emits`` of ``chunk`` at ``t``; ``cool``: after the last input."""
        if self.frozen:
            return
        pos = self.emits
        self.emits += 1
        if pos == 0:
            self.t_first = t
        if cool or self.cooling:
            self.cooling = True
            return
        self.end = pos + 1
        self._t.append(t)
        if self.first is None:
            self._c.append(chunk)
            if anchor is not None and pos % MSER_BATCH == 0 and pos <= HOLD // 2:
                self._anchors[pos] = anchor
            self.anchor1 = anchor
            if len(self._t) >= HOLD:
                self.commit()
            return
        if pos == self.first - 1:
            self.t0, self.anchor0 = t, anchor
        elif pos >= self.first:
            self.t1, self.anchor1, self.chunk_last = t, anchor, chunk
            if pos == self.first:
                self.chunk_first = chunk

    def emit_block(self, t: np.ndarray, chunk: np.ndarray, cool: np.ndarray,
                   anchor_at: Callable[[np.ndarray], list[Anchor]]) -> None:
        """Emits ``emits .. emits + len(t) - 1`` at once (the fast path), the same as one
        :meth:`emit` each; ``anchor_at(i)`` builds the anchors of block indices ``i``."""
        n = len(t)
        if not n or self.frozen:
            return
        pos0 = self.emits
        if pos0 == 0:
            self.t_first = float(t[0])
        hot = 0 if self.cooling else int(np.argmax(cool)) if cool.any() else n
        self.emits += n
        self.cooling = self.cooling or hot < n
        if self.first is None:
            room = max(0, HOLD - len(self._t))
            if hot > room:
                self._held_emits(pos0, t[:room], chunk[:room], anchor_at, 0)
                self.commit()
                self._fixed_emits(pos0 + room, t[room:hot], chunk[room:hot], anchor_at, room)
                return
            self._held_emits(pos0, t[:hot], chunk[:hot], anchor_at, 0)
            if len(self._t) >= HOLD:
                self.commit()
            return
        self._fixed_emits(pos0, t[:hot], chunk[:hot], anchor_at, 0)

    def _held_emits(self, pos0: int, t: np.ndarray, chunk: np.ndarray,
                    anchor_at: Callable[[np.ndarray], list[Anchor]], off: int) -> None:
        if not len(t):
            return
        pos = np.arange(pos0, pos0 + len(t))
        want = np.flatnonzero((pos % MSER_BATCH == 0) & (pos <= HOLD // 2))
        want = np.unique(np.r_[want, len(t) - 1])
        got = anchor_at(want + off)  # first: a Ctrl-C in them leaves the window as it was
        self._t.frombytes(np.ascontiguousarray(t, dtype=float).tobytes())
        self._c.frombytes(np.ascontiguousarray(chunk, dtype=np.int64).tobytes())
        for i, a in zip(want.tolist(), got, strict=True):
            if pos0 + i <= HOLD // 2 and (pos0 + i) % MSER_BATCH == 0:
                self._anchors[pos0 + i] = a
        self.anchor1 = got[-1]
        self.end = pos0 + len(t)

    def _fixed_emits(self, pos0: int, t: np.ndarray, chunk: np.ndarray,
                     anchor_at: Callable[[np.ndarray], list[Anchor]], off: int) -> None:
        n = len(t)
        if not n:
            return
        f = self.first_pos
        want: list[int] = []
        if pos0 <= f - 1 < pos0 + n:
            want.append(f - 1 - pos0)
        if pos0 + n - 1 >= f:
            want.append(n - 1)
        # the anchors first (the costly part): a Ctrl-C in them leaves the window as it was
        got = dict(zip(want, anchor_at(np.asarray(want, dtype=np.int64) + off), strict=True))
        self._t.frombytes(np.ascontiguousarray(t, dtype=float).tobytes())
        self.end = pos0 + n
        if pos0 <= f - 1 < pos0 + n:
            self.t0, self.anchor0 = float(t[f - 1 - pos0]), got[f - 1 - pos0]
        if pos0 + n - 1 >= f:
            self.t1, self.anchor1 = float(t[n - 1]), got[n - 1]
            self.chunk_last = int(chunk[n - 1])
            if pos0 <= f < pos0 + n:
                self.chunk_first = int(chunk[f - pos0])

    # -- the chunk stream ----------------------------------------------------------
    def chunk(self, busy0: float, busy1: float, latency: float, mesh: float) -> None:
        """The next emitted chunk's values (NaN: not known), in emit order."""
        pos = self.chunks_in
        self.chunks_in += 1
        if pos < self.end:
            self._v.extend((busy0, busy1, latency, mesh))
            if self.first is not None and self.chunks_in - self.base >= FLUSH:
                self._flush(self.chunks_in)

    def chunk_block(self, values: np.ndarray) -> None:
        """Many chunk records at once: an array (n, 4) in emit order."""
        n = len(values)
        take = max(0, min(n, self.end - self.chunks_in))
        self._v.frombytes(np.ascontiguousarray(values[:take], dtype=float).tobytes())
        self.chunks_in += n
        if self.first is not None and min(self.chunks_in, self.end) - self.base >= FLUSH:
            self._flush(min(self.chunks_in, self.end))

    # -- into the accumulators -----------------------------------------------------
    def _flush(self, upto: int) -> None:
        """Add positions ``base .. upto - 1`` (emit and chunk known) to the accumulators."""
        assert self.first is not None
        k = upto - self.base
        if k <= 0:
            return
        t = np.frombuffer(self._t[:k], dtype=float)  # copies: the buffers shrink below
        v = np.frombuffer(self._v[:k * _COLS], dtype=float).reshape(-1, _COLS)
        pos = np.arange(self.base, upto)
        gap = t - np.r_[self._t_before, t[:-1]]
        w = pos >= self.first
        self.batch.add(gap[w])
        self.sk.gap.add(gap[w])
        self._chunk_stats(v[w[:len(v)]], gap[:len(v)][w[:len(v)]])
        self._t_before = float(t[-1])
        del self._t[:k]
        del self._v[:len(v) * _COLS]
        self.base = upto

    def _chunk_stats(self, v: np.ndarray, gap: np.ndarray) -> None:
        sk = self.sk
        known = ~np.isnan(v[:, 0])  # a run stopped early may miss its last chunks' values
        v, gap = v[known], gap[known]
        if not len(v):
            return
        b0, b1, lat, mesh = v[:, 0], v[:, 1], v[:, 2], v[:, 3]
        sk.busy0.add(b0)
        sk.busy1.add(b1)
        low = np.minimum(b0, b1)
        ok = low > 0
        sk.ratio.add(np.maximum(0.0, b0[ok] + b1[ok] - gap[ok]) / low[ok])
        sk.latency.add(lat[~np.isnan(lat)])
        sk.mesh.add(mesh[~np.isnan(mesh)])
        sk.chunks += len(v)

    # -- the warm-up ---------------------------------------------------------------
    def commit(self) -> None:
        """Fix an automatic warm-up (MSER-5 over the held gaps) and go online."""
        if self.first is not None:
            return
        t = np.frombuffer(self._t, dtype=float)
        cut = mser(np.diff(t))
        self.mser_at_limit = cut.at_limit
        self.first = cut.drop + 1
        if self.end > self.first - 1:
            self.t0 = float(t[self.first - 1])
            self.anchor0 = self._anchors.get(self.first - 1)
        if self.end > self.first:
            self.t1 = float(t[-1])
            self.chunk_first, self.chunk_last = int(self._c[self.first]), int(self._c[-1])
        else:
            self.anchor1 = None
        self._anchors, self._c = {}, array("q")

    def interval(self) -> Interval:
        """The period so far and its 95% half-width (an automatic warm-up is chosen
        afresh from the held emits, without fixing it)."""
        if self.first is None:
            t = np.frombuffer(self._t, dtype=float)
            cut = mser(np.diff(t))
            kept = np.diff(t[cut.drop:])
            bm = BatchMeans()
            bm.add(kept)
            period = float((t[-1] - t[cut.drop]) / len(kept)) if len(kept) else None
            hw = None if cut.at_limit else bm.halfwidth()
            return Interval(period, hw, len(kept), cut.drop + 1, cut.at_limit)
        gaps = max(0, self.end - self.first)
        period = (self.t1 - self.t0) / gaps if gaps else None
        bm = copy.deepcopy(self.batch)
        t = np.frombuffer(self._t, dtype=float)
        pending = np.diff(np.r_[self._t_before, t])[np.arange(self.base, self.end) >= self.first]
        bm.add(pending)
        return Interval(period, bm.halfwidth(), gaps, self.first, self.mser_at_limit)

    def finish(self) -> WindowStats:
        """Commit the warm-up and add everything buffered (chunk values not received
        count as unknown)."""
        self.commit()
        missing = self.end - max(self.chunks_in, self.base)
        if missing > 0:
            self._v.extend([np.nan] * (missing * _COLS))
        self._flush(self.end)
        return self

    @property
    def first_pos(self) -> int:
        assert self.first is not None
        return self.first
