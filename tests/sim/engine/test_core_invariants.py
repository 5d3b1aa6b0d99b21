"""Invariants over random policies and cost models (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.costs import PHASES
from tests.helpers.scenarios import make_scenario

SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])

durations = st.floats(min_value=0.5, max_value=50.0, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def policies(draw, cuts: bool = True, chunks: int = 20) -> dict:
    name = draw(st.sampled_from(["serial", "phase_pp"]))
    pol: dict = {"name": name, "recompute": draw(st.sampled_from(["r1", "r0a", "r0"]))}
    if cuts:
        pol["hard_cuts"] = draw(st.lists(st.integers(1, chunks - 1), max_size=3, unique=True))
    if name == "phase_pp":
        pol.update(
            d_in=draw(st.integers(1, 4)), d_out=draw(st.integers(1, 4)),
            stage0_order=draw(st.sampled_from(["producer_first", "consumer_first"])),
            recompute_lag=draw(st.integers(0, 3)),
            anchor=draw(st.sampled_from(["full", "anchor_only"])),
        )
    return pol


@st.composite
def cost_models(draw, stochastic: bool = True) -> dict:
    costs = {}
    for phase in PHASES:
        mean = draw(durations)
        spec: dict = {"mean": mean}
        if stochastic and draw(st.booleans()):
            spec.update(dist=draw(st.sampled_from(["normal", "lognormal"])),
                        cv=draw(st.floats(0.0, 0.5)))
        if phase == "denoise":
            spec["steps"] = draw(st.integers(1, 3))
        costs[phase] = spec
    if not draw(st.booleans()):
        del costs["encode"]
    return costs


transports = st.fixed_dictionaries({
    "latency_ms": st.sampled_from([0.0, 0.05, 2.0]),
    "bandwidth_gbps": st.sampled_from([1.0, 25.0]),
    "envelope_bytes": st.sampled_from([0, 1_000_000]),
    "result_bytes": st.sampled_from([0, 500_000]),
    "context_bytes": st.sampled_from([0, 250_000]),
})


def _capacity(pol: dict, queue: str) -> int:
    if pol["name"] == "serial":
        return 1
    return int(pol["d_in"] if queue == "q_in" else pol["d_out"])


@SETTINGS
@given(pol=policies(), costs=cost_models(), tr=transports, seed=st.integers(0, 2**16))
def test_queues_chunks_and_epochs(pol, costs, tr, seed):
    trace = simulate(make_scenario(pol, costs, chunks=20, transport=tr, seed=seed))
    ev = trace.events
    # queues never exceed their capacity (nor go negative)
    for q in ("q_in", "q_out"):
        depth = trace.counters(q)["value"]
        assert depth.min() >= 0 and depth.max() <= _capacity(pol, q)
    marks = ev[ev["kind"] == "mark"]  # recorded in event order
    emitted = marks[marks["name"] == "emit"]["chunk"].tolist()
    dropped = marks[marks["name"] == "drop"]["chunk"].tolist()
    # every chunk is emitted once or dropped once, emits in chunk order
    assert emitted == sorted(set(emitted))
    assert sorted(emitted + dropped) == list(range(20))
    # every chunk of the last epoch is emitted; drops only happen to chunks before a cut
    cuts = sorted(pol.get("hard_cuts", []))
    last_start = cuts[-1] if cuts else 0
    assert set(range(last_start, 20)) <= set(emitted)
    assert all(any(c < cut for cut in cuts) for c in dropped)
    # no stale-epoch frame after a hard cut
    epoch = 0
    for row in marks.itertuples():
        if row.name == "hard_cut":
            epoch += 1
        elif row.name == "emit":
            assert row.epoch == epoch
    # call ids are globally monotonic in send order
    sends = ev[(ev["name"] == "send") & (ev["stage"] == "stage0")].sort_values("start_ms")
    assert sends["call_id"].is_monotonic_increasing


@SETTINGS
@given(pol=policies(cuts=False), costs=cost_models(stochastic=False), tr=transports)
def test_period_between_stage_bound_and_serial_sum(pol, costs, tr):
    # Deterministic costs: a stage does a chunk's work once per period on average, so the
    # mean period is >= each stage's mean work per chunk (anchor_only makes that work
    # vary between chunks) and <= the largest serial sum of one chunk. The window's edges
    # may hold work done up to `lead` chunks ahead, which bounds the slack. The drain at
    # the end (nothing left to build) is left out.
    trace = simulate(make_scenario(pol, costs, chunks=80, warmup=10, transport=tr))
    em = trace.marks("emit").sort_values("start_ms").iloc[:70]
    t = em["start_ms"].to_numpy()[9:]
    periods = np.diff(t)
    mean_period = (t[-1] - t[0]) / len(periods)
    spans = trace.spans
    win = spans[spans["chunk"].isin(em["chunk"].to_numpy()[10:])]
    compute = win[win["lane"] == "compute"]
    work = (compute["end_ms"] - compute["start_ms"]).groupby(
        [compute["stage"], compute["chunk"]]).sum()
    lead = pol.get("d_in", 1) + pol.get("d_out", 1) + pol.get("recompute_lag", 0) + 2
    slack = 1e-9 * mean_period + lead * work.max() / len(periods)
    serial = (win["end_ms"] - win["start_ms"]).groupby(win["chunk"]).sum().max()
    assert mean_period >= work.groupby("stage").mean().max() - slack
    # a window that is not a whole number of regime cycles is off by < spread / n
    assert mean_period <= serial + (periods.max() - periods.min()) / len(periods) + 1e-9


@settings(max_examples=25)
@given(pol=policies(chunks=15), costs=cost_models(), seed=st.integers(0, 2**16))
def test_same_seed_same_trace(pol, costs, seed):
    sc = make_scenario(pol, costs, chunks=15, seed=seed)
    a, b = simulate(sc), simulate(sc)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert a.meta == b.meta


def test_different_seeds_differ_when_costs_are_random():
    costs = {"build": 1.0, "denoise": {"dist": "lognormal", "mean": 10.0, "cv": 0.2},
             "decode": 5.0}
    a = simulate(make_scenario({"name": "phase_pp"}, costs, seed=1))
    b = simulate(make_scenario({"name": "phase_pp"}, costs, seed=2))
    assert not a.events["end_ms"].equals(b.events["end_ms"])


def test_costs_do_not_depend_on_the_schedule():
    # common random numbers: chunk k's denoise cost is the same under any policy
    costs = {"build": 1.0, "denoise": {"dist": "normal", "mean": 10.0, "cv": 0.3},
             "decode": 5.0}
    durs = []
    for pol in ({"name": "serial"}, {"name": "phase_pp", "d_in": 3, "d_out": 1}):
        sp = simulate(make_scenario(pol, costs, seed=7)).spans
        den = sp[sp["name"] == "denoise"].sort_values("chunk")
        durs.append((den["end_ms"] - den["start_ms"]).round(9).tolist())
    assert durs[0] == durs[1]
