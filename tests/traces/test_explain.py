"""`pipefill explain`: the five known schedules, simulated and replayed, name their
cause; idle causes always sum to the idle time; the bound's bottleneck idles least."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.exec.threads.replay import ReplayOptions, replay
from pipefill.sim.engine.core import simulate
from pipefill.sim.fit.facts import explain, facts_of
from pipefill.traces.explain import explain_trace
from pipefill.traces.io import write_trace
from pipefill.traces.schema import Trace
from pipefill.traces.waits import CAUSES
from tests.helpers.scenarios import make_scenario

runner = CliRunner()
#: stage1 (recompute + 2 x denoise = 8 ms) is the bottleneck; stage0 does 1 + 3 (+ 1)
COSTS = {"build": 1.0, "denoise": {"mean": 3.0, "steps": 2}, "recompute": 2.0,
         "decode": 3.0, "encode": 1.0}
#: name -> (policy, cost changes, run changes, expected category, stage, own cause)
KNOWN: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], str, str, str | None]] = {
    "backpressure": ({"name": "phase_pp", "d_out": 1}, {}, {}, "backpressure", "stage1",
                     "blocked"),
    "dependency": ({"name": "phase_pp", "recompute": "r0a", "recompute_lag": 0}, {}, {},
                   "dependency", "stage1", None),
    "fill_drain": ({"name": "layer_pp", "stages": 2, "items": 1, "blocks": 4},
                   {"denoise": {"mean": 4.0, "steps": 2}}, {}, "fill/drain bubbles",
                   "stage1", "fill_drain"),
    "source": ({"name": "phase_pp"}, {}, {"source": "realtime", "fps_in": 600.0},
               "source-bound", "stage0", "source"),
    "imbalance": ({"name": "phase_pp", "stage0_order": "consumer_first"}, {"build": 12.0}, {},
                  "stage imbalance", "stage1",
                  "starved"),
}


def _scenario(name: str, chunks: int = 24, scale: float = 1.0):
    """A known schedule; ``scale`` multiplies every duration (and the input period)."""
    policy, costs, run, *_ = KNOWN[name]
    costs = {p: _scaled(c, scale) for p, c in {**COSTS, **costs}.items()}
    if "fps_in" in run:
        run = {**run, "fps_in": run["fps_in"] / scale}
    return make_scenario(policy, costs, chunks=chunks, warmup=4, **run)


def _scaled(cost, scale: float):
    return {**cost, "mean": cost["mean"] * scale} if isinstance(cost, dict) else cost * scale


def _assert_known(name: str, trace: Trace) -> None:
    _, _, _, category, stage, own = KNOWN[name]
    e = explain(trace, label=name)
    assert e.verdict.category == category, (e.verdict.text, [s.line() for s in e.stages])
    s = e.stage(stage)
    if own is not None:  # the stage's own wait: >= 80% of its idle time in the schedule
        # (the run's own fill and drain at the window's edges is the finite run, not it)
        edges = sum(p.ms for p in s.parts if p.target.startswith("the run"))
        assert s.causes[own] >= 0.8 * (s.idle_ms - edges), s.line()
    else:  # a coupling: the chain shows the dependency upstream
        part = s.parts[0]
        assert part.cause == "starved" and part.chain is not None
        assert part.chain.upstream == "stage0" and "dependency" in part.chain.own
        assert "decode of chunk k-1" in s.line()
    assert e.inferred_share == 0.0  # the wait lane is recorded: nothing inferred


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_simulated_known_schedules_name_their_cause(name):
    trace = simulate(_scenario(name))
    _assert_known(name, trace)
    assert explain(trace).verdict.agrees is True  # the bound's critical cycle agrees


@pytest.fixture(scope="module")
def opts(tmp_path_factory) -> ReplayOptions:
    path = tmp_path_factory.mktemp("cal") / "calibration.json"
    return ReplayOptions(calibration_path=path, timeout_s=20.0, probe_load=False)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_replayed_known_schedules_name_their_cause(name, opts):
    """The threads executor on calibrated CPU kernels records the same wait lane (phases
    of 8-96 ms, so a thread's wake-up and dispatch, and the GIL the two stages' kernel
    loops share, stay small beside them)."""
    _assert_known(name, replay(_scenario(name, chunks=16, scale=8.0), opts))


def test_bound_words_backpressure_not_dependency():
    from pipefill.sim.bound.analysis import compute_bound

    b = compute_bound(_scenario("backpressure"))
    assert b.critical.category == "backpressure" and "(q_out slot)" in b.critical.chain
    assert "backpressure: q_out's 1 slot(s)" in b.explanation
    assert "dependency loop" not in b.explanation
    lag0 = compute_bound(_scenario("dependency"))
    assert lag0.critical.category == "dependency" and "slot" not in lag0.critical.chain


# -- invariants over policies and costs --------------------------------------------
@st.composite
def scenarios(draw):
    cost = st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 8.0])
    name = draw(st.sampled_from(["phase_pp", "serial", "layer_pp"]))
    if name == "layer_pp":
        policy = {"name": name, "stages": draw(st.integers(2, 3)),
                  "items": draw(st.integers(1, 4)), "blocks": 6}
    else:
        policy = {"name": name, "recompute": draw(st.sampled_from(["r1", "r0", "r0a"]))}
        if name == "phase_pp":
            policy.update(d_in=draw(st.integers(1, 3)), d_out=draw(st.integers(1, 3)),
                          recompute_lag=draw(st.integers(0, 2)))
    costs = {"build": draw(cost), "decode": draw(cost), "recompute": draw(cost),
             "denoise": {"mean": draw(cost), "steps": draw(st.integers(1, 2))}}
    return make_scenario(policy, costs, chunks=40, warmup=8)


@settings(max_examples=40, deadline=None)
@given(sc=scenarios())
def test_causes_sum_to_idle_and_the_bottleneck_idles_least(sc):
    trace = simulate(sc)
    facts = facts_of(trace)
    e = explain_trace(trace, facts)
    for s in e.stages:
        assert set(s.causes) == set(CAUSES)
        assert all(v >= 0 for v in s.causes.values())
        assert abs(sum(s.causes.values()) - s.idle_ms) < 1e-6
        assert abs(sum(p.ms for p in s.parts) - s.idle_ms) < 1e-6
        assert abs(s.busy_ms + s.idle_ms - s.window_ms) < 1e-6
    assert facts.critical is not None
    idle = {s.stage: s.idle_ms for s in e.stages}
    # a finite window cuts a chunk's work at each end: allow that much
    edge = 2 * max(s.busy_ms for s in e.stages) / (e.window["periods"] or 1)
    assert idle[facts.critical.bottleneck] <= min(idle.values()) + edge + 1e-6


# -- probe traces ----------------------------------------------------------------------
def _probe_pipeline(waits: bool) -> Trace:
    """Two threads: stage0 builds (1 ms) into a queue of 2, stage1 denoises (4 ms) and
    emits; stage0 is blocked on the full queue most of the time."""
    import queue
    import threading
    import time

    from pipefill import probe

    rec = probe.Recorder(run={"warmup": 3})
    s0, s1 = rec.stage("stage0"), rec.stage("stage1")
    q: queue.Queue[int] = queue.Queue(maxsize=2)

    def waiting(stage, on):
        return stage.wait(on) if waits else _Null()

    def producer() -> None:
        for k in range(14):
            with s0.span("build", chunk=k):
                time.sleep(0.001)
            with waiting(s0, "slot:q_in"):
                q.put(k)

    def consumer() -> None:
        for _ in range(14):
            with waiting(s1, "get:q_in"):
                k = q.get()
            with s1.span("denoise", chunk=k):
                time.sleep(0.004)
            s1.mark("emit", chunk=k)

    threads = [threading.Thread(target=f) for f in (producer, consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return rec.trace()


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_probe_pipelines_with_and_without_waits_are_both_explained():
    with_waits = explain_trace(_probe_pipeline(waits=True))
    s0 = with_waits.stage("stage0")
    assert with_waits.inferred_share == 0.0
    # blocked on the full queue, but for its drain: it finishes building 2 chunks early
    assert s0.parts[0].cause == "blocked" and s0.parts[0].target == "q_in", s0.line()
    assert s0.causes["blocked"] + s0.causes["fill_drain"] >= 0.99 * s0.idle_ms
    assert with_waits.verdict.category == "stage imbalance"
    without = explain_trace(_probe_pipeline(waits=False))
    assert without.inferred_share > 0.2
    assert any("inferred" in n for n in without.notes)
    assert without.verdict.category == "stage imbalance"


# -- the command ---------------------------------------------------------------------
def test_cli_explain_text_json_and_out(tmp_path):
    path = write_trace(simulate(_scenario("backpressure")), tmp_path / "t.parquet")
    res = runner.invoke(app, ["explain", str(path)])
    assert res.exit_code == 0, res.output
    assert "verdict: backpressure" in res.output and "lever: D_out = 2" in res.output
    assert "(agrees)" in res.output
    out = tmp_path / "e.json"
    res = runner.invoke(app, ["explain", str(path), "--json", "--out", str(out)])
    data = json.loads(res.stdout)
    assert data["category"] == "backpressure" and data["verdict"].startswith("backpressure")
    assert {s["stage"] for s in data["stages"]} == {"stage0", "stage1"}
    assert json.loads(out.read_text()) == data


def test_cli_explain_bad_input(tmp_path):
    trace = simulate(_scenario("backpressure"))
    ev = trace.events
    no_emit = write_trace(Trace(ev[ev["name"] != "emit"], trace.meta), tmp_path / "a.parquet")
    one = write_trace(Trace(ev[ev["stage"] != "stage1"], trace.meta), tmp_path / "b.parquet")
    junk = tmp_path / "c.csv"
    junk.write_text("x\n1\n")
    for path, words in ((no_emit, "no emit"), (one, "two or more stages"), (junk, "kind")):
        res = runner.invoke(app, ["explain", str(path), "--out", str(tmp_path / "o.json")])
        assert res.exit_code == 2 and words in res.stderr, res.output
        assert res.stderr.count("\n") == 1
    assert not (tmp_path / "o.json").exists()
