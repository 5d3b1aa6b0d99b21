"""What-if sweeps: run a cartesian grid of overrides and tabulate the metrics per point.

Points are grouped into tasks (:func:`run_task`, many points each); an executor from
:mod:`pipefill.sim.sweep.executors` runs them here, on a process pool or on Dask, and a
:class:`~pipefill.sim.sweep.store.ResultStore` keeps each finished task (streamed to disk
with ``--out``), so an interrupted sweep resumes with only the missing points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipefill.sim.engine.choice import metrics_batch
from pipefill.sim.errors import StallError
from pipefill.sim.precision import Precision
from pipefill.sim.sweep.executors import ExecSpec, SweepExecutor, make_executor
from pipefill.sim.sweep.points import (
    FAST_TASK_MAX,
    Axis,
    SweepPoint,
    check_axes,
    grid_points,
    parse_axis,
    plan_points,
    plan_tasks,
    point_cost,
    split_values,
)
from pipefill.sim.sweep.store import KEY, ResultStore, engine_version
from pipefill.traces.metrics import SUMMARY_KEYS
from pipefill.traces.pareto import pareto_mask

__all__ = ["FAST_TASK_MAX", "Axis", "SweepPoint", "check_axes", "execute_sweep", "grid_points",
           "parse_axis", "plan_points", "plan_tasks", "run_sweep", "split_values"]
#: the precision fields every row carries (see ``steady_fields``)
STEADY_KEYS = ("period_ci_ms", "chunks_run", "warmup_used", "converged")


def flatten(metrics: dict[str, Any]) -> dict[str, Any]:
    """One flat row of a summary: scalar metrics plus ``bubble_<stage>`` and queue means."""
    row: dict[str, Any] = {k: metrics.get(k) for k in SUMMARY_KEYS}
    for stage, value in sorted(metrics.get("bubble", {}).items()):
        row[f"bubble_{stage}"] = value
    for q, stats in sorted(metrics.get("queues", {}).items()):
        row[f"{q}_mean"] = stats.get("mean")
        row.setdefault(f"{q}_max", stats.get("max"))  # q_in_max/q_out_max: the summary's
    row["chunks"] = metrics.get("chunks")
    row["warmup"] = metrics.get("warmup")
    for key in STEADY_KEYS:
        row[key] = metrics.get(key)
    row["bursty"] = metrics.get("bursty")
    row["aggregate_fps"] = metrics.get("aggregate_fps")
    # memory in flight per stage: the memory side of the memory-period trade-off
    for stage, peak in sorted(metrics.get("memory", {}).get("stages", {}).items()):
        row[f"peak_bytes_{stage}"] = peak
    return row


@dataclass(frozen=True)
class BestPick:
    """``sweep --best``: the feasible point with the least memory in flight, and the
    Pareto front of period vs memory among feasible points (both minimised)."""

    best: dict[str, Any] | None
    pareto: list[dict[str, Any]]
    feasible: int
    criteria: str


def best_point(table: pd.DataFrame, max_latency_ms: float | None = None,
               min_fps: float | None = None) -> BestPick:
    """Rows meeting ``latency_p95_ms <= max_latency_ms`` and ``fps >= min_fps`` (a point
    missing a constrained metric does not meet it); least ``peak_bytes_in_flight`` wins,
    ties go to the shorter period."""
    parts: list[str] = []
    needed = ("error", "period_ms", "peak_bytes_in_flight", "latency_p95_ms", "fps")
    if any(c not in table.columns for c in needed):  # every point stalled
        return BestPick(None, [], 0, "no point ran")
    ok = table["error"].isna() & table["period_ms"].notna() & \
        table["peak_bytes_in_flight"].notna()
    if max_latency_ms is not None:
        ok &= table["latency_p95_ms"].notna() & (table["latency_p95_ms"] <= max_latency_ms)
        parts.append(f"latency p95 <= {max_latency_ms:g} ms")
    if min_fps is not None:
        ok &= table["fps"].notna() & (table["fps"] >= min_fps)
        parts.append(f"fps >= {min_fps:g}")
    feasible = table[ok].sort_values(["peak_bytes_in_flight", "period_ms"], kind="stable")
    records = feasible.to_dict(orient="records")
    on_front = pareto_mask(feasible["peak_bytes_in_flight"], feasible["period_ms"])
    front = [rec for rec, keep in zip(records, on_front, strict=True) if keep]
    return BestPick(records[0] if records else None, front, len(records),
                    " and ".join(parts) or "no constraint")


def evaluate_points(points: Sequence[SweepPoint]) -> list[dict[str, Any]]:
    """Rows for a batch of points, in order, each with the ``engine`` that ran it: the
    fast path re-times the fixed-order points of one structure together
    (:func:`pipefill.sim.engine.choice.metrics_batch`), SimPy runs the rest; a point that raises
    (a stall, ...) is a row with its ``error``."""
    if not points:
        return []
    rel = points[0].precision
    try:
        scs = [p.scenario() for p in points]
        results = metrics_batch(scs, points[0].engine,
                                Precision(rel) if rel is not None else None)
    except Exception:  # one point failed the batch: run them one by one to say which
        return [_evaluate_one(p) for p in points] if len(points) > 1 \
            else [_error_row(points[0])]
    return [{"error": m["error"], "engine": m["engine"]} if "error" in m
            else {**flatten(m), "engine": m["engine"]} for m in results]


def _evaluate_one(point: SweepPoint) -> dict[str, Any]:
    return evaluate_points([point])[0]


def _error_row(point: SweepPoint) -> dict[str, Any]:
    try:
        rel = point.precision
        metrics_batch([point.scenario()], point.engine,
                      Precision(rel) if rel is not None else None)
    except StallError as exc:
        return {"error": str(exc)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"error": "failed in its batch, not alone"}


def run_task(points: Sequence[SweepPoint]) -> list[dict[str, Any]]:
    """A task: evaluate a batch of points; each row also carries its key and axis cells
    (so a streamed part is readable on its own)."""
    rows = evaluate_points(points)
    return [{KEY: p.key, **p.axes, **r} for p, r in zip(points, rows, strict=True)]


@dataclass(frozen=True)
class SweepOutcome:
    """A finished sweep: its ``table`` (one row per point, grid order), how many points
    ``ran`` now and how many were ``reused`` (resumed), and where they ran."""

    table: pd.DataFrame
    ran: int
    reused: int
    where: str


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: ``table`` holds the points that finished (grid order) out of
    ``total``; with a disk store they are also in ``parts`` (for ``--resume``)."""

    def __init__(self, table: pd.DataFrame, total: int, parts: str | None = None) -> None:
        super().__init__(f"{len(table)} of {total} points finished")
        self.table, self.total, self.parts = table, total, parts
        self.kept_in: Path | None = None  # the table file the finished points went to


def execute_sweep(points: list[SweepPoint], axes: list[str], executor: SweepExecutor,
                  store: ResultStore | None = None, per_task: int | None = None,
                  workers: int = 1,
                  progress: Callable[[int, int], None] | None = None,
                  cost_progress: Callable[[float, float], None] | None = None
                  ) -> SweepOutcome:
    """Run the points the store does not hold yet, streaming each finished task into it.

    Points sharing a key run once. A task that failed as a whole (e.g. Dask gave up after
    it killed workers) gives each of its points an error row. ``progress`` hears points
    done of all; ``cost_progress`` the estimated work done of all (:func:`point_cost`),
    from which a remaining time is a real estimate.
    """
    store = store if store is not None else ResultStore()
    wanted = {p.key for p in points}
    reused = len(wanted & store.rows.keys())
    todo = list({p.key: p for p in points if p.key not in store.rows}.values())
    tasks = plan_tasks(todo, workers, per_task)
    total, done = len(wanted), reused
    costs = [sum(point_cost(p) for p in t) for t in tasks]
    work, worked = sum(costs), 0.0
    try:
        if progress:
            progress(done, total)
        for i, result in executor.run(run_task, tasks):
            rows = result if isinstance(result, list) else _failed(tasks[i], result)
            store.add(rows, axes)
            done += len(rows)
            worked += costs[i]
            if progress:
                progress(done, total)
            if cost_progress:
                cost_progress(worked, work)
    except KeyboardInterrupt:
        store.sync()
        finished = _table([p for p in points if p.key in store.rows], store)
        raise SweepInterrupted(finished, len(points),
                               str(store.parts) if store.parts else None) from None
    return SweepOutcome(_table(points, store), len(todo), reused, executor.describe())


def _table(points: list[SweepPoint], store: ResultStore) -> pd.DataFrame:
    """One row per point (grid order): axis cells, results, ``point_key``, ``error``."""
    table = pd.DataFrame([{**p.axes, **store.rows[p.key], KEY: p.key} for p in points])
    for axis in points[0].axes if points else ():
        cells = [p.axes[axis] for p in points]
        if any(c is None for c in cells):  # ints stay ints beside an empty (n/a) cell
            table[axis] = pd.Series(cells, index=table.index, dtype=object)
    errors = table["error"] if "error" in table.columns else pd.Series(None, index=table.index)
    table["error"] = errors.astype(object).where(errors.notna(), None)  # None, never NaN
    return table


def _failed(task: list[SweepPoint], exc: BaseException) -> list[dict[str, Any]]:
    return [{KEY: p.key, **p.axes, "error": f"{type(exc).__name__}: {exc}"} for p in task]


def run_sweep(raw: dict[str, Any], base_sets: list[str], axes: list[Axis], name: str = "sweep",
              workers: int = 1,
              progress: Callable[[int, int], None] | None = None,
              engine: str = "auto", precision: float | None = None) -> pd.DataFrame:
    """The whole sweep in memory on this machine (``workers`` processes): the table.

    A point whose schedule stalls is kept as a row with its ``error``; the table has
    one row per point in grid order, axis columns first, then metrics, ``error`` and
    ``point_key``.
    """
    points = plan_points(raw, base_sets, axes, name, engine, precision)
    executor = make_executor(ExecSpec(workers=workers))
    try:
        return execute_sweep(points, [a.field for a in axes], executor, workers=workers,
                             progress=progress).table
    finally:
        executor.close()


def sweep_meta(raw: dict[str, Any], name: str, sets: list[str],
               axes: list[Axis]) -> dict[str, Any]:
    """The metadata a sweep table is written with: ``kind = "sweep"`` (how reports tell a
    table from a trace) plus the scenario, overrides and grid that re-create it, and the
    engine version its ``point_key`` column was made with."""
    return {"kind": "sweep", "scenario_name": name, "scenario": raw, "sets": list(sets),
            "grid": {a.field: list(a.values) for a in axes}, "engine_version": engine_version()}


