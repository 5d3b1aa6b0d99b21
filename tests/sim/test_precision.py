"""Precision-driven runs: intervals that cover an exact reference, both engines alike.

The reference is computed here, not by the simulator: a two-station line with
exponential stations and a buffer of n (``tests/helpers/tandem.py``, the stationary
distribution of its Markov chain). ``bench/bench_precision.py`` prints the same check over
300 runs; this one runs 60 (20 per buffer size), with fixed seeds, and asks for 85%.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipefill.sim.engine.core import simulate
from pipefill.sim.engine.stream import simulate_summary
from pipefill.sim.fast.run import run_batch
from pipefill.sim.precision import Precision, checkpoints, next_check
from pipefill.sim.scenario.load import load_scenario
from pipefill.traces.io import read_trace
from pipefill.traces.window import Interval
from tests.helpers.tandem import exact_period, tandem_scenario


def test_intervals_cover_the_exact_period():
    covered = runs = 0
    for n in (1, 2, 3):
        truth = exact_period(10.0, 8.0, n)
        results = run_batch([tandem_scenario(n, 1000 * n + s, 400_000) for s in range(20)],
                            Precision(0.01))
        for r in results:
            assert r["converged"] is True and r["period_ci_ms"] <= 0.01 * r["period_ms"]
            covered += abs(r["period_ms"] - truth) <= r["period_ci_ms"]
            runs += 1
    assert runs == 60 and covered >= 51  # 85%; 94% over 600 runs (see sim/precision.py)


def test_the_reference_is_the_long_run_period():
    # the simulated line is the Markov chain's: a long fixed run lands on its period
    for n in (1, 3):
        got = run_batch([tandem_scenario(n, 7, 200_000, warmup=100)])[0]["period_ms"]
        assert got == pytest.approx(exact_period(10.0, 8.0, n), rel=0.005)


def _noisy(*sets: str):
    return load_scenario(None, ["run.chunks=20000", "costs.denoise.cv=0.3",
                                "costs.decode.cv=0.3", *sets])


KEYS = ("period_ms", "period_ci_ms", "chunks_run", "warmup_used", "converged", "fps",
        "period_p50_ms", "latency_p95_ms")


@pytest.mark.parametrize("warmup", ["10", '"auto"'])
def test_both_engines_give_the_same_answer_and_so_does_a_rerun(warmup):
    sc = _noisy(f"run.warmup={warmup}")
    fast = run_batch([sc], Precision(0.01))[0]
    simpy = simulate_summary(sc, precision=Precision(0.01)).metrics
    again = run_batch([sc], Precision(0.01))[0]
    assert fast["converged"] and fast["chunks_run"] < sc.run.chunks
    assert fast["chunks_run"] in list(checkpoints(sc.run.chunks))
    for key in KEYS:
        assert simpy[key] == pytest.approx(fast[key], abs=1e-9), key
        assert again[key] == fast[key], key


def test_a_precise_run_is_the_fixed_runs_chunks(tmp_path):
    sc = _noisy()
    out = tmp_path / "p.parquet"
    m = simulate_summary(sc, out, precision=Precision(0.01)).metrics
    n = m["chunks_run"]
    fixed = simulate(sc.model_copy(update={"run": sc.run.model_copy(update={"chunks": n})}))
    got = read_trace(out).spans
    keep = ["name", "stage", "chunk", "step"]

    def durations(spans):
        sp = spans[(spans["lane"] == "compute") & (spans["chunk"] < n - 8)].copy()
        sp["d"] = sp["end_ms"] - sp["start_ms"]
        return sp.sort_values(keep)[[*keep, "d"]].reset_index(drop=True)

    a, b = durations(got), durations(fixed.spans)
    assert len(a) == len(b) and (a[keep] == b[keep]).all().all()
    np.testing.assert_allclose(a["d"], b["d"], rtol=0, atol=1e-9)


def test_a_point_that_hits_the_cap_is_marked():
    sc = _noisy("run.chunks=400")
    for m in (run_batch([sc], Precision(0.0005))[0],
              simulate_summary(sc, precision=Precision(0.0005)).metrics):
        assert m["converged"] is False and m["chunks_run"] == 400
        assert m["period_ci_ms"] > 0.0005 * m["period_ms"]


def test_a_run_without_a_target_carries_its_interval_and_no_verdict():
    m = run_batch([_noisy("run.chunks=600")])[0]
    assert m["converged"] is None and m["chunks_run"] == 600 and m["warmup_used"] == 10
    assert 0 < m["period_ci_ms"] < 0.05 * m["period_ms"]


def test_checkpoints_and_the_predicted_look():
    assert list(checkpoints(300)) == [128, 160, 200, 250, 300]
    assert next_check(128, 10_000) == 160
    # half-width 1.5x the target at 1000 emits: 1.5^2 x 1.2 x 1000 = 2700 emits are aimed at
    iv = Interval(10.0, 0.15, 999, 1)
    marks = list(checkpoints(100_000))
    got = next_check(1000, 100_000, iv, Precision(0.01))
    assert got in marks and got >= 2700 and marks[marks.index(got) - 1] < 2700
    # never more than 4x at once (the next checkpoint from 4000 on), never past the cap
    far = next_check(1000, 100_000, Interval(10.0, 5.0, 999, 1), Precision(0.01))
    assert far >= 4000 and marks[marks.index(far) - 1] < 4000
    assert next_check(1000, 2000, iv, Precision(0.01)) == 2000
