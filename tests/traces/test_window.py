"""The online window: fed emit by emit or in blocks alike; MSER-5 on known transients."""

from __future__ import annotations

import numpy as np
import pytest

from pipefill.sim.fast.run import run_batch
from pipefill.sim.scenario.load import build_scenario
from pipefill.traces.window import HOLD, Anchor, Fixed, WindowStats


def _anchor(x: float) -> Anchor:
    return Anchor(x, {"s": Fixed(x / 2)}, {"q": x})


@pytest.mark.parametrize("warmup", [3, None])
@pytest.mark.parametrize("n", [50, 3000, HOLD + 500])
def test_blocks_and_single_emits_give_the_same_window(warmup, n):
    rng = np.random.default_rng(n)
    t = np.cumsum(rng.exponential(10.0, n))
    cool = np.arange(n) >= n - 4
    vals = rng.uniform(1, 5, (n, 4))
    one, block = WindowStats(warmup), WindowStats(warmup)
    for i in range(n):
        one.emit(float(t[i]), i, bool(cool[i]),
                 _anchor(float(t[i])) if one.wants_anchor(one.emits) else None)
        one.chunk(*vals[i])
    for lo in range(0, n, 777):
        hi = min(n, lo + 777)

        def anchors(idx: np.ndarray, lo: int = lo) -> list[Anchor]:
            return [_anchor(float(t[lo + i])) for i in idx]

        block.emit_block(t[lo:hi], np.arange(lo, hi), cool[lo:hi], anchors)
        block.chunk_block(vals[lo:hi])
    for w in (one.finish(), block.finish()):
        assert w.end == n - 4 and w.emits == n
    assert (one.first, one.t0, one.t1, one.chunk_first, one.chunk_last) == \
        (block.first, block.t0, block.t1, block.chunk_first, block.chunk_last)
    a0, b0, a1, b1 = one.anchor0, block.anchor0, one.anchor1, block.anchor1
    assert a0 is not None and b0 is not None and a1 is not None and b1 is not None
    assert a0.x == b0.x == one.t0 and a1.x == b1.x
    assert one.interval() == pytest.approx(block.interval())
    for name in ("gap", "busy0", "busy1", "ratio", "latency", "mesh"):
        a, b = getattr(one.sk, name), getattr(block.sk, name)
        assert a.n == b.n and a.quantile(50) == pytest.approx(b.quantile(50), rel=1e-12)


def test_a_frozen_window_ignores_later_emits():
    w = WindowStats(1)
    for i in range(10):
        w.emit(float(i), i, False, _anchor(float(i)))
    w.frozen = True
    w.emit(99.0, 10, False, _anchor(99.0))
    assert w.emits == 10 and w.t1 == 9.0


def _line(pattern: list[float], cv: float, seed: int, chunks: int):
    """build 2 -> denoise 10 (x pattern) -> decode 3, D_in 2, D_out 1 (a fixed order)."""
    return build_scenario({
        "run": {"chunks": chunks, "warmup": "auto", "seed": seed},
        "policy": {"name": "phase_pp", "d_in": 2, "d_out": 1, "recompute": "r1"},
        "costs": {"build": 2.0, "decode": 3.0,
                  "denoise": {"dist": "lognormal", "mean": 10.0, "cv": cv, "pattern": pattern}},
        "transport": {"latency_ms": 0.0, "envelope_bytes": 0, "result_bytes": 0}})


STEP = [3.0] * 40 + [1.0] * 10_000          # a cold start: 40 chunks three times slower
RAMP = list(np.linspace(2.0, 1.0, 60)) + [1.0] * 10_000   # a drift that ends at chunk 60


def test_mser_finds_where_a_transient_ends_exactly_without_noise():
    # by hand: gaps 35 ms while denoise is 30 (chunks < 40), 15 ms from gap 40 on; the
    # first all-steady batch of 5 gaps starts at gap 40: 40 gaps dropped, warm-up 41
    assert run_batch([_line(STEP, 0.0, 0, 400)])[0]["warmup_used"] == 41
    # the ramp's gaps fall until chunk 60, constant after: 60 dropped
    assert run_batch([_line(RAMP, 0.0, 0, 400)])[0]["warmup_used"] == 61


def test_mser_finds_a_noisy_cold_start_and_a_drift_near_their_ends():
    step = run_batch([_line(STEP, 0.05, s, 3000) for s in range(8)])
    assert [m["warmup_used"] for m in step] == [41] * 8
    # a gradual drift is cut where what is left of it drowns in the noise: a few chunks
    # before its end (51-56 here, 60 by hand)
    ramp = [m["warmup_used"] for m in run_batch([_line(RAMP, 0.05, s, 3000) for s in range(8)])]
    assert all(50 <= w <= 61 for w in ramp), ramp
