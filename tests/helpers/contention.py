"""The simulated period of a shared-device scenario against the bound's range."""

from __future__ import annotations

from typing import Any

from pipefill.sim.bound.analysis import compute_bound
from pipefill.sim.engine.core import simulate


def mean_period(trace: Any, first: int, last: int) -> float:
    """The mean emit gap of chunks first..last (steady state: past the fill, before the
    drain), independent of traces/metrics.py."""
    emits = trace.marks("emit")
    chunk = emits["chunk"]
    t = emits[(chunk >= first) & (chunk <= last)]["start_ms"].sort_values().to_numpy()
    return float((t[-1] - t[0]) / (len(t) - 1))


def assert_period_in_range(sc: Any) -> None:
    """The simulated mean period (chunks 20..50) lies in the bound's contention range."""
    rng = compute_bound(sc).contention
    assert rng is not None
    period = mean_period(simulate(sc), 20, 50)
    assert period >= rng["lower_ms"] * (1 - 1e-6)
    if rng["upper_is_bound"]:
        assert period <= rng["upper_ms"] * (1 + 1e-6)
