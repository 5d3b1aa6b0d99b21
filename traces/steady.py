"""Steady-state statistics of one emit series: MSER-5 warm-up, batch means, intervals.

A steady-state period is a mean of autocorrelated emit gaps, so its interval comes from
*batch means* (non-overlapping batches of consecutive gaps, whose means are nearly
independent once a batch is longer than the correlation): :class:`BatchMeans` keeps
between ``batches`` and ``2 * batches - 1`` full batches online, doubling the batch size
by merging neighbours when it has ``2 * batches`` (Fishman's LBATCH rule with a fixed
batch count), so it holds O(batches) numbers for a run of any length. The warm-up is
MSER-5 (White 1997; :func:`mser`): the truncation that minimises the squared standard
error of the mean of what is left, over batches of 5, looking no further than half the
series; truncations whose statistic is within :data:`TIE` of the least count as equal
and the shortest of them wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: batch means kept (between this and twice it less one)
BATCHES = 16
#: observations per MSER batch
MSER_BATCH = 5
#: truncations whose MSER statistic is within this share of the least are a tie (past a
#: transient the statistic is flat but for noise, and its least point wanders there by
#: tens of chunks): the shortest wins
TIE = 0.02

# t(0.975, df) for df = 1..30; beyond, the Cornish-Fisher expansion is within 1e-4
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
         2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074,
         2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959963984540054


def t975(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("needs at least 1 degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


@dataclass(frozen=True)
class Mser:
    """An MSER truncation: ``drop`` leading values (a multiple of the batch size);
    ``at_limit`` when the minimum sits at the half-series limit (the transient may be
    longer than the series can show)."""

    drop: int
    at_limit: bool


def mser(values: np.ndarray, batch: int = MSER_BATCH) -> Mser:
    """MSER-``batch`` truncation of ``values``: drop ``batch * d`` values, where d
    minimises sum_{j>=d} (z_j - zbar_d)^2 / (k - d)^2 over the k batch means z, for
    d <= k / 2; the first d within :data:`TIE` of the minimum wins."""
    k = len(values) // batch
    if k < 4:
        return Mser(0, False)
    z = np.asarray(values[:k * batch], dtype=float).reshape(k, batch).mean(axis=1)
    z = z - z[-1]  # a constant tail becomes exact zeros: no cancellation below
    n = np.arange(k, 0, -1, dtype=float)
    s1 = np.cumsum(z[::-1])[::-1]
    s2 = np.cumsum((z * z)[::-1])[::-1]
    stat = np.maximum(s2 - s1 * s1 / n, 0.0) / (n * n)
    half = k // 2
    stat = stat[:half + 1]
    scale = float(np.abs(z).mean() + abs(float(np.mean(values))))
    tol = max(float(stat.min()) * TIE, (1e-9 * scale) ** 2)
    d = int(np.flatnonzero(stat <= stat.min() + tol)[0])
    return Mser(d * batch, d == half)


class BatchMeans:
    """Online non-overlapping batch means of a stream (see the module doc).

    Invariant: ``len(sums)`` < 2 * ``batches``; every full batch holds ``size`` values;
    ``part`` holds the ``fill`` (< ``size``) values of the batch being filled.
    """

    __slots__ = ("batches", "fill", "n", "part", "size", "sums")

    def __init__(self, batches: int = BATCHES) -> None:
        self.batches = batches
        self.size = 1
        self.sums: list[float] = []
        self.part = 0.0
        self.fill = 0
        self.n = 0

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=float)
        self.n += len(v)
        while len(v):
            need = self.size - self.fill
            if len(v) < need:
                self.part += float(v.sum())
                self.fill += len(v)
                return
            self.sums.append(self.part + float(v[:need].sum()))
            self.part, self.fill, v = 0.0, 0, v[need:]
            room = 2 * self.batches - len(self.sums)
            whole = min(len(v) // self.size, room)
            if whole:
                cut = whole * self.size
                self.sums.extend(v[:cut].reshape(whole, self.size).sum(axis=1).tolist())
                v = v[cut:]
            if len(self.sums) >= 2 * self.batches:
                s = self.sums
                self.sums = [s[i] + s[i + 1] for i in range(0, len(s), 2)]
                self.size *= 2

    def halfwidth(self) -> float | None:
        """95% half-width of the mean from the full batches (None: fewer than
        ``batches`` of them)."""
        b = len(self.sums)
        if b < self.batches:
            return None
        means = np.asarray(self.sums) / self.size
        return t975(b - 1) * float(means.std(ddof=1)) / math.sqrt(b)
