"""Metrics of the fast path, fed block by block, equal compute_metrics on the same run's
trace (the whole run re-timed and written as rows)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from pipefill.sim.fast.path import compile_plan, time_batch, trace_of
from pipefill.sim.fast.run import run_batch
from pipefill.traces.metrics import SUMMARY_KEYS, compute_metrics
from tests.helpers.bound import layer_pp, phase_pp_fixed, rolling_window, serial, stream_batch
from tests.helpers.fastpath import scenarios


@pytest.mark.parametrize("policy", [serial, stream_batch, layer_pp, rolling_window,
                                    phase_pp_fixed], ids=lambda p: p.__name__)
def test_fast_metrics_equal_compute_metrics(policy):
    @settings(max_examples=10, deadline=None, derandomize=True)
    @given(sc=scenarios(policy))
    def run(sc):
        if sc.policy.order(sc).fixed is False:
            return
        sc = sc.model_copy(update={"run": sc.run.model_copy(update={"target_fps": 50.0})})
        timed = time_batch(compile_plan(sc), [sc])
        ref, fast = compute_metrics(trace_of(timed, 0, sc)), run_batch([sc])[0]
        for key in SUMMARY_KEYS:
            if ref[key] is None:
                assert fast[key] is None, key
            else:
                assert fast[key] == pytest.approx(ref[key], abs=1e-9), key
        assert fast["bubble"] == pytest.approx(ref.get("bubble", {}), abs=1e-9)
        assert fast["chunks"] == ref["chunks"]
        assert fast["memory"] == ref["memory"]
        for q, stats in ref["queues"].items():
            assert fast["queues"][q] == pytest.approx(stats, abs=1e-9), q

    run()
