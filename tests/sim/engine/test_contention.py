"""Shared devices: placement validation, processor sharing (hand-checked), engine hook."""

from __future__ import annotations

from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.sim.bound.analysis import compute_bound
from pipefill.sim.engine.contention import SharedDevice
from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.devices import DeviceSpec
from pipefill.sim.scenario.load import ScenarioError, build_scenario
from tests.helpers.contention import assert_period_in_range, mean_period


def _finish_times(jobs: list[tuple[float, float]], rate: dict[int, float]) -> list[float]:
    """Run (arrival, solo ms) jobs on one device; each one's finish time."""
    env = simpy.Environment()
    dev = SharedDevice(env, DeviceSpec(rate=rate))
    out = [0.0] * len(jobs)

    def job(i: int, at: float, solo: float):  # type: ignore[no-untyped-def]
        yield env.timeout(at)
        yield from dev.work(solo)
        out[i] = float(env.now)

    for i, (at, solo) in enumerate(jobs):
        env.process(job(i, at, solo))
    env.run()
    return out


@pytest.mark.parametrize(("jobs", "rate", "expected"), [
    ([(0, 10), (0, 20)], {}, [20.0, 30.0]),                 # time-sharing: 10 at 1/2
    ([(0, 10), (0, 20)], {2: 0.75}, [40 / 3, 70 / 3]),      # then 10 left alone
    ([(0, 10), (5, 10)], {}, [15.0, 20.0]),                 # B arrives half-way through A
    ([(0, 10), (0, 10), (0, 10)], {3: 0.5}, [20.0] * 3),    # ties finish together
    ([(0, 10), (0, 20)], {2: 1.0}, [10.0, 20.0]),           # no contention
    ([(0, 10), (12, 5)], {}, [10.0, 17.0]),                 # never overlap
])
def test_processor_sharing_by_hand(jobs: list[tuple[float, float]], rate: dict[int, float],
                                   expected: list[float]) -> None:
    assert _finish_times(jobs, rate) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0.1, 30)), min_size=1, max_size=6),
       st.floats(0.3, 1.0))
def test_processor_sharing_invariants(jobs: list[tuple[float, float]], r2: float) -> None:
    ends = _finish_times(jobs, {2: r2})
    for (at, solo), end in zip(jobs, ends, strict=True):
        assert end - at >= solo - 1e-9  # never faster than alone
    # the device is never idle while work is left: it ends by (last arrival + all work /
    # the slowest throughput) and not before all work / the fastest throughput
    tput = [DeviceSpec(rate={2: r2}).throughput_at(n) for n in range(1, len(jobs) + 1)]
    total = sum(solo for _, solo in jobs)
    assert max(ends) >= total / max(tput) - 1e-9
    assert max(ends) <= max(at for at, _ in jobs) + total / min(tput) + 1e-9




def _scenario(extra: dict[str, Any], policy: dict[str, Any] | None = None) -> Any:
    raw: dict[str, Any] = {
        "run": {"chunks": 40, "warmup": 5},
        "policy": policy or {"name": "phase_pp", "d_in": 2, "d_out": 2, "recompute": "r1"},
        "costs": {"build": 10, "decode": 20, "denoise": 30},
        "transport": {"latency_ms": 0},
    }
    return build_scenario({**raw, **extra})


SHARED = {"placement": {"stage0": "g", "stage1": "g"}}


@pytest.mark.parametrize(("extra", "period"), [
    ({}, 30.0),                                                    # own devices: stage1-bound
    (SHARED, 60.0),                                                # time-sharing: all work
    ({**SHARED, "devices": {"g": {"rate": {2: 0.75}}}}, 40.0),     # throughput 1.5
    ({**SHARED, "devices": {"g": {"rate": {2: 1.0}}}}, 30.0),      # free overlap
    ({"placement": {"stage0": "a", "stage1": "b"}}, 30.0),         # named, not shared
])
def test_engine_period_with_shared_device(extra: dict[str, Any], period: float) -> None:
    assert mean_period(simulate(_scenario(extra)), 10, 30) == pytest.approx(period, rel=1e-9)


def test_serial_policy_is_unaffected_by_sharing() -> None:
    """Serial never overlaps its stages: a shared device changes nothing."""
    pol = {"name": "serial"}
    alone = simulate(_scenario({}, pol)).spans
    shared = simulate(_scenario(SHARED, pol)).spans
    assert shared[["start_ms", "end_ms"]].equals(alone[["start_ms", "end_ms"]])


def test_shared_device_runs_are_bit_for_bit_repeatable() -> None:
    raw = {**SHARED, "devices": {"g": {"rate": {2: 0.62}}}, "run": {"chunks": 30, "seed": 4},
           "costs": {"build": {"dist": "lognormal", "mean": 10, "cv": 0.2}, "decode": 20,
                     "denoise": {"dist": "normal", "mean": 30, "cv": 0.1}}}
    one, two = simulate(_scenario(raw)), simulate(_scenario(raw))
    assert one.events.equals(two.events)


def test_shared_predicate() -> None:
    assert not _scenario({}).has_shared_device
    assert not _scenario({"placement": {"stage0": "a"}}).has_shared_device
    sc = _scenario(SHARED)
    assert sc.has_shared_device and sc.shared_devices() == {"g": ("stage0", "stage1")}


@pytest.mark.parametrize(("extra", "field"), [
    ({"placement": {"stage9": "g"}}, "placement.stage9"),
    ({"placement": {"stage0": 3}}, "placement.stage0"),
    ({**SHARED, "devices": {"g": {"rate": {2: 0}}}}, "devices.g.rate"),
    ({**SHARED, "devices": {"g": {"rate": {1: 0.5}}}}, "devices.g.rate"),
    ({**SHARED, "devices": {"g": {"speed": 1}}}, "devices.g.speed"),
    ({**SHARED, "devices": {"h": {}}}, "devices.h"),
    ({**SHARED, "devices": {"g": {"cores": [-1]}}}, "devices.g.cores"),
    ({"placement": "g"}, "placement"),
])
def test_bad_placement_names_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as info:
        _scenario(extra)
    assert info.value.field == field


@pytest.mark.parametrize(("rate", "lower", "upper"), [(0.5, 60.0, 60.0), (0.75, 40.0, 40.0),
                                                      (1.0, 30.0, 30.0)])
def test_bound_range_by_hand(rate: float, lower: float, upper: float) -> None:
    """stage0 10 + 20, stage1 30 on one device: work 60 ms per chunk at best throughput
    2 * rate; the slowest speed stretches stage1 to 30 / rate."""
    b = compute_bound(_scenario({**SHARED, "devices": {"g": {"rate": {2: rate}}}}))
    assert b.contention is not None and b.kind == "lower_bound"
    assert (b.contention["lower_ms"], b.contention["upper_ms"]) == pytest.approx((lower, upper))
    assert b.period_ms == pytest.approx(lower)
    assert compute_bound(_scenario({})).contention is None


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from(["r1", "r0a"]),
       st.lists(st.integers(2, 40), min_size=5, max_size=5), st.floats(0.3, 1.0))
def test_simulated_period_lies_in_the_bound_range(d_in: int, d_out: int, rec: str,
                                                  costs: list[int], r2: float) -> None:
    phases = ("build", "decode", "denoise", "recompute", "encode")
    raw = {**SHARED, "devices": {"g": {"rate": {2: r2}}},
           "run": {"chunks": 60, "warmup": 20}, "transport": {"latency_ms": 0},
           "policy": {"name": "phase_pp", "d_in": d_in, "d_out": d_out, "recompute": rec},
           "costs": dict(zip(phases, costs, strict=True))}
    assert_period_in_range(build_scenario(raw))




def test_shared_device_never_takes_the_fast_path() -> None:
    from pipefill.sim.engine.choice import choose

    serial = {"name": "serial"}  # fixed order: the fast path's unless a device is shared
    sc = _scenario(SHARED, serial)
    assert choose(sc, "auto") == "simpy" and choose(_scenario({}, serial), "auto") == "fast"
    with pytest.raises(ScenarioError) as info:
        choose(sc, "fast")
    assert info.value.field == "--engine" and "stages share a device (g (stage0, stage1))" \
        in str(info.value)
