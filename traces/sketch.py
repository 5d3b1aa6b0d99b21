"""Quantiles of a stream in bounded memory: exact up to a size, then a log-bucket sketch.

:class:`QuantileSketch` keeps every value until it holds :data:`EXACT_MAX` of them
(quantiles are then ``numpy.percentile``'s, linear interpolation), and from there on
counts values in buckets of geometrically growing width (DDSketch, Masson et al. 2019):
bucket i holds (gamma^(i-1), gamma^i] with gamma = (1 + a) / (1 - a), and stands for
2 gamma^i / (gamma + 1), which is within a relative ``a`` = :data:`RELATIVE_ERROR` of
every value in it. A quantile is then interpolated between the representatives of the
two order statistics around its rank, so it is within ``a`` (relative) of the exact
one. Values at or below :data:`TINY` (in magnitude) count as 0; negative values go to
buckets of their own.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

import numpy as np

#: values held exactly before the sketch takes over
EXACT_MAX = 65_536
#: relative error of a sketched quantile
RELATIVE_ERROR = 0.005
#: magnitude below which a value counts as 0
TINY = 1e-12
_GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(_GAMMA)


class _Buckets:
    """Counts per log bucket index (a dense array from ``lo``)."""

    __slots__ = ("counts", "lo")

    def __init__(self) -> None:
        self.lo = 0
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, magnitudes: np.ndarray) -> None:
        if not len(magnitudes):
            return
        idx = np.ceil(np.log(magnitudes) / _LOG_GAMMA).astype(np.int64)
        self._cover(int(idx.min()), int(idx.max()))
        self.counts += np.bincount(idx - self.lo, minlength=len(self.counts))

    def _cover(self, lo: int, hi: int) -> None:
        """Grow the dense range to hold bucket indices lo..hi."""
        if not len(self.counts):
            self.lo, self.counts = lo, np.zeros(hi - lo + 1, dtype=np.int64)
            return
        new_lo, new_hi = min(lo, self.lo), max(hi, self.lo + len(self.counts) - 1)
        if new_lo < self.lo or new_hi >= self.lo + len(self.counts):
            grown = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
            grown[self.lo - new_lo:self.lo - new_lo + len(self.counts)] = self.counts
            self.lo, self.counts = new_lo, grown

    def merge(self, other: _Buckets) -> None:
        if not len(other.counts):
            return
        self._cover(other.lo, other.lo + len(other.counts) - 1)
        at = other.lo - self.lo
        self.counts[at:at + len(other.counts)] += other.counts

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def value(self, rank: int, ascending: bool) -> float:
        """Representative of the ``rank``-th smallest (or largest) counted magnitude."""
        cum = np.cumsum(self.counts if ascending else self.counts[::-1])
        i = int(np.searchsorted(cum, rank, side="right"))
        idx = self.lo + (i if ascending else len(self.counts) - 1 - i)
        return 2.0 * _GAMMA ** idx / (_GAMMA + 1.0)


class QuantileSketch:
    """Quantiles of everything added (see the module doc for the error it may have)."""

    __slots__ = ("exact", "neg", "pos", "zeros")

    def __init__(self) -> None:
        self.exact: array[float] | None = array("d")
        self.pos, self.neg = _Buckets(), _Buckets()
        self.zeros = 0

    @property
    def n(self) -> int:
        if self.exact is not None:
            return len(self.exact)
        return self.zeros + self.pos.n + self.neg.n

    @property
    def is_exact(self) -> bool:
        return self.exact is not None

    def add(self, values: np.ndarray | Sequence[float]) -> None:
        v = np.asarray(values, dtype=float)
        if self.exact is not None:
            self.exact.frombytes(np.ascontiguousarray(v).tobytes())
            if len(self.exact) <= EXACT_MAX:
                return
            v, self.exact = np.frombuffer(self.exact, dtype=float).copy(), None
        self._count(v)

    def _count(self, v: np.ndarray) -> None:
        small = np.abs(v) <= TINY
        self.zeros += int(small.sum())
        self.pos.add(v[(v > 0) & ~small])
        self.neg.add(-v[(v < 0) & ~small])

    def merge(self, other: QuantileSketch) -> None:
        if other.exact is not None:
            self.add(np.frombuffer(other.exact, dtype=float))
            return
        if self.exact is not None:
            held, self.exact = np.frombuffer(self.exact, dtype=float).copy(), None
            self._count(held)
        self.zeros += other.zeros
        self.pos.merge(other.pos)
        self.neg.merge(other.neg)

    def quantile(self, q: float) -> float | None:
        """The ``q``-th percentile (0..100), None when nothing was added."""
        n = self.n
        if n == 0:
            return None
        if self.exact is not None:
            return float(np.percentile(np.frombuffer(self.exact, dtype=float), q))
        r = q / 100.0 * (n - 1)
        lo = math.floor(r)
        frac = r - lo
        v_lo = self._at(lo)
        return v_lo if frac == 0 else v_lo + frac * (self._at(min(lo + 1, n - 1)) - v_lo)

    def _at(self, rank: int) -> float:
        """Representative of the ``rank``-th smallest value (0-based)."""
        nn = self.neg.n
        if rank < nn:
            return -self.neg.value(rank, ascending=False)
        rank -= nn
        if rank < self.zeros:
            return 0.0
        return self.pos.value(rank - self.zeros, ascending=True)
