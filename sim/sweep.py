"""What-if sweeps: run a cartesian grid of overrides and tabulate the metrics per point."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipefill.sim.errors import ScenarioError, StallError
from pipefill.sim.scenario import apply_overrides, build_scenario, parse_value
from pipefill.sim.stream import simulate_summary
from pipefill.traces.metrics import SUMMARY_KEYS
from pipefill.traces.toml_writer import toml_value


@dataclass(frozen=True)
class Axis:
    """One grid axis: a dotted field and the values it takes."""

    field: str
    values: tuple[Any, ...]


def split_values(text: str) -> list[str]:
    """Split ``1,2,[3,4],"a,b"`` on top-level commas."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def parse_axis(spec: str) -> Axis:
    key, sep, values = spec.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ScenarioError("--grid", f"{spec!r} is not of the form table.field=v1,v2,...")
    return Axis(key.strip(), tuple(parse_value(v) for v in split_values(values)))


def check_axes(axes: list[Axis]) -> None:
    """Refuse an axis given twice (the last would silently win in every point)."""
    seen: set[str] = set()
    for axis in axes:
        if axis.field in seen:
            raise ScenarioError("--grid", f"{axis.field} is given twice: put all its values "
                                f"in one --grid ({axis.field}=v1,v2,...)")
        seen.add(axis.field)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: ``table`` holds the points that finished (grid order)."""

    def __init__(self, table: pd.DataFrame, total: int) -> None:
        super().__init__(f"{len(table)} of {total} points finished")
        self.table = table
        self.total = total


def grid_points(axes: list[Axis]) -> list[dict[str, Any]]:
    return [dict(zip([a.field for a in axes], combo, strict=True))
            for combo in itertools.product(*(a.values for a in axes))]


def flatten(metrics: dict[str, Any]) -> dict[str, Any]:
    """One flat row of a summary: scalar metrics plus ``bubble_<stage>`` and queue means."""
    row: dict[str, Any] = {k: metrics.get(k) for k in SUMMARY_KEYS}
    for stage, value in sorted(metrics.get("bubble", {}).items()):
        row[f"bubble_{stage}"] = value
    for q, stats in sorted(metrics.get("queues", {}).items()):
        row[f"{q}_mean"] = stats.get("mean")
    row["chunks"] = metrics.get("chunks")
    row["warmup"] = metrics.get("warmup")
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
    front, best_period = [], float("inf")
    for rec in records:
        if rec["period_ms"] < best_period:
            front.append(rec)
            best_period = rec["period_ms"]
    return BestPick(records[0] if records else None, front, len(records),
                    " and ".join(parts) or "no constraint")


def _run_point(args: tuple[dict[str, Any], str]) -> dict[str, Any]:
    raw, name = args
    sc = build_scenario(raw, name=name)
    try:
        return flatten(simulate_summary(sc).metrics)
    except StallError as exc:
        return {"error": str(exc)}


def run_sweep(raw: dict[str, Any], base_sets: list[str], axes: list[Axis], name: str = "sweep",
              workers: int = 1,
              progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Validate every grid point first (bad input fails before any work), then run them.

    A point whose schedule stalls is kept as a row with its ``error``; the table has
    one row per point in grid order, axis columns first.
    """
    check_axes(axes)
    points = grid_points(axes)
    jobs = []
    for point in points:
        sets = [*base_sets, *(f"{k}={toml_value(v)}" for k, v in point.items())]
        point_raw = apply_overrides(raw, sets)
        build_scenario(point_raw, name=name)
        jobs.append((point_raw, name))
    rows: list[dict[str, Any]] = []
    try:
        for row in _rows(jobs, workers):
            rows.append(row)
            if progress:
                progress(len(rows), len(jobs))
    except KeyboardInterrupt:
        raise SweepInterrupted(_table(points[:len(rows)], rows), len(jobs)) from None
    return _table(points, rows)


def _rows(jobs: list[tuple[dict[str, Any], str]], workers: int) -> Iterator[dict[str, Any]]:
    """Run the points in order, in a process pool when ``workers > 1``."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _run_point(job)
        return
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        yield from pool.map(_run_point, jobs)
    finally:
        # on Ctrl-C do not wait for queued points
        pool.shutdown(wait=False, cancel_futures=True)


def _table(points: list[dict[str, Any]], rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame([{**{k: _cell(v) for k, v in p.items()}, **r}
                          for p, r in zip(points, rows, strict=True)])
    if "error" not in table.columns:
        table["error"] = None
    return table


def sweep_meta(raw: dict[str, Any], name: str, sets: list[str],
               axes: list[Axis]) -> dict[str, Any]:
    """The metadata a sweep table is written with: ``kind = "sweep"`` (how reports tell a
    table from a trace) plus the scenario, overrides and grid that re-create it."""
    return {"kind": "sweep", "scenario_name": name, "scenario": raw, "sets": list(sets),
            "grid": {a.field: list(a.values) for a in axes}}


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) else str(value)
