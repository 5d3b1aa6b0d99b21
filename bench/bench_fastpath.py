"""Engine speed: SimPy engine and fast path vs Ciw on the closed two-station tandem.

The tandem: phase_pp r1, decode 0, one denoise step, build and denoise lognormal cv 0.3
with means 10 ms, D_in = 2 slots circulating, no transport. Prints, each measured in
this run: chunks/s of the SimPy engine (full trace, in-process; and of its event loop
alone, without freezing the trace into a DataFrame); of Ciw on the same
closed tandem (2 customers circulating between two single-server stations); the fast
path's chunk-configs/s with metrics only (many seeds re-timed at once, block by block,
their metrics fed online: ``run_batch``); the ratios; and the peak resident memory of
the process.

    python bench/bench_fastpath.py [--chunks 20000] [--configs 256]
"""

from __future__ import annotations

import argparse
import resource
import time

import ciw
import numpy as np

from pipefill.sim.engine.core import SimEngine
from pipefill.sim.fast.path import compile_plan, time_batch
from pipefill.sim.fast.run import run_batch
from pipefill.sim.scenario.load import build_scenario


def tandem(chunks: int, seed: int = 0):
    ln = {"dist": "lognormal", "mean": 10.0, "cv": 0.3}
    return build_scenario({
        "run": {"chunks": chunks, "warmup": 10, "seed": seed},
        "policy": {"name": "phase_pp", "d_in": 2, "d_out": 1, "recompute": "r1"},
        "costs": {"build": ln, "denoise": {**ln, "steps": 1}, "decode": 0.0},
        "transport": {"latency_ms": 0.0, "envelope_bytes": 0, "result_bytes": 0}})


def ciw_rate(chunks: int) -> float:
    """Chunks/s of Ciw on the closed tandem: 2 customers enter at t = 0 and circulate
    station 1 -> 2 -> 1 for ever (lognormal mean 10 ms, cv 0.3 at both)."""
    sigma = float(np.sqrt(np.log1p(0.3**2)))
    mu = float(np.log(10.0) - sigma**2 / 2)
    net = ciw.create_network(
        arrival_distributions=[ciw.dists.Sequential([0.0, 1e18]), None],
        batching_distributions=[ciw.dists.Deterministic(2), None],
        service_distributions=[ciw.dists.Lognormal(mu, sigma)] * 2,
        routing=[[0.0, 1.0], [1.0, 0.0]], number_of_servers=[1, 1])
    ciw.seed(0)
    sim = ciw.Simulation(net)
    t = time.perf_counter()
    sim.simulate_until_max_time(chunks * 11.65)  # ~11.65 ms per chunk in steady state
    wall = time.perf_counter() - t
    return sum(1 for r in sim.get_all_records() if r.node == 2) / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--configs", type=int, default=256)
    a = ap.parse_args()
    sc = tandem(a.chunks)
    t = time.perf_counter()
    engine = SimEngine(sc)
    meta = engine.execute()
    loop = time.perf_counter()
    engine.rec.trace(meta)
    done = time.perf_counter()
    simpy_rate = a.chunks / (done - t)
    loop_rate, freeze_us = a.chunks / (loop - t), (done - loop) / a.chunks * 1e6
    ciw_cps = ciw_rate(a.chunks)
    plan = compile_plan(tandem(2_000))
    seeds = [tandem(2_000, seed) for seed in range(a.configs)]
    time_batch(plan, seeds[:2])  # compile (or load) the numba kernels once
    run_batch(seeds[:2])
    t = time.perf_counter()
    time_batch(plan, seeds)
    recurrence = 2_000 * a.configs / (time.perf_counter() - t)
    t = time.perf_counter()
    run_batch(seeds)
    fast_rate = 2_000 * a.configs / (time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"simpy engine : {simpy_rate:12,.0f} chunks/s (full trace, {a.chunks} chunks); the "
          f"event loop alone {loop_rate:,.0f}/s, freezing the trace {freeze_us:.1f} us/chunk")
    print(f"ciw          : {ciw_cps:12,.0f} chunks/s (closed tandem)")
    print(f"fast path    : {fast_rate:12,.0f} chunk-configs/s, metrics only ({a.configs} seeds"
          f" x 2000 chunks); durations + recurrence alone {recurrence:,.0f}")
    print(f"ratios       : simpy/ciw {simpy_rate / ciw_cps:.2f}x, fast/ciw "
          f"{fast_rate / ciw_cps:.1f}x, fast/simpy {fast_rate / simpy_rate:.0f}x")
    print(f"peak RSS     : {peak:,.0f} MB")


if __name__ == "__main__":
    main()
