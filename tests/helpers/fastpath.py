"""Scenarios the fast path re-times, and the check that it equals SimPy time for time."""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

from pipefill.sim.engine.core import simulate
from pipefill.sim.fast.path import fast_trace
from pipefill.sim.scenario.load import build_scenario
from pipefill.traces.metrics import compute_metrics
from tests.helpers.bound import (
    layer_pp,
    multi_session,
    phase_pp_fixed,
    rolling_window,
    serial,
    stream_batch,
    transport,
)

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)


@st.composite
def cost(draw, mean_hi: int = 30) -> dict:
    mean = float(draw(st.integers(1, mean_hi)))
    dist = draw(st.sampled_from(["constant", "normal", "lognormal", "uniform", "empirical"]))
    spec: dict = {"dist": dist}
    if dist in ("constant", "normal", "lognormal"):
        spec.update(mean=mean, cv=draw(st.sampled_from([0.0, 0.1, 0.3])))
    elif dist == "uniform":
        spec.update(low=mean / 2, high=mean * 1.5)
    else:
        spec["samples"] = [mean, mean * 0.5, mean * 2.0]
    if draw(st.integers(0, 3)) == 0:
        spec["pattern"] = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=1,
                                        max_size=3))
    if draw(st.integers(0, 4)) == 0:
        spec["drift_ms"] = draw(st.sampled_from([0.01, -0.01]))
    return spec


@st.composite
def scenarios(draw, policy) -> object:
    pol, sessions = policy(draw)
    steps = draw(st.integers(1, 3))
    denoise = {**draw(cost(40)), "steps": steps}
    if draw(st.booleans()):
        denoise.update(batch=draw(st.sampled_from(["linear", "roofline"])), batch_knee=2.0)
    costs = {"build": draw(cost()), "recompute": draw(cost()), "denoise": denoise,
             "decode": draw(cost(40)), "anchor_decode": draw(cost(10))}
    if draw(st.booleans()):
        costs["encode"] = draw(cost())
    run = {"chunks": draw(st.integers(1, 40)), "warmup": 2, "sessions": sessions,
           "seed": draw(st.integers(0, 1000))}
    cuts_ok = pol["name"] in ("serial", "phase_pp", "rolling_window") and run["chunks"] > 1
    if cuts_ok and draw(st.integers(0, 3)) == 0:
        pol["hard_cuts"] = draw(st.lists(st.integers(1, run["chunks"] - 1), max_size=2,
                                         unique=True))
    if pol["name"] != "phase_pp" and draw(st.integers(0, 3)) == 0:
        run.update(source="realtime", fps_in=float(draw(st.sampled_from([200, 1000]))))
    sc = build_scenario({"run": run, "policy": pol, "costs": costs,
                         "transport": transport(draw)})
    return sc


def rows(trace, kind: str) -> np.ndarray:
    # the wait lane is the SimPy engine's annotation: the fast path records none
    ev = trace.events[(trace.events["kind"] == kind) & (trace.events["lane"] != "wait")]
    ev = ev[ev["name"] != "hard_cut"] if kind == "mark" else ev
    cols = ["name", "stage", "session", "chunk", "step", "start_ms", "end_ms"]
    return ev[cols].sort_values([*cols[:5], "start_ms"], kind="stable").to_numpy()


def same_times(sc) -> None:
    ref, fast = simulate(sc), fast_trace(sc)
    for kind in ("span", "mark"):
        a, b = rows(ref, kind), rows(fast, kind)
        assert a.shape == b.shape, kind
        assert (a[:, :5] == b[:, :5]).all(), kind
        np.testing.assert_allclose(a[:, 5:].astype(float), b[:, 5:].astype(float),
                                   rtol=0, atol=1e-9)
    peaks = [compute_metrics(t) for t in (ref, fast)]
    for key in ("q_in_max", "q_out_max", "peak_bytes_in_flight"):
        assert peaks[0][key] == peaks[1][key], key


FIXED = [serial, stream_batch, layer_pp, multi_session, rolling_window, phase_pp_fixed]
