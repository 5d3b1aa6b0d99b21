"""Peak memory against run length: streamed runs stay flat, a held trace grows.

Each configuration runs in a fresh process (peak resident set from getrusage, so one
run's peak does not hide the next's) on the default scenario:

- ``stream``: ``pipefill simulate`` as the CLI runs it (metrics online, no trace kept);
- ``stream+out``: the same with the trace streamed to a Parquet file in row groups;
- ``held``: the trace held in memory, then summarised (what every run did before).

Run: .venv/bin/python bench/bench_memory.py [--chunks 100000 1000000] [--held-max 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pipefill.sim.scenario.load import load_scenario
mode, chunks, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sc = load_scenario(None, [f"run.chunks={chunks}"])
t0 = time.perf_counter()
if mode == "held":
    from pipefill.sim.engine.core import simulate
    from pipefill.traces.metrics import compute_metrics
    period = compute_metrics(simulate(sc))["period_ms"]
else:
    from pipefill.sim.engine.stream import simulate_summary
    period = simulate_summary(sc, out if mode == "stream+out" else None).metrics["period_ms"]
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall": wall, "peak_mib": peak / 1024, "import_mib": base / 1024,
                  "period_ms": period}))
"""


def run(mode: str, chunks: int, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(chunks), str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--held-max", type=int, default=100_000,
                    help="largest run to also try with the trace held in memory")
    args = ap.parse_args()
    print(f"{'mode':11} {'chunks':>9} {'wall s':>8} {'chunks/s':>9} {'peak MiB':>9} "
          f"{'file MiB':>9} {'period ms':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "trace.parquet"
        for chunks in args.chunks:
            for mode in ("stream", "stream+out", "held"):
                if mode == "held" and chunks > args.held_max:
                    continue
                t0 = time.perf_counter()
                r = run(mode, chunks, out)
                size = out.stat().st_size / 2**20 if mode == "stream+out" else float("nan")
                print(f"{mode:11} {chunks:9d} {r['wall']:8.1f} {chunks / r['wall']:9.0f} "
                      f"{r['peak_mib']:9.0f} {size:9.1f} {r['period_ms']:10.3f}"
                      f"   (process {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
