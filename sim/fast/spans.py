"""What the fast path keeps of recent nodes to answer "how busy was a stage up to x?".

The busy time of a stage up to an instant is the sum of its finished spans plus the part
of the one running then. A stage's compute nodes run one at a time in program order,
so their spans are in time order: :class:`StageSpans` keeps the spans of the recent
blocks (columns: configurations) and folds the older ones into a running total once no
instant still to be asked about falls before their end.
"""

from __future__ import annotations

import numpy as np


class StageSpans:
    """Recent spans of one stage for every configuration, and the busy time before them."""

    def __init__(self, width: int) -> None:
        self.before = np.zeros(width)
        self.start = np.zeros((0, width))
        self.end = np.zeros((0, width))

    def add(self, start: np.ndarray, end: np.ndarray) -> None:
        if len(start):
            self.start = np.concatenate([self.start, start])
            self.end = np.concatenate([self.end, end])

    def keep(self, cols: np.ndarray) -> None:
        self.before = self.before[cols]
        self.start, self.end = self.start[:, cols], self.end[:, cols]

    def busy_at(self, col: int, xs: np.ndarray) -> np.ndarray:
        """Busy time of configuration ``col`` up to each instant of ``xs``."""
        s, e = self.start[:, col], self.end[:, col]
        cum = np.r_[0.0, np.cumsum(e - s)]
        j = np.searchsorted(e, xs, side="right")
        running = np.where(j < len(s), np.clip(xs - s[np.minimum(j, len(s) - 1)], 0.0, None),
                           0.0) if len(s) else np.zeros(len(xs))
        return self.before[col] + cum[j] + running

    def total(self, col: int) -> float:
        return float(self.before[col] + (self.end[:, col] - self.start[:, col]).sum())

    def forget_before(self, xs: np.ndarray) -> None:
        """Fold in the spans that end by ``xs`` (per configuration) in every one."""
        if not len(self.end):
            return
        done = np.asarray((self.end <= xs[None, :]).all(axis=1))
        k = int(np.argmin(done)) if not done.all() else int(done.size)
        if k:
            self.before = self.before + (self.end[:k] - self.start[:k]).sum(axis=0)
            self.start, self.end = self.start[k:], self.end[k:]
