"""period_ms is the throughput: the mean emit gap, checked against references of our own.

- a property over arbitrary emit gaps (ties included): fps * period_ms = 1000 * frames per
  chunk, period_ms = (last - first) / (n - 1) over the window, the median beside it;
- the bursty schedule of the issue by hand (emits in pairs every 30 ms: period 15 ms);
- a closed two-station tandem with D_in = 2 slots on lognormal stages, re-timed by the
  max-plus recursion s0[j] = max(s0[j-1], d1[j-K]) + X0[j], d1[j] = max(d1[j-1], s0[j]) +
  X1[j] on the same draws;
- the same tandem with exponential stages against its exact Markov chain: K customers on
  two stations of rate mu each have throughput mu * K / (K + 1);
- the lognormal tandem against a peer simulator, Ciw, on its own random streams: the
  closed network of 2 customers circulating between two single-server stations.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.sim.bound.analysis import compute_bound
from pipefill.sim.engine.core import simulate
from pipefill.traces.metrics import BURSTY_TOLERANCE, compute_metrics
from pipefill.traces.recorder import Recorder, Tag
from pipefill.traces.schema import Trace
from tests.helpers.scenarios import make_scenario


def _emit_trace(gaps: list[float], warmup: int, fpc: int):
    """Emits at the given gaps and no input marks (so no cool-down)."""
    rec = Recorder()
    t = 5.0
    for k in range(len(gaps) + 1):
        t += gaps[k - 1] if k else 0.0
        tag = Tag(0, k, k, 0)
        rec.span("denoise", "stage1", "compute", tag, t - 1.0, t)
        rec.mark("emit", "stage0", tag, t)
    return rec.trace({"source": "sim", "run": {"warmup": warmup, "frames_per_chunk": fpc}})


@settings(max_examples=80, deadline=None)
@given(gaps=st.lists(st.one_of(st.just(0.0), st.floats(0.0, 50.0)), min_size=1, max_size=30),
       warmup=st.integers(0, 6), fpc=st.integers(1, 16))
def test_period_is_the_mean_gap_and_fps_its_rate(gaps, warmup, fpc):
    m = compute_metrics(_emit_trace(gaps, warmup, fpc))
    t = 5.0 + np.concatenate([[0.0], np.cumsum(gaps)])
    first = max(warmup, 1)
    if len(t) < first + 1:
        assert m["period_ms"] is None and "no steady-state window" in m["missing"]["period_ms"]
        return
    window = np.diff(t)[first - 1:]
    assert m["period_p50_ms"] == pytest.approx(float(np.median(window)), abs=1e-9)
    span = t[-1] - t[first - 1]
    if span <= 0:  # every emit of the window at one instant: no rate, never 0
        assert m["period_ms"] is None and m["fps"] is None
        assert "one instant" in m["missing"]["period_ms"] == m["missing"]["fps"]
        return
    assert m["period_ms"] == pytest.approx(span / len(window), rel=1e-12)
    assert m["fps"] * m["period_ms"] == pytest.approx(1000.0 * fpc, rel=1e-12)
    off = abs(m["period_p50_ms"] - m["period_ms"]) / m["period_ms"]
    assert m["bursty"] is bool(off > BURSTY_TOLERANCE)
    assert ("period_ms" in m["notes"]) is m["bursty"]


ZERO_TRANSPORT = {"latency_ms": 0.0, "envelope_bytes": 0, "result_bytes": 0}
BURSTY = {"build": 10.0, "denoise": 10.0, "decode": 0.0}


def test_bursty_pairs_every_30_ms_are_a_15_ms_period():
    # build = denoise = 10, decode 0, producer_first, D_in = D_out = 2, no transport.
    # t=20: denoise0 ends as build1 ends; the D_in slot of 0 is free, so stage0 builds 2
    # [20,30] while result0 waits. t=30: denoise1 ends, D_in has a slot again, so stage0
    # builds 3 [30,40]; stage1 has envelope 2 but both D_out slots hold results 0 and 1,
    # which stage0 decodes only at 40 (emits 0 and 1 at 40). Then denoise 2 [40,50],
    # 3 [50,60] under builds 4, 5 [50,70]: emits 2, 3 at 70, and so on every 30 ms.
    pol = {"name": "phase_pp", "d_in": 2, "d_out": 2, "stage0_order": "producer_first",
           "recompute": "r1"}
    trace = simulate(make_scenario(pol, BURSTY, chunks=24, warmup=2,
                                   transport=ZERO_TRANSPORT))
    em = trace.marks("emit").sort_values("start_ms", kind="stable")
    t = em["start_ms"].to_numpy()
    assert t[:22].tolist() == [40.0 + 30.0 * (k // 2) for k in range(22)]
    # the last two have no successor to build: they drain 10 ms apart
    assert t[22:].tolist() == [350.0, 360.0]
    steady = Trace(trace.events[~((trace.events["name"] == "emit")
                                  & (trace.events["chunk"] >= 22))], trace.meta)
    m = compute_metrics(steady)
    # window without the drain: emit 1 (t = 40) to emit 21 (t = 340): 300 ms / 20 = 15 ms
    assert m["period_ms"] == 15.0 and m["fps"] == 12 * 1000 / 15.0
    # 20 gaps alternating 30, 0: the median of an even count lands on 15 by chance
    assert m["period_p50_ms"] == 15.0 and not m["bursty"]
    # the whole run: the cool-down leaves out the 4 emits after the last input entered
    # (build 23 at t = 300): emits 2..19, 40 to 310 = 270 ms over 18 gaps, 15 ms again
    m = compute_metrics(trace)
    assert m["window"]["cooldown"] == 4 and m["window"]["last_chunk"] == 19
    assert m["period_ms"] == 15.0 and m["period_p50_ms"] == 15.0 and not m["bursty"]
    # hidden_k / 10 = (20 - gap) / 10: 2 (gap 0) x9, 0 (gap 30) x9: median 1
    assert m["overlap_score"] == 1.0
    # window [40, 310]: stage0 builds 4..21 and stage1 denoises 2..19, 180 ms each:
    # (360 - 270) / (360 - 180); half the lesser stage's work is hidden
    assert m["overlap_window"] == 0.5
    # a window of an odd number of gaps, one more 0 than 30, is bursty and scores above 1
    m = compute_metrics(simulate(make_scenario(pol, BURSTY, chunks=24, warmup=3,
                                               transport=ZERO_TRANSPORT)))
    assert m["period_p50_ms"] == 0.0 and m["bursty"] and "bursty" in m["notes"]["period_ms"]
    assert m["period_ms"] == pytest.approx(240.0 / 17, abs=1e-12)


def _tandem(costs: dict, chunks: int, seed: int, d_in: int = 2):
    pol = {"name": "phase_pp", "d_in": d_in, "d_out": chunks, "recompute": "r1",
           "stage0_order": "producer_first"}
    return simulate(make_scenario(pol, {**costs, "decode": 0.0}, chunks=chunks, warmup=50,
                                  seed=seed, transport=ZERO_TRANSPORT))


def _phase(trace, name: str) -> tuple[np.ndarray, np.ndarray]:
    sp = trace.spans
    sel = sp[sp["name"] == name].sort_values("chunk")
    return (sel["end_ms"] - sel["start_ms"]).to_numpy(), sel["end_ms"].to_numpy()


def maxplus_tandem(x0: np.ndarray, x1: np.ndarray, slots: int) -> tuple[np.ndarray, ...]:
    """Closed tandem with ``slots`` circulating: a build needs the slot freed when the
    generator finished the envelope ``slots`` earlier."""
    s0, d1 = np.zeros(len(x0)), np.zeros(len(x0))
    for j in range(len(x0)):
        freed = d1[j - slots] if j >= slots else 0.0
        s0[j] = max(s0[j - 1] if j else 0.0, freed) + x0[j]
        d1[j] = max(d1[j - 1] if j else 0.0, s0[j]) + x1[j]
    return s0, d1


@pytest.mark.parametrize("seed", [0, 7])
def test_lognormal_tandem_matches_the_maxplus_recursion_on_the_same_draws(seed):
    lognormal = {"dist": "lognormal", "mean": 10.0, "cv": 0.3}
    trace = _tandem({"build": lognormal, "denoise": lognormal}, chunks=1500, seed=seed)
    x0, s0_sim = _phase(trace, "build")
    x1, d1_sim = _phase(trace, "denoise")
    s0, d1 = maxplus_tandem(x0, x1, slots=2)
    np.testing.assert_allclose(s0_sim, s0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(d1_sim, d1, rtol=0, atol=1e-9)
    # the emit rate is the generator's departure rate (decode takes no time)
    m = compute_metrics(trace)
    ref = (d1[-1] - d1[m["warmup"] - 1]) / (len(d1) - m["warmup"])
    assert m["period_ms"] == pytest.approx(ref, rel=2e-3)
    # the median gap would overstate fps here: it is not what period_ms reports
    assert m["period_p50_ms"] < 0.97 * m["period_ms"]


def test_exponential_tandem_throughput_is_the_markov_chain_value():
    # 2 slots on two exponential stations of mean 10 ms: the closed chain's states are
    # (customers at station 0) in {0, 1, 2} with equal stationary mass, so station 1 is
    # busy 2/3 of the time: 1 / 10 ms * 2/3 = 66.67 chunks/s, i.e. a 15 ms period.
    grid = (np.arange(4000) + 0.5) / 4000
    expo = {"dist": "empirical", "samples": (-10.0 * np.log1p(-grid)).round(6).tolist()}
    trace = _tandem({"build": expo, "denoise": expo}, chunks=4000, seed=3)
    m = compute_metrics(trace)
    assert 1000.0 / m["period_ms"] == pytest.approx(1000.0 / 15.0, rel=0.03)
    # the old figure (median gap) overstates the rate by far more than that
    assert 1000.0 / m["period_p50_ms"] > 1.15 * 1000.0 / 15.0


def ciw_closed_tandem_rate(mean_ms: float, cv: float, customers: int, horizon_ms: float,
                           seed: int) -> float:
    """Departures per second from station 2 of Ciw's closed two-station tandem."""
    ciw = pytest.importorskip("ciw")
    sigma = float(np.sqrt(np.log1p(cv**2)))
    mu = float(np.log(mean_ms) - sigma**2 / 2)
    net = ciw.create_network(
        arrival_distributions=[ciw.dists.Sequential([0.0, 1e18]), None],
        batching_distributions=[ciw.dists.Deterministic(customers), None],
        service_distributions=[ciw.dists.Lognormal(mu, sigma)] * 2,
        routing=[[0.0, 1.0], [1.0, 0.0]], number_of_servers=[1, 1])
    ciw.seed(seed)
    sim = ciw.Simulation(net)
    sim.simulate_until_max_time(horizon_ms)
    done = sorted(r.exit_date for r in sim.get_all_records() if r.node == 2)
    warm = done[len(done) // 20:]  # leave the fill out, as the trace's warm-up does
    return 1000.0 * (len(warm) - 1) / (warm[-1] - warm[0])


def test_lognormal_tandem_throughput_matches_ciw():
    # independent streams: the two rates agree in distribution (standard error of each
    # about 0.5 % over some 6,000 chunks; 2.5 % is five of them)
    lognormal = {"dist": "lognormal", "mean": 10.0, "cv": 0.3}
    m = compute_metrics(_tandem({"build": lognormal, "denoise": lognormal}, chunks=6000,
                                seed=11))
    ours = 1000.0 / m["period_ms"]
    theirs = ciw_closed_tandem_rate(10.0, 0.3, 2, 6000 * 11.65, seed=11)
    assert ours == pytest.approx(theirs, rel=0.025)
    # and neither is the naive bound (one station's rate) nor the serial sum's
    assert 50.0 * 1.1 < ours < 100.0 * 0.95


def test_overlap_above_one_carries_its_reason():
    # the bursty pairs with warm-up 3: the window's 17 gaps are 9 of 0 ms (hidden = 20 =
    # 2 x 10) and 8 of 30 ms (hidden 0), so the median share is 2
    pol = {"name": "phase_pp", "d_in": 2, "d_out": 2, "recompute": "r1"}
    m = compute_metrics(simulate(make_scenario(pol, BURSTY, chunks=24, warmup=3,
                                               transport=ZERO_TRANSPORT)))
    assert m["overlap_score"] == 2.0
    assert m["notes"]["overlap_score"].startswith("2.00 > 1: ")
    assert 0.0 <= m["overlap_window"] <= 1.0 and m["period_ms"] > 0 and m["bursty"]


def test_bound_names_the_bursty_steady_state_the_simulation_has():
    # the bursty case: the analytic model of a greedy stage0 only bounds it below (10 ms);
    # the bound also says where the order settles at these (constant) costs: pairs every
    # 30 ms, i.e. the 15 ms the simulated mean gives over whole cycles
    pol = {"name": "phase_pp", "d_in": 2, "d_out": 2, "stage0_order": "producer_first",
           "recompute": "r1"}
    sc = make_scenario(pol, BURSTY, chunks=120, transport=ZERO_TRANSPORT)
    b = compute_bound(sc)
    assert b.kind == "lower_bound" and b.period_ms == 10.0
    assert b.settled is not None and (b.settled.cycle, b.settled.span_ms) == (2, 30.0)
    t = np.sort(simulate(sc).marks("emit")["start_ms"].to_numpy())
    steady = (t[100] - t[20]) / 80  # whole cycles, before the drain
    assert b.settled.period_ms == steady == 15.0
    assert b.explanation.startswith("At mean costs the greedy order settles into a cycle "
                                    "of 2 emits every 30.0 ms: 15.0 ms per chunk")
    assert b.to_json()["settled"] == {"period_ms": 15.0, "cycle_emits": 2, "span_ms": 30.0}


def test_a_fixed_order_bound_has_no_settled_regime():
    pol = {"name": "phase_pp", "recompute": "r0a", "recompute_lag": 0}
    costs = {**BURSTY, "decode": 5.0, "recompute": 2.0, "encode": 3.0}
    assert compute_bound(make_scenario(pol, costs, chunks=40)).settled is None
