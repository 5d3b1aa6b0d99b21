"""Sweep executors: per-point overhead of the process pool and of a Dask LocalCluster, and
throughput with 1 and 2 workers.

Each task is timed inside its worker, so the overhead is measured in the same run as the
work (robust to other load on the machine): overhead per point = (sweep wall x workers -
sum of the tasks' own wall time) / points, i.e. worker time not spent evaluating points
(pickling, scheduling, result transfer, idle tails). Start-up (pool or cluster, workers
importing pipefill) is printed apart. ``--per-task 1`` shows the cost of one task per
point; the default groups points as ``pipefill sweep`` does.

Run: .venv/bin/python bench/bench_sweep.py [--seeds 12] [--chunks 40] [--per-task N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

from pipefill.sim.scenario.load import load_raw
from pipefill.sim.sweep.executors import (
    ExecSpec,
    SerialExecutor,
    SweepExecutor,
    chunked,
    make_executor,
    task_size,
)
from pipefill.sim.sweep.grid import Axis, SweepPoint, plan_points, run_task

#: (label, scheduler, workers)
CASES = [("this process", None, 1), ("pool", None, 2), ("dask local", "local", 1),
         ("dask local", "local", 2)]


def grid(seeds: int, chunks: int) -> list[SweepPoint]:
    raw, name = load_raw(None)
    axes = [Axis("policy.d_in", (1, 2, 3, 4)), Axis("policy.d_out", (1, 2, 3, 4)),
            Axis("run.seed", tuple(range(seeds)))]
    return plan_points(raw, [f"run.chunks={chunks}"], axes, name)


def timed_task(points: Sequence[SweepPoint]) -> tuple[list[dict[str, Any]], float]:
    """The sweep's task, and its own wall time in the worker."""
    t0 = time.perf_counter()
    rows = run_task(points)
    return rows, time.perf_counter() - t0


def run_case(points: list[SweepPoint], spec: ExecSpec,
             per_task: int | None) -> tuple[float, float, float]:
    """(start-up s, sweep wall s, summed task wall s) on a fresh executor."""
    t0 = time.perf_counter()
    executor: SweepExecutor = make_executor(spec) if spec.scheduler else (
        make_executor(spec) if spec.workers > 1 else SerialExecutor())
    try:
        if spec.workers > 1 or spec.scheduler:  # warm-up: workers start, import pipefill
            list(executor.run(timed_task, [[p] for p in points[:spec.workers]]))
        t1 = time.perf_counter()
        tasks = chunked(points, task_size(len(points), spec.workers, per_task))
        busy = 0.0
        for _, (rows, secs) in executor.run(timed_task, tasks):
            assert all("error" not in r for r in rows)
            busy += secs
        t2 = time.perf_counter()
    finally:
        executor.close()
    return t1 - t0, t2 - t1, busy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=12, help="points = 16 x seeds")
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--per-task", type=int, default=None)
    args = ap.parse_args()
    points = grid(args.seeds, args.chunks)
    n = len(points)
    print(f"{n} points, run.chunks={args.chunks}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} before")
    print(f"{'executor':12} {'workers':>7} {'pts/task':>8} {'start s':>7} {'sweep s':>7} "
          f"{'points/s':>8} {'ms/pt in task':>13} {'overhead ms/pt':>14}")
    for label, scheduler, workers in CASES:
        spec = ExecSpec(scheduler=scheduler, workers=workers)
        start, wall, busy = run_case(points, spec, args.per_task)
        print(f"{label:12} {workers:7d} {task_size(n, workers, args.per_task):8d} "
              f"{start:7.2f} {wall:7.2f} {n / wall:8.1f} {1e3 * busy / n:13.1f} "
              f"{1e3 * (wall * workers - busy) / n:14.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
