"""Dispatch gaps: a stage's own time before each call (``[dispatch]``), in every engine,
in the bound, and fitted back by ``calibrate``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.bound.analysis import compute_bound, period_bound
from pipefill.sim.engine.core import simulate
from pipefill.sim.errors import ScenarioError
from pipefill.sim.fast.path import fast_reason
from pipefill.sim.fit.calibrate import calibrate_trace
from pipefill.sim.scenario.load import build_scenario
from pipefill.traces.metrics import compute_metrics
from pipefill.traces.schema import Trace
from tests.helpers import bound as tb
from tests.helpers.contention import assert_period_in_range, mean_period
from tests.helpers.fastpath import FIXED, same_times, scenarios

runner = CliRunner()
FREE = {"latency_ms": 0, "envelope_bytes": 0, "result_bytes": 0}
SERIAL = {"run": {"chunks": 4, "warmup": 1}, "policy": {"name": "serial", "recompute": "r1"},
          "costs": {"build": 1.0, "denoise": 2.0, "decode": 1.0}, "transport": FREE,
          "dispatch": {"stage0": 0.5, "stage1": 0.25}}


def with_dispatch(sc, gaps: list[float]):
    stages = sc.stage_names
    return build_scenario({**sc.raw, "dispatch": {s: g for s, g in zip(stages, gaps,
                                                                        strict=False)}})


def test_serial_by_hand():
    # each call waits for its stage's gap, then runs: build 0.5..1.5, denoise
    # 1.75..3.75, decode 4.25..5.25 (emit), the next build 5.75: 5.25 ms a chunk
    tr = simulate(build_scenario(SERIAL))
    sp = tr.spans[tr.spans["lane"] == "compute"].sort_values("start_ms")
    first = sp[sp["chunk"] == 0][["name", "start_ms", "end_ms"]].values.tolist()
    assert first == [["build", 0.5, 1.5], ["denoise", 1.75, 3.75], ["decode", 4.25, 5.25]]
    assert tr.marks("emit")["start_ms"].tolist() == [5.25, 10.5, 15.75, 21.0]
    # busy time stays the spans' own: the gaps are not work
    m = compute_metrics(tr)
    assert (m["stage0_ms"], m["stage1_ms"], m["period_ms"]) == (2.0, 2.0, 5.25)
    b = period_bound(build_scenario({**SERIAL, "run": {"chunks": 40}}))
    assert (b.kind, b.period_ms) == ("exact", 5.25)


@pytest.mark.parametrize("policy", FIXED, ids=lambda p: p.__name__)
def test_fast_path_equals_simpy_with_gaps(policy):
    @settings(max_examples=8, deadline=None, derandomize=True)
    @given(sc=scenarios(policy), gaps=st.lists(st.sampled_from([0.0, 0.25, 1.5]), min_size=4,
                                               max_size=4))
    def run(sc, gaps):
        sc = with_dispatch(sc, gaps)
        if fast_reason(sc) is None:
            same_times(sc)

    run()


@pytest.mark.parametrize("policy", [tb.serial, tb.stream_batch, tb.layer_pp,
                                    tb.rolling_window, tb.phase_pp_fixed],
                         ids=lambda p: p.__name__)
def test_the_bound_prices_the_gaps(policy):
    @settings(max_examples=6, deadline=None, derandomize=True)
    @given(sc=tb.scenarios(policy, realtime=False),
           gaps=st.lists(st.sampled_from([0.5, 2.0]), min_size=4, max_size=4))
    def run(sc, gaps):
        tb.check(with_dispatch(sc, gaps))  # exact = simulated; lower bound <= simulated

    run()


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from(["r1", "r0a"]),
       st.lists(st.integers(2, 40), min_size=5, max_size=5), st.floats(0.3, 1.0),
       st.lists(st.sampled_from([0.0, 0.5, 3.0]), min_size=2, max_size=2), st.booleans())
def test_a_shared_device_keeps_the_period_in_its_range(d_in, d_out, rec, costs, r2, gaps, host):
    # a gap is host time (or, hosted, work on the device): the range holds the period
    phases = ("build", "decode", "denoise", "recompute", "encode")
    raw = {"placement": {"stage0": "g", "stage1": "g"},
           "devices": {"g": {"rate": {2: r2}, "host": host}},
           "run": {"chunks": 60, "warmup": 20}, "transport": {"latency_ms": 0},
           "policy": {"name": "phase_pp", "d_in": d_in, "d_out": d_out, "recompute": rec},
           "costs": dict(zip(phases, costs, strict=True)),
           "dispatch": {"stage0": gaps[0], "stage1": gaps[1]}}
    assert_period_in_range(build_scenario(raw))


CPU0: dict[str, Any] = {"cores": [0], "rate": {2: 0.5}}


@pytest.mark.parametrize("host", [None, False])
def test_a_cpu_device_runs_the_gaps_by_hand(host):
    # one core, pure time-sharing, always work queued (D = 3): each chunk is build 2,
    # denoise 4, decode 3 and the gaps 2 x 0.5 + 0.25; hosted (the default with cores)
    # every ms of the core goes to one of them: 10.25 ms a chunk. Not hosted, the gaps
    # overlap the other stage's work. (Mid-run emits: the drain at the end is faster.)
    raw = {"placement": {"stage0": "cpu0", "stage1": "cpu0"},
           "devices": {"cpu0": {**CPU0, "host": host}}, "run": {"chunks": 60, "warmup": 20},
           "policy": {"name": "phase_pp", "d_in": 3, "d_out": 3, "recompute": "r1"},
           "costs": {"build": 2.0, "decode": 3.0, "denoise": 4.0, "recompute": 1.0},
           "transport": FREE, "dispatch": {"stage0": 0.5, "stage1": 0.25}}
    sc = build_scenario(raw)
    period = mean_period(simulate(sc), 20, 50)
    rng = compute_bound(sc).contention
    assert rng is not None
    lower = rng["lower_ms"]
    if host is None:
        assert period == pytest.approx(10.25, abs=1e-9)
        assert lower == pytest.approx(10.25)  # the core's work per chunk
    else:
        assert 9.0 <= period < 10.2 and lower == pytest.approx(9.0)


def test_a_pipelined_trace_keeps_the_conservative_fit():
    # calls overlap: only gaps between calls of one chunk with no other stage's end in
    # them count, and the fit is their lower quartile
    raw = {"run": {"chunks": 30, "warmup": 2}, "transport": FREE,
           "policy": {"name": "phase_pp", "d_in": 2, "d_out": 2, "recompute": "r1"},
           "costs": {"build": 1.0, "denoise": {"mean": 2.0, "steps": 2}, "decode": 1.0,
                     "recompute": 0.5},
           "dispatch": {"stage1": 0.2}}
    cal = calibrate_trace(simulate(build_scenario(raw)))
    fit = {g.stage: g for g in cal.dispatch}
    assert fit["stage1"].ms == pytest.approx(0.2) and not fit["stage1"].serial
    assert "lower quartile" in fit["stage1"].describe()


def test_calibrate_fits_the_gaps_back():
    raw = {**SERIAL, "run": {"chunks": 30, "warmup": 2},
           "costs": {"build": 1.0, "denoise": {"mean": 2.0, "steps": 2}, "decode": 1.0,
                     "encode": 0.5, "recompute": 0.75},
           "policy": {"name": "serial", "recompute": "r0a"},
           "dispatch": {"stage0": 0.3, "stage1": 0.2}}
    cal = calibrate_trace(simulate(build_scenario(raw)))
    assert cal.raw["dispatch"] == {"stage0": 0.3, "stage1": 0.2}
    assert cal.dispatch[0].describe().startswith("dispatch.stage0: 0.3 ms, the mean of")
    pred = compute_metrics(simulate(cal.scenario))["period_ms"]
    assert pred == pytest.approx(compute_metrics(simulate(build_scenario(raw)))["period_ms"])
    # a run without gaps fits none (waits between chunks are not gaps)
    plain = calibrate_trace(simulate(build_scenario({**raw, "dispatch": {}})))
    assert "dispatch" not in plain.raw


@pytest.mark.parametrize(("table", "field"), [
    ({"stage9": 1.0}, "dispatch.stage9"), ({"stage0": -1.0}, "dispatch.stage0"),
    ({"stage0": "x"}, "dispatch.stage0"), (3, "dispatch")])
def test_bad_dispatch_names_the_field(table, field):
    with pytest.raises(ScenarioError) as err:
        build_scenario({**SERIAL, "dispatch": table})
    assert err.value.field == field


def test_cli_bad_dispatch_is_one_line_exit_2():
    res = runner.invoke(app, ["simulate", "--set", "dispatch.stage7=0.5"])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "error: dispatch.stage7: unknown stage (policy phase_pp runs stage0, stage1)"]


def test_a_stage_the_policy_does_not_run_gets_no_gap():
    # a probe trace may name its own stages: calibrate keeps the gaps it can place
    raw = {**SERIAL, "run": {"chunks": 12, "warmup": 2},
           "costs": {"build": 1.0, "denoise": {"mean": 2.0, "steps": 2}, "decode": 1.0},
           "dispatch": {"stage0": 0.3, "stage1": 0.2}}
    tr = simulate(build_scenario(raw))
    renamed = Trace(tr.events.assign(stage=tr.events["stage"].replace({"stage1": "mesh"})),
                    tr.meta)
    cal = calibrate_trace(renamed)
    assert cal.raw["dispatch"] == {"stage0": 0.3}  # "mesh" is no stage of serial
    assert [g.stage for g in cal.dispatch] == ["stage0"]
    # a serial trace accounts for every gap: stage0's too (no two of its calls of one
    # chunk are back to back, so only the serial accounting sees them)
    assert calibrate_trace(tr).raw["dispatch"] == {"stage0": 0.3, "stage1": 0.2}


def test_a_preemption_in_a_serial_gap_is_dropped_but_a_short_gap_is_kept():
    from pipefill.sim.fit.robust import within_mads

    gaps = np.array([0.06, 0.23, 0.06, 0.23, 0.06, 0.23, 5.0, 0.0])
    keep = within_mads(gaps, 5.0, 1.0, upper_only=True)
    assert keep.tolist() == [True] * 6 + [False, True]  # 5 ms: a preemption
    two_sided = within_mads(np.array([10.0, 10.2, 9.8, 10.1, 1.0]), 5.0, 0.05)
    assert two_sided.tolist() == [True, True, True, True, False]
