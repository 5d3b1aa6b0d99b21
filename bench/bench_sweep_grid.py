"""The 768-point sweep of the default scenario through the CLI: wall time and peak memory.

d_in 1-4 x d_out 1-4 x recompute_lag 0-2 x denoise mean in 16 steps (40..100 ms), each
point ``--chunks`` chunks, ``--workers`` processes, ``--engine`` auto by default (fast
path for the fixed-order points, SimPy for the greedy ones). Prints the wall time, how
many points each engine ran and the peak resident memory of the sweep's processes.

    python bench/bench_sweep_grid.py [--chunks 2000] [--workers 2] [--engine auto]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--lags", default="0,1,2", help="recompute_lag values (0 alone: every "
                    "point is fixed-order, so the fast path runs them all)")
    a = ap.parse_args()
    means = ",".join(f"{40 + 4 * i}" for i in range(16))
    cmd = [sys.executable, "-m", "pipefill.cli", "sweep", "--json",
           "--grid", "policy.d_in=1,2,3,4", "--grid", "policy.d_out=1,2,3,4",
           "--grid", f"policy.recompute_lag={a.lags}", "--grid", f"costs.denoise.mean={means}",
           "--set", f"run.chunks={a.chunks}", "--workers", str(a.workers),
           "--engine", a.engine]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
    wall = time.perf_counter() - t
    rows = json.loads(res.stdout)
    engines = {e: sum(1 for r in rows if r["engine"] == e) for e in ("fast", "simpy")}
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"sweep: {len(rows)} points x {a.chunks} chunks, {a.workers} workers, "
          f"engine {a.engine}: {wall:.1f} s wall; points per engine {engines}")
    print(f"peak RSS of one sweep process: {peak:,.0f} MB")


if __name__ == "__main__":
    main()
