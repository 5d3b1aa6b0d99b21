"""SimPy's steady state equals the analytic bound for every fixed-order policy.

What is compared: with deterministic integer costs the simulated emit times become
periodic after a transient, t[n + c] = t[n] + c * period for a regime that repeats every
c chunks (the bound's ``cyclicity``, which can exceed 1). The *median* period of the
metrics is not the rate of such a regime, so the test takes the mean period over a
window of whole regime cycles, (t[e] - t[e - m]) / m with m a multiple of c, ending
``DRAIN`` chunks before the end (the last chunks speed up: nothing is left to build).
For phase_pp configurations whose stage0 order is a timing-dependent greedy choice the
bound is a lower bound and the test checks sim >= bound instead.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from pipefill.sim.bound.analysis import period_bound
from pipefill.sim.scenario.load import build_scenario
from tests.helpers.bound import (
    check,
    layer_pp,
    multi_session,
    phase_pp,
    phase_pp_fixed,
    rolling_window,
    scenarios,
    serial,
    stream_batch,
)

SETTINGS = settings(max_examples=30, deadline=None)


























@pytest.mark.parametrize("policy", [serial, stream_batch, layer_pp, multi_session,
                                    rolling_window], ids=lambda p: p.__name__)
def test_fixed_order_policies_equal_the_bound(policy):
    @SETTINGS
    @given(sc=scenarios(policy))
    def run(sc):
        assert period_bound(sc).kind == "exact"
        check(sc)

    run()


@SETTINGS
@given(sc=scenarios(phase_pp_fixed, realtime=False))
def test_phase_pp_equals_the_bound_when_its_order_is_provably_fixed(sc):
    assert period_bound(sc).kind == "exact"
    check(sc)


@SETTINGS
@given(sc=scenarios(phase_pp))
def test_phase_pp_is_exact_or_a_lower_bound(sc):
    check(sc)


def test_phase_pp_fixed_configurations_are_the_documented_ones():
    # (1) r0a lag 0, any preference; (2) producer_first, r0a, lag < d_in; (3)
    # producer_first, d_out = 1 -> exact. consumer_first with d_out = 2 -> lower bound.
    base = {"run": {"chunks": 20}, "costs": {"build": 1, "denoise": 1, "recompute": 1,
                                             "decode": 1, "encode": 1, "anchor_decode": 1}}

    def kind(**pol):
        raw = {**base, "policy": {"name": "phase_pp", **pol}}
        return period_bound(build_scenario(raw)).kind

    assert kind(recompute="r0a", recompute_lag=0, stage0_order="consumer_first") == "exact"
    assert kind(recompute="r0a", recompute_lag=1, d_in=2) == "exact"
    assert kind(recompute="r1", d_out=1) == "exact"
    assert kind(recompute="r1", d_out=2) == "lower_bound"
    assert kind(recompute="r1", d_out=1, stage0_order="consumer_first") == "lower_bound"
    assert kind(recompute="r0a", recompute_lag=1, anchor="anchor_only") == "lower_bound"
