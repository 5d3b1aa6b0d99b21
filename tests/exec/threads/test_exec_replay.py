"""Replay on the threads executor: trace-format parity with the simulator, every recompute
and anchor mode, hard cuts, realtime input, overhead structure."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipefill.exec.threads.replay import ReplayOptions, replay
from pipefill.sim.engine.core import simulate
from pipefill.sim.policies import POLICIES as REGISTRY
from pipefill.traces.diff import diff_traces
from pipefill.traces.schema import COLUMNS, Trace
from tests.helpers.replay import _emits, check_hard_cuts
from tests.helpers.scenarios import make_scenario

#: stage1 is clearly the bottleneck, so every scheduling choice is the same in the
#: simulator and on a noisy machine (no near-ties between the stages)
COSTS = {"build": 1.0, "denoise": {"mean": 5.0, "steps": 2}, "recompute": 3.0, "decode": 2.0,
         "anchor_decode": 1.0, "encode": 1.0}
KEY = ["kind", "name", "stage", "session", "chunk", "call_id", "epoch", "step"]


@pytest.fixture(scope="module")
def opts(tmp_path_factory) -> ReplayOptions:
    path = tmp_path_factory.mktemp("cal") / "calibration.json"
    return ReplayOptions(calibration_path=path, timeout_s=20.0)


def _work(trace: Trace):
    """Every row but counters and the wait lane (whose spans depend on timing)."""
    ev = trace.events
    return ev[(ev["kind"] != "counter") & (ev["lane"] != "wait")]


def _keys(trace: Trace) -> Counter:
    ev = _work(trace)
    return Counter(ev[KEY].itertuples(index=False, name=None))


def _sequence(trace: Trace, stage: str) -> list[tuple]:
    sp = trace.spans
    sp = sp[(sp["stage"] == stage) & (sp["lane"] == "compute")].sort_values("start_ms")
    return list(sp[["name", "chunk", "call_id", "epoch", "step"]].itertuples(index=False,
                                                                           name=None))




POLICIES = [
    {"name": "serial"},
    {"name": "serial", "recompute": "r0a"},
    {"name": "phase_pp"},
    {"name": "phase_pp", "recompute": "r0"},
    {"name": "phase_pp", "recompute": "r0a", "recompute_lag": 0},
    {"name": "phase_pp", "recompute": "r0a", "anchor": "anchor_only", "d_in": 3},
    {"name": "phase_pp", "stage0_order": "consumer_first", "d_out": 1},
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: "-".join(map(str, p.values())))
def test_replay_matches_the_simulated_schedule(policy, opts):
    """Same programs, same events: identical chunks, call_ids, epochs and steps, the
    generator's order of work and the emit order; same columns and metadata keys. (The
    order of stage0's choices can depend on timing, so only the serial test below
    compares every event's position.)"""
    sc = make_scenario(policy, COSTS, chunks=8)
    measured, predicted = replay(sc, opts), simulate(sc)
    assert list(measured.events.columns) == list(COLUMNS)
    assert _keys(measured) == _keys(predicted)
    assert _sequence(measured, "stage1") == _sequence(predicted, "stage1")
    assert _emits(measured) == _emits(predicted) == [(k, 0) for k in range(8)]
    assert measured.meta["source"] == "exec" and measured.meta["status"] == "ok"
    assert set(predicted.meta) <= set(measured.meta)


def test_serial_replay_orders_every_event_like_the_simulator(opts):
    sc = make_scenario({"name": "serial", "recompute": "r0"}, COSTS, chunks=5)
    meas, pred = replay(sc, opts), simulate(sc)

    def order(t: Trace) -> list[tuple]:
        ev = _work(t)
        return list(ev[KEY].itertuples(index=False, name=None))

    assert order(meas) == order(pred)




@given(cuts=st.lists(st.integers(1, 9), min_size=1, max_size=3, unique=True),
       d_in=st.integers(1, 3), d_out=st.integers(1, 3),
       mode=st.sampled_from(["r1", "r0", "r0a"]))
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hard_cuts_never_emit_a_stale_epoch(cuts, d_in, d_out, mode, opts):
    policy = {"name": "phase_pp", "d_in": d_in, "d_out": d_out, "recompute": mode,
              "hard_cuts": sorted(cuts)}
    costs = {"build": 0.5, "denoise": {"mean": 1.5, "steps": 2}, "recompute": 0.5,
             "decode": 1.0, "encode": 0.3}
    check_hard_cuts(replay(make_scenario(policy, costs, chunks=10), opts), 10, sorted(cuts))


def test_hard_cut_with_anchor_only_drains_and_refills(opts):
    """In-flight stale results are received and dropped (never skipped), then the new
    epoch restarts from an init-cache envelope with no recompute on its first chunk."""
    policy = {"name": "phase_pp", "recompute": "r0a", "anchor": "anchor_only", "d_in": 3,
              "d_out": 2, "hard_cuts": [4]}
    sc = make_scenario(policy, COSTS, chunks=8)
    trace = replay(sc, opts)
    check_hard_cuts(trace, 8, [4])
    recomputed = set(trace.spans[trace.spans["name"] == "recompute"]["chunk"])
    assert 0 not in recomputed and 4 not in recomputed
    assert _keys(trace) == _keys(simulate(sc))


def test_realtime_source_waits_for_inputs(opts):
    sc = make_scenario({"name": "phase_pp"}, COSTS, chunks=6, source="realtime", fps_in=2400.0)
    trace = replay(sc, opts)
    inputs = trace.marks("input").set_index("chunk")["start_ms"]
    emits = trace.marks("emit").set_index("chunk")["start_ms"]
    assert list(inputs.index) == list(range(6))
    # chunk k's input arrives at (k + 1) * 12 frames / 2400 fps = 5 (k + 1) ms
    for k in range(6):
        assert inputs[k] >= 5.0 * (k + 1) - 0.5
        assert emits[k] > inputs[k]


def test_calibrated_durations_follow_the_cost_model(opts):
    """Serial runs one phase at a time, so whatever the machine's load, the phases keep
    their modelled proportions (generous bounds around 1 : 2 : 4)."""
    sc = make_scenario({"name": "serial"}, {"build": 2.0, "denoise": 8.0, "decode": 4.0},
                       chunks=6)
    sp = replay(sc, opts).spans
    med = (sp["end_ms"] - sp["start_ms"]).groupby(sp["name"]).median()
    assert 1.0 < med["decode"] / med["build"] < 4.0
    assert 2.0 < med["denoise"] / med["build"] < 8.0


def _concurrent(trace: Trace) -> bool:
    """Some stage0 compute span overlaps some stage1 compute span in time."""
    sp = trace.spans[trace.spans["lane"] == "compute"]
    a = sp[sp["stage"] == "stage0"][["start_ms", "end_ms"]].to_numpy()
    b = sp[sp["stage"] == "stage1"][["start_ms", "end_ms"]].to_numpy()
    return any(s0 < e1 and s1 < e0 for s0, e0 in a for s1, e1 in b)


def test_phase_pp_runs_the_stages_concurrently_and_serial_never_does(opts):
    """Structure, not speed (the machine may be shared): phase_pp keeps both stages busy
    at once, serial's protocol forbids it."""
    costs = {"build": 2.0, "denoise": {"mean": 4.0, "steps": 2}, "decode": 6.0}
    assert _concurrent(replay(make_scenario({"name": "phase_pp"}, costs, chunks=8), opts))
    assert not _concurrent(replay(make_scenario({"name": "serial"}, costs, chunks=8), opts))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_policy_replays_with_the_simulated_events(name, opts):
    """The executor interprets every action type the registry's policies use: the same
    events (chunks, sessions, call_ids, epochs, steps) as the simulator, and `diff` runs."""
    sessions = 2 if REGISTRY[name].multi_session else 1
    # 8 chunks: stream_batch holds 5 in flight when its last input enters (the cool-down)
    sc = make_scenario({"name": name}, COSTS, chunks=8, warmup=1, sessions=sessions)
    measured, predicted = replay(sc, opts), simulate(sc)
    assert _keys(measured) == _keys(predicted)
    assert len(measured.marks("emit")) == 8 * sessions
    res = diff_traces(predicted, measured)
    assert res["status"] in ("agree", "differ")  # both traces have a period to judge
    assert res["verdict"].startswith(res["status"] + ": measured period")
    assert res["metrics"]["period_ms"]["predicted"] is not None
    assert res["metrics"]["period_ms"]["measured"] is not None
    # the same events: every (stage, lane, phase) has as many spans in each trace
    assert res["phases"] and all(p["n_predicted"] == p["n_measured"] for p in res["phases"])
    assert res["divergence"] is None or res["divergence"]["kind"] != "outcome"


def test_a_free_message_waits_behind_a_transfer_in_flight(opts):
    # latency 0 and bare envelopes of 0 bytes: an r0a envelope carrying context (every
    # 2nd chunk) takes 4 ms, the next one (built 1 ms later) none. A link is FIFO, so
    # the free envelope must not overtake the one on the wire (stage1 would then run
    # chunk k+1 before k).
    tr = {"latency_ms": 0.0, "bandwidth_gbps": 1.0, "envelope_bytes": 0,
          "context_bytes": 4_000_000, "result_bytes": 0}
    pol = {"name": "phase_pp", "d_in": 3, "recompute": "r0a", "recompute_lag": 1,
           "recompute_every": 2}
    sc = make_scenario(pol, COSTS, chunks=8, transport=tr)
    measured = replay(sc, opts)
    assert _emits(measured) == [(k, 0) for k in range(8)]
    assert _sequence(measured, "stage1") == _sequence(simulate(sc), "stage1")


def test_each_worker_warms_up_in_its_own_thread_before_time_zero(opts, monkeypatch):
    # cuBLAS/cuDNN handles are per thread: a warm-up must run in the worker thread that
    # will run the kernels, and before the clock starts (not inside chunk 0's spans)
    from pipefill.exec.kernels import calibrated

    seen: list[str] = []
    original = calibrated.CalibratedKernels.warm_up

    def spy(self):
        seen.append(threading.current_thread().name)
        original(self)

    monkeypatch.setattr(calibrated.CalibratedKernels, "warm_up", spy)
    trace = replay(make_scenario({"name": "phase_pp"}, COSTS, chunks=3), opts)
    assert {"pipefill-stage0", "pipefill-stage1"} <= set(seen)
    assert trace.events["start_ms"].min() >= 0.0


def test_a_failing_warm_up_ends_the_run_naming_the_stage(opts, monkeypatch):
    from pipefill.exec.errors import ExecError
    from pipefill.exec.kernels import calibrated

    def boom(self):
        if threading.current_thread().name == "pipefill-stage1":
            raise RuntimeError("no device memory")

    monkeypatch.setattr(calibrated.CalibratedKernels, "warm_up", boom)
    with pytest.raises(ExecError, match=r"^stage1 failed at 'start'.*no device memory"):
        replay(make_scenario({"name": "phase_pp"}, COSTS, chunks=3), opts)


def test_warm_up_reaches_kernels_through_their_wrappers():
    from pipefill.exec.dist.rank_kernels import CallTrackingKernels
    from pipefill.exec.kernels.registry import Fault, FaultyKernels, prepare

    calls: list[str] = []

    class Inner:
        def warm_up(self) -> None:
            calls.append("warm")

        def run(self, action):
            return None

    prepare(CallTrackingKernels(FaultyKernels(Inner(), Fault("denoise", 1))))
    assert calls == ["warm"]

    class Prepared(Inner):
        def prepare(self) -> None:  # `prepare` wins over `warm_up`
            calls.append("prepare")

    class Bare:
        inner = None

    prepare(FaultyKernels(Prepared(), Fault("denoise", 1)))
    prepare(Bare())  # a chain without any hook ends quietly
    assert calls == ["warm", "prepare"]
