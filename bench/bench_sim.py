"""Simulator speed and memory: prints chunks simulated per second and peak Python memory.

Run: .venv/bin/python bench/bench_sim.py [--chunks 2000] [--repeat 3]

``chunks/s`` is the best of ``--repeat`` timed runs in CPU seconds of this process (no
tracing; the machine is shared: CPU time and the best run are the least disturbed);
``peak MiB`` comes from one more run under tracemalloc. ``tandem`` is the two-station
queueing model: phase_pp without recompute and without decode work, lognormal build
and denoise of mean 10 ms, cv 0.3, a free link and D_in = 2 (the engine's overhead with
the least policy logic).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.load import load_scenario
from pipefill.traces.metrics import compute_metrics

TANDEM = ['policy={name="phase_pp", recompute="r1", d_in=2, d_out=2}',
          'costs.build={dist="lognormal", mean=10.0, cv=0.3}',
          'costs.denoise={dist="lognormal", mean=10.0, cv=0.3, steps=1}',
          "costs.decode=0", "transport.latency_ms=0", "transport.envelope_bytes=0",
          "transport.result_bytes=0", "transport.context_bytes=0"]
CASES = {
    "default (phase_pp r0a lag1)": [],
    "tandem (phase_pp r1, D_in 2)": TANDEM,
    "phase_pp r1 D=4/4": ["policy.recompute=\"r1\"", "policy.d_in=4", "policy.d_out=4"],
    "serial": ['policy={name="serial", recompute="r0a"}'],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{'case':32} {'chunks':>7} {'events':>8} {'sim s':>7} {'chunks/s':>9} "
          f"{'metrics s':>9} {'peak MiB':>8}")
    for name, sets in CASES.items():
        sc = load_scenario(None, [*sets, f"run.chunks={args.chunks}"])
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.process_time()
            trace = simulate(sc)
            best = min(best, time.process_time() - t0)
        t1 = time.perf_counter()
        compute_metrics(trace)
        metrics_s = time.perf_counter() - t1
        tracemalloc.start()
        simulate(sc)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"{name:32} {args.chunks:7d} {len(trace.events):8d} {best:7.2f} "
              f"{args.chunks / best:9.0f} {metrics_s:9.3f} {peak:8.1f}")


if __name__ == "__main__":
    main()
