"""Simulator speed and memory: prints chunks simulated per second and peak Python memory.

Run: .venv/bin/python bench/bench_sim.py [--chunks 2000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from pipefill.sim.engine import simulate
from pipefill.sim.scenario import load_scenario
from pipefill.traces.metrics import compute_metrics

CASES = {
    "default (phase_pp r0a lag1)": [],
    "phase_pp r1 D=4/4": ["policy.recompute=\"r1\"", "policy.d_in=4", "policy.d_out=4"],
    "serial": ['policy={name="serial", recompute="r0a"}'],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=2000)
    args = ap.parse_args()
    print(f"{'case':32} {'chunks':>7} {'events':>8} {'sim s':>7} {'chunks/s':>9} "
          f"{'metrics s':>9} {'peak MiB':>8}")
    for name, sets in CASES.items():
        sc = load_scenario(None, [*sets, f"run.chunks={args.chunks}"])
        tracemalloc.start()
        t0 = time.perf_counter()
        trace = simulate(sc)
        t1 = time.perf_counter()
        compute_metrics(trace)
        t2 = time.perf_counter()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"{name:32} {args.chunks:7d} {len(trace.events):8d} {t1 - t0:7.2f} "
              f"{args.chunks / (t1 - t0):9.0f} {t2 - t1:9.3f} {peak:8.1f}")


if __name__ == "__main__":
    main()
