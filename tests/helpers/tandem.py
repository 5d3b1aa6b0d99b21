"""A closed two-station tandem with exponential stations and its exact period.

The pipeline: ``stream_batch`` over 2 stages, one denoise step (no loop), denoise free
(0 ms), ``encode`` on stage0 and ``decode`` on stage1 exponential. Stage0 encodes chunk
k, then reserves one of the link's ``n`` slots (it waits, blocked with the chunk, while
all n hold chunks stage1 has not taken) and puts the chunk; stage1 takes the next chunk,
frees its slot at once (its denoise share costs nothing), decodes it and emits. So the
link holds at most n waiting chunks: a two-station line with a buffer of n and blocking
after service, a fixed-order schedule (the fast path runs it).

:func:`exact_period` solves that line's continuous-time Markov chain (states: chunks
waiting, stage1 busy, stage0 blocked) for its stationary distribution; the emit rate is
the decode rate times the share of time stage1 is busy. This is the reference the
precision tests check the simulator's intervals against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipefill.sim.scenario.load import build_scenario


def exact_period(encode_ms: float, decode_ms: float, n: int) -> float:
    """Mean time between emits in steady state (ms)."""
    mu0, mu1 = 1.0 / encode_ms, 1.0 / decode_ms
    states = [(0, 0, 0)] + [(w, 1, b) for w in range(n + 1) for b in (0, 1)
                            if not (b and w < n)]
    index = {s: i for i, s in enumerate(states)}
    q = np.zeros((len(states), len(states)))

    def rate(a: tuple[int, int, int], b: tuple[int, int, int], r: float) -> None:
        q[index[a], index[b]] += r

    for w, busy, blocked in states:
        s = (w, busy, blocked)
        if not blocked:  # stage0 finishes an encode
            if not busy:
                rate(s, (0, 1, 0), mu0)          # stage1 takes it at once
            elif w < n:
                rate(s, (w + 1, 1, 0), mu0)      # it waits in the link
            else:
                rate(s, (n, 1, 1), mu0)          # all slots held: stage0 blocks with it
        if busy:  # stage1 finishes a decode
            if blocked:
                rate(s, (n, 1, 0), mu1)          # takes one, the blocked chunk gets a slot
            elif w > 0:
                rate(s, (w - 1, 1, 0), mu1)
            else:
                rate(s, (0, 0, 0), mu1)
    np.fill_diagonal(q, -q.sum(axis=1))
    a = np.vstack([q.T, np.ones(len(states))])
    pi = np.linalg.lstsq(a, np.r_[np.zeros(len(states)), 1.0], rcond=None)[0]
    busy_share = sum(p for (_, busy, _), p in zip(states, pi, strict=True) if busy)
    return 1.0 / (mu1 * busy_share)


def tandem_scenario(n: int, seed: int, chunks: int, encode_ms: float = 10.0,
                    decode_ms: float = 8.0, warmup: Any = "auto") -> Any:
    """The tandem above with ``n`` link slots, as a scenario."""
    return build_scenario({
        "run": {"chunks": chunks, "warmup": warmup, "seed": seed},
        "policy": {"name": "stream_batch", "stages": 2, "steps": 1, "blocks": 2,
                   "max_outstanding": n},
        "costs": {"denoise": 0.0, "encode": {"dist": "exponential", "mean": encode_ms},
                  "decode": {"dist": "exponential", "mean": decode_ms}},
        "transport": {"latency_ms": 0.0, "envelope_bytes": 0, "result_bytes": 0},
    }, name="tandem")
