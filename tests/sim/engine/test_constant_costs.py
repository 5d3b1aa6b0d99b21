"""Constant costs, every policy: the reported period is never below the bottleneck stage's
busy time per chunk (the cool-down keeps a finite run's drain out of the window), and a
fixed-order schedule's equals its analytic bound to 1e-9 over whole regime cycles."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from pipefill.sim.bound.analysis import compute_bound
from pipefill.sim.engine.core import simulate
from pipefill.traces.metrics import compute_metrics
from tests.helpers.bound import (
    layer_pp,
    multi_session,
    phase_pp,
    rolling_window,
    scenarios,
    serial,
    stream_batch,
)

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
POLICIES = [serial, stream_batch, layer_pp, multi_session, rolling_window, phase_pp]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.__name__)
def test_the_period_is_never_below_the_bottleneck_and_is_the_bound_when_fixed(policy):
    @SETTINGS
    @given(sc=scenarios(policy))
    def run(sc):
        b = compute_bound(sc)
        trace = simulate(sc)
        m = compute_metrics(trace)  # the run's own warm-up (2) and cool-down
        assert m["period_ms"] >= max(b.busy_ms.values()) * (1 - 1e-9)
        if b.kind != "exact":
            assert m["period_ms"] >= b.period_ms * (1 - 1e-9)  # a lower bound
            return
        # a regime repeating every c chunks: a window of whole cycles after the transient
        m30 = compute_metrics(trace, warmup=30)
        periods = m30["window"]["periods"]
        if not periods:  # too few emits before the cool-down for this warm-up
            return
        whole = compute_metrics(trace, warmup=30 + periods % b.cyclicity)
        assert whole["period_ms"] == pytest.approx(b.period_ms, rel=1e-9), b.critical.chain

    run()
