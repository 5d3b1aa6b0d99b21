"""End to end: a 768-point sweep on a 2-worker Dask LocalCluster, stopped by a real SIGINT
once some tasks are done, resumed with ``--resume``, and compared with the same sweep on
the local process pool. Prints what each step kept and took, and whether the tables match.

Run: .venv/bin/python bench/sweep_resume.py [--chunks 40] [--stop-after 4] [--dir DIR]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from pipefill.sim.sweep.store import parts_dir_of

# 4 x 4 x 2 x 2 x 12 = 768 points
GRID = ["--grid", "policy.d_in=1,2,3,4", "--grid", "policy.d_out=1,2,3,4",
        "--grid", "policy.recompute_lag=0,1", "--grid", 'policy.anchor="full","anchor_only"',
        "--grid", "run.seed=0,1,2,3,4,5,6,7,8,9,10,11"]


def sweep(out: Path, chunks: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipefill.cli", "sweep", "--set", f"run.chunks={chunks}",
            *GRID, "--out", str(out), *extra]


def interrupted_run(cmd: list[str], parts: Path, stop_after: int) -> tuple[float, str]:
    """Start ``cmd``, SIGINT it once ``stop_after`` parts exist; (seconds, last stderr line)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while len(list(parts.glob("part-*.parquet"))) < stop_after and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    lines = err.strip().splitlines()
    return time.perf_counter() - t0, f"rc {proc.returncode}: {lines[-1] if lines else ''}"


def finished_run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         timeout=1800, check=False)
    lines = res.stderr.strip().splitlines()
    return time.perf_counter() - t0, f"rc {res.returncode}: {lines[-1] if lines else ''}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--stop-after", type=int, default=4, help="parts written before SIGINT")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="pipefill-sweep-"))
    dask_out, local_out = work / "dask.parquet", work / "local.parquet"
    dask = sweep(dask_out, args.chunks, "--scheduler", "local", "--workers", "2")
    secs, line = interrupted_run(dask, parts_dir_of(dask_out), args.stop_after)
    print(f"dask, interrupted: {secs:6.1f} s  {line}")
    secs, line = finished_run([*dask, "--resume"])
    print(f"dask, resumed:     {secs:6.1f} s  {line}")
    secs, line = finished_run(sweep(local_out, args.chunks, "--workers", "2"))
    print(f"local pool:        {secs:6.1f} s  {line}")
    a, b = pd.read_parquet(dask_out), pd.read_parquet(local_out)
    pd.testing.assert_frame_equal(a, b)
    print(f"tables equal: {len(a)} rows, {a['point_key'].nunique()} distinct keys, "
          f"{int(a['error'].notna().sum())} error rows ({work})")


if __name__ == "__main__":
    main()
