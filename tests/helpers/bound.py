"""Hypothesis strategies of every policy's scenarios and the steady period they are compared on."""

from __future__ import annotations

import math

import pytest
from hypothesis import strategies as st

from pipefill.sim.bound.analysis import period_bound
from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.load import build_scenario

CHUNKS, DRAIN, WINDOW = 150, 30, 12


def steady_period(trace, cyclicity: int, session: int = 0) -> float:
    emits = trace.marks("emit")
    t = emits[emits["session"] == session].sort_values("start_ms", kind="stable")
    t = t["start_ms"].to_numpy()
    m = cyclicity * math.ceil(WINDOW / cyclicity)
    end = len(t) - 1 - DRAIN
    assert end - m >= 40, "window too long for the run"
    return float((t[end] - t[end - m]) / m)


def costs(draw, steps: int) -> dict:
    c = {"build": draw(st.integers(1, 20)), "recompute": draw(st.integers(1, 20)),
         "denoise": {"mean": draw(st.integers(1, 40)), "steps": steps},
         "decode": draw(st.integers(1, 40)), "anchor_decode": draw(st.integers(1, 10))}
    if draw(st.booleans()):
        c["encode"] = draw(st.integers(1, 20))
    if draw(st.booleans()):  # batched calls: cost(B) = fixed + per_item * B
        c["denoise"]["batch_fixed_ms"] = draw(st.integers(0, c["denoise"]["mean"]))
    return c


def transport(draw) -> dict:
    return {"latency_ms": draw(st.sampled_from([0, 1, 2])), "bandwidth_gbps": 1.0,
            "envelope_bytes": draw(st.sampled_from([0, 1_000_000, 3_000_000])),
            "result_bytes": draw(st.sampled_from([0, 2_000_000])),
            "context_bytes": draw(st.sampled_from([0, 1_000_000]))}


@st.composite
def scenarios(draw, policy, realtime=True):
    steps = draw(st.integers(1, 3))
    pol, sessions = policy(draw)
    run = {"chunks": CHUNKS, "warmup": 2, "sessions": sessions}
    if realtime and draw(st.integers(0, 3)) == 0:
        run.update(source="realtime", fps_in=float(draw(st.sampled_from([200, 1000, 3000]))))
    return build_scenario({"run": run, "policy": pol, "costs": costs(draw, steps),
                           "transport": transport(draw)})


def phase_pp(draw):
    return ({"name": "phase_pp", "d_in": draw(st.integers(1, 4)), "d_out": draw(st.integers(1, 3)),
             "stage0_order": draw(st.sampled_from(["producer_first", "consumer_first"])),
             "recompute": draw(st.sampled_from(["r1", "r0", "r0a"])),
             "recompute_lag": draw(st.integers(0, 3)),
             "recompute_every": draw(st.sampled_from([1, 1, 2])),
             "anchor": draw(st.sampled_from(["full", "full", "anchor_only"]))}, 1)


def phase_pp_fixed(draw):
    """Only the configurations bound_models.fixed_lead proves fixed (saturated source)."""
    case = draw(st.sampled_from(["r0a_lag0", "producer_lag", "producer_dout1"]))
    d_in = draw(st.integers(1, 4))
    pol = {"name": "phase_pp", "d_in": d_in, "d_out": draw(st.integers(1, 3)),
           "stage0_order": "producer_first", "recompute": "r0a", "recompute_lag": 0}
    if case == "r0a_lag0":
        pol["stage0_order"] = draw(st.sampled_from(["producer_first", "consumer_first"]))
    elif case == "producer_lag":
        pol["recompute_lag"] = draw(st.integers(0, d_in - 1))
    else:
        pol.update(d_out=1, recompute=draw(st.sampled_from(["r1", "r0", "r0a"])),
                   recompute_lag=draw(st.integers(d_in, d_in + 2)))
    return pol, 1


def serial(draw):
    return ({"name": "serial", "recompute": draw(st.sampled_from(["r1", "r0", "r0a"])),
             "recompute_every": draw(st.sampled_from([1, 2]))}, 1)


def stream_batch(draw):
    return ({"name": "stream_batch", "stages": draw(st.integers(1, 4)),
             "steps": draw(st.integers(1, 4)), "blocks": 12,
             "max_outstanding": draw(st.integers(1, 3)), "balance": draw(st.booleans())}, 1)


def layer_pp(draw):
    return ({"name": "layer_pp", "stages": draw(st.integers(1, 4)),
             "items": draw(st.integers(1, 5)), "blocks": 12}, 1)


def multi_session(draw):
    d_in, d_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return ({"name": "multi_session", "d_in": d_in, "d_out": d_out,
             "lead": draw(st.integers(0, d_in + d_out - 1)),
             "max_batch": draw(st.integers(1, 3)),
             "stage0": draw(st.sampled_from(["shared", "per_session"])),
             "recompute": draw(st.sampled_from(["r1", "r0"]))}, draw(st.integers(1, 3)))


def rolling_window(draw):
    return ({"name": "rolling_window", "window": draw(st.integers(1, 5)),
             "d_in": draw(st.integers(1, 3)), "d_out": draw(st.integers(1, 3))}, 1)


def long_run_period(trace, first: int = 40, session: int = 0) -> tuple[float, int]:
    """The mean emit gap from chunk ``first`` to ``DRAIN`` chunks before the end, and
    how many gaps that is."""
    emits = trace.marks("emit")
    t = emits[emits["session"] == session].sort_values("start_ms", kind="stable")
    t = t["start_ms"].to_numpy()
    end = len(t) - 1 - DRAIN
    return float((t[end] - t[first]) / (end - first)), end - first


def check(sc) -> None:
    """Exact: the steady state over whole regime cycles equals the bound to 1e-9. Lower
    bound: a greedy order has no regime of the model's, and a realtime source lets a
    stage that fell behind catch up in a burst of short gaps, so a short window can dip
    below the long-run rate; over the longest steady window the mean period is at least
    the bound less one period of such a burst spread over the window."""
    b = period_bound(sc)
    trace = simulate(sc)
    if b.kind == "exact":
        sim = steady_period(trace, b.cyclicity)
        assert sim == pytest.approx(b.period_ms, rel=1e-9), b.chain
    else:
        assert b.kind == "lower_bound"
        sim, gaps = long_run_period(trace)
        assert sim >= b.period_ms * (1 - 1 / gaps) - 1e-9, b.chain
