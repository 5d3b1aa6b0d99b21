"""The fast path's inner loops, compiled with numba only when the work pays for it.

Each kernel is a plain Python function over numpy arrays; :func:`compiled` hands back its
numba-compiled twin (cached on disk) when a call does more than :data:`JIT_WORK` element
steps, and the function itself otherwise: a small run (the default scenario's 120 chunks)
never imports numba, whose import alone costs a quarter of a second. Both forms run the
same floating-point operations in the same order, so the result does not depend on
which one ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: element steps (nodes x configurations) from which a kernel is compiled
JIT_WORK = 200_000
_COMPILED: dict[str, Callable[..., Any]] = {}


def compiled(fn: Callable[..., Any], work: int) -> Callable[..., Any]:
    """``fn`` compiled by numba when ``work`` is large, else ``fn`` itself."""
    if work < JIT_WORK:
        return fn
    got = _COMPILED.get(fn.__name__)
    if got is None:
        from numba import njit

        got = _COMPILED[fn.__name__] = njit(cache=True)(fn)
    return got


def recurrence(preds: np.ndarray, dur: np.ndarray, start: np.ndarray, end: np.ndarray,
               first: int) -> None:
    """start[i] = max(end[p] for p in preds[i] (-1: none)), end[i] = start[i] + dur[i], for
    rows ``first..`` in order (rows before ``first`` hold earlier rounds' ends); columns
    are configurations."""
    n, b = dur.shape
    for i in range(first, n):
        p0, p1 = preds[i, 0], preds[i, 1]
        for j in range(b):
            t = 0.0
            if p0 >= 0 and end[p0, j] > t:
                t = end[p0, j]
            if p1 >= 0 and end[p1, j] > t:
                t = end[p1, j]
            start[i, j] = t
            end[i, j] = t + dur[i, j]


def queue_scan(t: np.ndarray, q: np.ndarray, dh: np.ndarray, db: np.ndarray,
               stage_of: np.ndarray, state: np.ndarray, out_held: np.ndarray,
               out_integral: np.ndarray) -> None:
    """Queue changes of one configuration in time order (ties: recording order).

    ``state`` (per queue: seen, held, max, last time, integral, bytes, peak bytes; then
    per receiving stage: bytes, peak; then total bytes, peak total) carries across calls.
    ``out_held[i]``/``out_integral[i]``: the changed queue's slots held after change i and
    its time integral up to change i.
    """
    nq = len(stage_of)
    ns = (len(state) - 7 * nq - 2) // 2
    s_base = 7 * nq
    tot = s_base + 2 * ns
    for i in range(len(t)):
        k = q[i]
        base = 7 * k
        now = t[i]
        if state[base] > 0.0:
            state[base + 4] += state[base + 1] * (now - state[base + 3])
        else:
            state[base] = 1.0
            state[base + 2] = state[base + 1] + dh[i]
        state[base + 1] += dh[i]
        if state[base + 1] > state[base + 2]:
            state[base + 2] = state[base + 1]
        state[base + 3] = now
        state[base + 5] += db[i]
        if state[base + 5] > state[base + 6]:
            state[base + 6] = state[base + 5]
        s = s_base + 2 * stage_of[k]
        state[s] += db[i]
        if state[s] > state[s + 1]:
            state[s + 1] = state[s]
        state[tot] += db[i]
        if state[tot] > state[tot + 1]:
            state[tot + 1] = state[tot]
        out_held[i] = state[base + 1]
        out_integral[i] = state[base + 4]
