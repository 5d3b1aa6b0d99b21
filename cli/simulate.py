"""Commands that run the model: simulate, sweep, bound."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipefill.cli.app import (
    JsonOpt,
    ScenarioArg,
    SetOpt,
    app,
    fail,
    handled,
    out_console,
    progress_bar,
)
from pipefill.cli.render import (
    describe,
    print_best,
    print_bound,
    print_json,
    print_replicas,
    print_summary,
    print_sweep,
)
from pipefill.sim.bound import compute_bound
from pipefill.sim.replicas import ReplicaSummary, run_replicas
from pipefill.sim.scenario import load_raw, load_scenario
from pipefill.sim.stream import simulate_summary
from pipefill.sim.sweep import best_point, parse_axis, run_sweep, sweep_meta
from pipefill.traces.io import write_table


@app.command("simulate")
def simulate_cmd(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the trace (.parquet or .csv).")] = None,
    replicas: Annotated[int, typer.Option(
        min=1, help="Also run seeds seed..seed+R-1; report means and 95% intervals.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Processes for --replicas.")] = 1,
    json_: JsonOpt = False,
) -> None:
    """Predict period, FPS, OverlapScore, bubbles and TTFF of one scenario."""
    reps: ReplicaSummary | None = None
    with handled():
        sc = load_scenario(scenario, set_)
        # the trace streams to --out as it is recorded; metrics are computed online
        metrics = simulate_summary(sc, out).metrics
        if replicas > 1:
            with progress_bar("replicas", enabled=not json_ and sys.stderr.isatty()) as update:
                reps = run_replicas(sc.raw, sc.name, replicas, workers, update)
    if json_:
        extra = {"replicas": reps.to_json()} if reps is not None else {}
        print_json({"scenario": sc.name, "policy": sc.policy.params(), **metrics, **extra})
        return
    print_summary(describe(sc), metrics)
    if reps is not None:
        print_replicas(reps)
    if out is not None:
        out_console.print(f"trace: {out}")


@app.command("sweep")
def sweep_cmd(
    scenario: ScenarioArg = None,
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", help="An axis: --grid policy.d_in=1,2,3,4 (repeatable; cartesian).")] = None,
    set_: SetOpt = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes to run points on.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write the table (.parquet or .csv).")] = None,
    best: Annotated[bool, typer.Option(
        "--best", help="Pick the point meeting the limits with the least memory in flight, "
        "and show the period-memory Pareto front.")] = False,
    max_latency_ms: Annotated[float | None, typer.Option(
        min=0, help="--best: largest allowed latency p95 (ms).")] = None,
    min_fps: Annotated[float | None, typer.Option(min=0, help="--best: smallest allowed FPS.")
                       ] = None,
    json_: JsonOpt = False,
) -> None:
    """Run a what-if grid over any fields; one row of metrics per point."""
    if not grid:
        fail("--grid: give at least one axis, e.g. --grid policy.d_in=1,2,3,4")
    with handled():
        raw, name = load_raw(scenario)
        axes = [parse_axis(g) for g in grid]
        with progress_bar("sweep", enabled=not json_ and sys.stderr.isatty()) as update:
            table = run_sweep(raw, list(set_ or []), axes, name=name, workers=workers,
                              progress=update)
        if out is not None:
            write_table(table, out, sweep_meta(raw, name, list(set_ or []), axes))
    pick = best_point(table, max_latency_ms, min_fps) \
        if best or max_latency_ms is not None or min_fps is not None else None
    if json_:
        records = table.to_dict(orient="records")
        if pick is None:
            print_json(records)
        else:
            print_json({"points": records, "best": pick.best, "pareto": pick.pareto,
                        "feasible": pick.feasible, "criteria": pick.criteria})
        return
    print_sweep(name, table, [a.field for a in axes])
    if pick is not None:
        print_best(pick, [a.field for a in axes])
    if out is not None:
        out_console.print(f"table: {out}")


@app.command("bound")
def bound_cmd(scenario: ScenarioArg = None, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Analytic steady-state period, its critical cycle and what would move it."""
    with handled():
        sc = load_scenario(scenario, set_)
        res = compute_bound(sc)
    if json_:
        print_json({"scenario": sc.name, "policy": sc.policy.params(), **res.to_json()})
        return
    print_bound(describe(sc), res)
