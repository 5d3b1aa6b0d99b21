"""Analytic bound speed and agreement: per policy, the time `bound` takes (solve alone and
with sensitivities), the simulated steady state it replaces, and the two periods.

Targets (printed, not asserted): a solve under 50 ms, the full `bound` under 1 s, and
for deterministic costs the simulated mean period equal to the bound.
Run: .venv/bin/python bench/bench_bound.py [--chunks 400]
"""

from __future__ import annotations

import argparse
import math
import time

from pipefill.sim.bound.analysis import compute_bound, period_bound
from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.load import load_scenario

DETERMINISTIC = [f"costs.{p}.cv=0" for p in
                 ("build", "denoise", "recompute", "decode", "anchor_decode", "encode")]
CASES = {
    "phase_pp (default)": [],
    "serial": ['policy={name="serial", recompute="r0a"}'],
    "stream_batch W=4 n=4": ['policy={name="stream_batch", stages=4, steps=4, balance=true}',
                             "costs.denoise.batch_fixed_ms=20"],
    "layer_pp P=4 M=8": ['policy={name="layer_pp", stages=4, items=8}'],
    "multi_session S=4 B=2": ['policy={name="multi_session", max_batch=2}', "run.sessions=4",
                              "costs.denoise.batch_fixed_ms=20"],
    "rolling_window W=2": ['policy={name="rolling_window", window=2, d_out=2}',
                           "costs.denoise.batch_fixed_ms=20"],
}


def steady_mean(trace, cyclicity: int, drain: int = 30) -> float:
    t = trace.marks("emit")
    t = t[t["session"] == 0].sort_values("start_ms", kind="stable")["start_ms"].to_numpy()
    m = cyclicity * math.ceil(40 / cyclicity)
    end = len(t) - 1 - drain
    return float((t[end] - t[end - m]) / m)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=400)
    args = ap.parse_args()
    print(f"{'case':24} {'solve ms':>9} {'bound ms':>9} {'sim s':>7} {'bound period':>13} "
          f"{'sim period':>11} {'rel diff':>9}")
    for name, sets in CASES.items():
        sc = load_scenario(None, [*DETERMINISTIC, *sets, f"run.chunks={args.chunks}"])
        t0 = time.perf_counter()
        pb = period_bound(sc)
        t1 = time.perf_counter()
        compute_bound(sc)
        t2 = time.perf_counter()
        trace = simulate(sc)
        t3 = time.perf_counter()
        sim = steady_mean(trace, pb.cyclicity)
        rel = (sim - pb.period_ms) / pb.period_ms
        print(f"{name:24} {1e3 * (t1 - t0):9.1f} {1e3 * (t2 - t1):9.1f} {t3 - t2:7.2f} "
              f"{pb.period_ms:13.3f} {sim:11.3f} {rel:9.1e}")


if __name__ == "__main__":
    main()
