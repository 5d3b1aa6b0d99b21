"""Answers with error bars: precision-driven sweeps, coverage, flat memory, grid set-up.

Prints, in one run (each part can be run alone with ``--parts``):

- ``sweep``: the 768-point grid of ``bench_sweep_grid.py`` (d_in 1-4 x d_out 1-4 x lag 0-2
  x 16 denoise means) through the CLI at ``--precision 0.005`` (cap ``--cap`` chunks):
  wall time, chunks per point (median, max), how many converged, points per engine;
  beside it the same grid at a fixed 2,000 chunks;
- ``coverage``: the share of 95% intervals at ``--precision 0.01`` that cover the exact
  period of a two-station line with exponential stations (the Markov chain of
  ``tests/helpers/tandem.py``), over ``--seeds`` runs per buffer size 1, 2, 3;
- ``memory``: peak resident memory of ``pipefill simulate`` (default scenario, each in a
  fresh process) at 10^5, 10^6, 10^7 chunks on the fast path and 10^5, 10^6 on SimPy,
  and the slope in MB per million chunks;
- ``setup``: planning a 50,000-point grid (validation, keys, engine per point): seconds
  and microseconds per point.

Run: .venv/bin/python bench/bench_precision.py [--parts sweep coverage memory setup]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEANS = ",".join(f"{40 + 4 * i}" for i in range(16))
GRID = ["--grid", "policy.d_in=1,2,3,4", "--grid", "policy.d_out=1,2,3,4",
        "--grid", "policy.recompute_lag=0,1,2", "--grid", f"costs.denoise.mean={MEANS}"]


def _sweep(extra: list[str], workers: int) -> tuple[float, list[dict]]:
    cmd = [sys.executable, "-m", "pipefill.cli", "sweep", "--json", *GRID,
           "--workers", str(workers), *extra]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
    return time.perf_counter() - t, json.loads(res.stdout)


def sweep(args: argparse.Namespace) -> None:
    wall, rows = _sweep(["--set", f"run.chunks={args.cap}", "--precision", "0.005"],
                        args.workers)
    chunks = [r["chunks_run"] for r in rows]
    engines = {e: sum(r["engine"] == e for r in rows) for e in ("fast", "simpy")}
    conv = sum(bool(r["converged"]) for r in rows)
    print(f"sweep --precision 0.005 (cap {args.cap:,} chunks), {len(rows)} points, "
          f"{args.workers} workers: {wall:.1f} s wall; chunks per point median "
          f"{statistics.median(chunks):,.0f}, max {max(chunks):,}; {conv} of {len(rows)} "
          f"converged; points per engine {engines}")
    wall, rows = _sweep(["--set", "run.chunks=2000"], args.workers)
    print(f"sweep at a fixed 2,000 chunks, {len(rows)} points: {wall:.1f} s wall")


def coverage(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from pipefill.sim.fast.run import run_batch
    from pipefill.sim.precision import Precision
    from tests.helpers.tandem import exact_period, tandem_scenario

    t = time.perf_counter()
    hits = runs = 0
    for n in (1, 2, 3):
        truth = exact_period(10.0, 8.0, n)
        res = run_batch([tandem_scenario(n, 1000 * n + s, 1_000_000) for s in range(args.seeds)],
                        Precision(0.01))
        cover = sum(abs(r["period_ms"] - truth) <= r["period_ci_ms"] for r in res)
        chunks = [r["chunks_run"] for r in res]
        print(f"  buffer {n}: exact period {truth:.4f} ms, {cover}/{len(res)} intervals cover "
              f"it; chunks median {statistics.median(chunks):,.0f}")
        hits, runs = hits + cover, runs + len(res)
    print(f"coverage at --precision 0.01: {hits}/{runs} = {hits / runs:.1%} "
          f"({time.perf_counter() - t:.0f} s)")


CHILD = r"""
import json, resource, sys, time
from pipefill.sim.engine.choice import run
from pipefill.sim.scenario.load import load_scenario
engine, chunks = sys.argv[1], int(sys.argv[2])
sc = load_scenario(None, [f"run.chunks={chunks}"])
t = time.perf_counter()
m = run(sc, engine)
print(json.dumps({"wall": time.perf_counter() - t, "period": m["period_ms"],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def memory(args: argparse.Namespace) -> None:
    print(f"{'engine':7} {'chunks':>12} {'wall s':>8} {'chunks/s':>10} {'peak MB':>8}")
    for engine, sizes in (("fast", (10**5, 10**6, 10**7)), ("simpy", (10**5, 10**6))):
        peaks = []
        for chunks in sizes:
            res = subprocess.run([sys.executable, "-c", CHILD, engine, str(chunks)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            peaks.append((chunks, r["peak_mb"]))
            print(f"{engine:7} {chunks:>12,} {r['wall']:>8.1f} {chunks / r['wall']:>10,.0f} "
                  f"{r['peak_mb']:>8.1f}")
        (c0, p0), (c1, p1) = peaks[0], peaks[-1]
        print(f"  {engine}: {(p1 - p0) / ((c1 - c0) / 1e6):+.2f} MB per million chunks "
              f"({c0:,} -> {c1:,})")


def setup(args: argparse.Namespace) -> None:
    from pipefill.sim.scenario.load import load_raw
    from pipefill.sim.sweep.points import Axis, plan_points

    raw, name = load_raw(None)
    means = tuple(40 + 0.05 * i for i in range(1042))
    for label, axes in (
            ("d_in x d_out x lag x 1,042 denoise means",
             [Axis("policy.d_in", (1, 2, 3, 4)), Axis("policy.d_out", (1, 2, 3, 4)),
              Axis("policy.recompute_lag", (0, 1, 2)), Axis("costs.denoise.mean", means)]),
            ("d_in x 12,500 seeds",
             [Axis("policy.d_in", (1, 2, 3, 4)), Axis("run.seed", tuple(range(12_500)))])):
        t = time.perf_counter()
        points = plan_points(raw, ["run.chunks=2000"], axes, name)
        dt = time.perf_counter() - t
        print(f"grid set-up, {label}: {len(points):,} points in {dt:.2f} s, "
              f"{dt / len(points) * 1e6:.1f} us a point")


PARTS = {"sweep": sweep, "coverage": coverage, "memory": memory, "setup": setup}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cap", type=int, default=20_000, help="run.chunks of the precise sweep")
    ap.add_argument("--seeds", type=int, default=100, help="coverage runs per buffer size")
    args = ap.parse_args()
    for part in args.parts:
        PARTS[part](args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(peak RSS of this process: {peak:.0f} MB)")


if __name__ == "__main__":
    main()
