"""Calibrating a shared device: solo costs from calls that ran alone, rates from overlaps."""

from __future__ import annotations

import tomllib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.sim.engine.core import simulate
from pipefill.sim.fit.calibrate import calibrate_trace
from pipefill.sim.fit.contention import overlap_levels
from pipefill.sim.scenario.load import build_scenario
from pipefill.traces.meta import run_metadata
from pipefill.traces.recorder import Recorder, Tag

RAW: dict[str, Any] = {
    "run": {"chunks": 6, "warmup": 0},
    "policy": {"name": "phase_pp", "d_in": 2, "d_out": 2, "recompute": "r1"},
    "costs": {"build": 1, "decode": 1, "denoise": 1},
    "transport": {"latency_ms": 0},
    "placement": {"stage0": "g", "stage1": "g"},
}


def test_overlap_levels_by_hand() -> None:
    # a: [0, 10], b: [5, 20], c: [8, 9]  ->  a: 5 alone, 3 with b, 1 with b+c, 1 with b
    lv = overlap_levels(np.array([0.0, 5.0, 8.0]), np.array([10.0, 20.0, 9.0]))
    assert lv[0, 1:4].tolist() == [5.0, 4.0, 1.0]
    assert lv[1, 1:4].tolist() == [10.0, 4.0, 1.0]
    assert lv[2, 1:4].tolist() == [0.0, 0.0, 1.0]


def _trace(calls: list[tuple[str, str, int, float, float]], given: float) -> Any:
    rec = Recorder()
    for phase, stage, chunk, start, end in calls:
        rec.span(phase, stage, "compute", Tag(0, chunk, chunk, 0, 0), start, end)
    raw = {**RAW, "devices": {"g": {"rate": {2: given}}}}
    return rec.trace(run_metadata(build_scenario(raw), source="exec", backend="threads"))


def _hand_trace(given: float) -> Any:
    """build (solo 10 ms) and denoise (solo 30 ms) on one device at rate 0.5: three times
    alone, three times overlapping. Overlapped: build [t, t+15] (5 alone, then 10 at half
    speed), denoise [t+5, t+40] (10 at half speed, then 25 alone)."""
    calls = []
    for k in range(3):
        t = 100.0 * k
        calls += [("build", "stage0", k, t, t + 10), ("denoise", "stage1", k, t + 20, t + 50)]
    for k in range(3, 6):
        t = 100.0 * k
        calls += [("build", "stage0", k, t, t + 15), ("denoise", "stage1", k, t + 5, t + 40)]
    return _trace(calls, given)


def test_rates_and_solo_costs_are_fitted_by_hand() -> None:
    cal = calibrate_trace(_hand_trace(given=0.9))
    assert cal.raw["devices"]["g"]["rate"] == {"2": pytest.approx(0.5)}
    assert cal.scenario.placement.spec("g").rate_at(2) == pytest.approx(0.5)
    assert cal.scenario.costs["build"].mean == pytest.approx(10.0)
    assert cal.scenario.costs["denoise"].mean == pytest.approx(30.0)
    (dev,) = cal.devices
    assert dev.fitted == (2,) and dev.overlapped == {2: 6} and dev.solo_calls == 6
    text = cal.toml(header="pipefill calibrate x")
    assert "# device g (stage0, stage1): 6 calls ran alone; rate[2] = 0.500 (fitted from 6 " \
           "overlapped calls, 60 ms)" in text
    assert tomllib.loads(text)["devices"]["g"]["rate"] == {"2": pytest.approx(0.5)}


def test_fully_overlapped_calls_keep_the_given_rate() -> None:
    """d = c / r for calls that never ran alone: c and r cannot be told apart."""
    calls = [("build", "stage0", k, 40.0 * k, 40.0 * k + 20) for k in range(6)]
    calls += [("denoise", "stage1", k, 40.0 * k, 40.0 * k + 20) for k in range(6)]
    cal = calibrate_trace(_trace(calls, given=0.5))
    (dev,) = cal.devices
    assert dev.fitted == () and dev.rates == {2: 0.5} and "cannot be told apart" in dev.notes[0]
    # solo-equivalent: 20 ms at half speed is 10 ms of work
    assert cal.scenario.costs["build"].mean == pytest.approx(10.0)


def test_simulated_shared_device_round_trips_through_calibrate() -> None:
    """A simulated trace at rate r calibrates back to the same period."""
    raw = {**RAW, "run": {"chunks": 40, "warmup": 5},
           "costs": {"build": 10, "decode": 20, "denoise": 30},
           "devices": {"g": {"rate": {2: 0.7}}}}
    sc = build_scenario(raw)
    cal = calibrate_trace(simulate(sc))
    assert cal.scenario.placement.spec("g").rate_at(2) == pytest.approx(0.7)
    assert {p: c.mean for p, c in cal.scenario.costs.items()} == pytest.approx(
        {"build": 10.0, "decode": 20.0, "denoise": 30.0})


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 30)), min_size=1, max_size=8))
def test_overlap_levels_match_a_unit_step_count(iv: list[tuple[int, int]]) -> None:
    """Integer intervals: count the active intervals in every unit step (reference)."""
    starts = np.array([float(s) for s, _ in iv])
    ends = starts + np.array([float(d) for _, d in iv])
    lv = overlap_levels(starts, ends)
    ref = np.zeros_like(lv)
    for t in range(int(ends.max())):
        active = (starts <= t) & (ends >= t + 1)
        ref[active, int(active.sum())] += 1.0
    assert lv == pytest.approx(ref)
