"""An input-bound realtime run: the bound holds for whole cycles, not for any short window.

phase_pp (d_in 1, d_out 2, r0a lag 1, producer first) on its own emits every 30-31 ms;
fed at 200 fps in 12-frame chunks, its input arrives every 60 ms, so the bound is the
input chain, 60 ms (a lower bound: the greedy order is timing-dependent). Worked out
from the run: stage0's greedy order makes emits lag one more ms per chunk (gaps of
61 ms) until a decode catches up (a 62 ms gap, then 31 ms), a cycle of 29 emits:
27 * 61 + 62 + 31 = 1740 ms = 29 * 60 ms. A 12-chunk window holding the 31 ms gap reads
58.5 ms, below the bound: why tests/sim/bound/test_bound_equality.py's short steady window can
dip under a realtime lower bound on some random examples, while the mean over whole
cycles equals it.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipefill.sim.bound.analysis import period_bound
from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.load import build_scenario

RAW = {
    "run": {"chunks": 200, "warmup": 2, "source": "realtime", "fps_in": 200.0},
    "policy": {"name": "phase_pp", "d_in": 1, "d_out": 2, "stage0_order": "producer_first",
               "recompute": "r0a", "recompute_lag": 1},
    "costs": {"build": 1.0, "recompute": 1.0, "denoise": 23.0, "decode": 29.0,
              "anchor_decode": 1.0},
    "transport": {"latency_ms": 2, "bandwidth_gbps": 1.0, "envelope_bytes": 0,
                  "result_bytes": 2_000_000, "context_bytes": 1_000_000},
}
CYCLE = 29


def emits() -> np.ndarray:
    tr = simulate(build_scenario(RAW))
    return np.sort(tr.marks("emit")["start_ms"].to_numpy())


def test_the_bound_is_the_input_chain():
    b = period_bound(build_scenario(RAW))
    assert (b.kind, b.period_ms, b.chain) == ("lower_bound", 60.0, "input[k] -> input[k+1]")


def test_whole_cycles_average_the_bound_and_short_windows_dip_below_it():
    t = emits()
    gaps = np.diff(t)
    catch_up = np.flatnonzero(gaps < 50)
    assert np.diff(catch_up).tolist() == [CYCLE] * (len(catch_up) - 1)
    first = int(catch_up[0]) + 1
    cycle = gaps[first:first + CYCLE].tolist()
    assert cycle == [61.0] * 27 + [62.0, 31.0]
    for k in range(first, len(t) - CYCLE, 7):  # any whole cycle: exactly 60 ms a chunk
        assert (t[k + CYCLE] - t[k]) / CYCLE == pytest.approx(60.0, abs=1e-9)
    window = min((t[k + 12] - t[k]) / 12 for k in range(first, len(t) - 12))
    assert window == pytest.approx(58.5, abs=1e-9)


def test_a_greedy_order_settles_on_a_slower_realtime_source():
    """The settled regime keeps the source: at 30 fps (400 ms a chunk) the default's
    greedy phase_pp emits once every 400 ms, not at its saturated 152 ms."""
    from pipefill.sim.bound.analysis import compute_bound
    from pipefill.sim.scenario.load import load_scenario

    sc = load_scenario(None, ['run.source="realtime"', "run.fps_in=30", "run.chunks=40"])
    b = compute_bound(sc)
    assert b.kind == "lower_bound" and b.period_ms == pytest.approx(400.0)
    assert b.settled is not None
    assert (b.settled.cycle, b.settled.period_ms) == (1, pytest.approx(400.0))
