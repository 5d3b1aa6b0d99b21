"""Commands that run the model: simulate, sweep, bound."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipefill.cli.app import (
    JsonOpt,
    PolicyOpt,
    ScenarioArg,
    SetOpt,
    app,
    check_out,
    err_console,
    fail,
    handled,
    out_console,
    progress_bar,
    with_policy,
)

if TYPE_CHECKING:
    from pipefill.sim.replicas import ReplicaSummary

# library modules are imported inside the commands: `pipefill --help` and `bound` should
# not pay for pandas and the simulator (see README, start-up)

TABLE_SUFFIXES = (".parquet", ".pq", ".csv")


@app.command("simulate")
def simulate_cmd(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    policy: PolicyOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the trace (.parquet or .csv).")] = None,
    replicas: Annotated[int, typer.Option(
        min=1, help="Also run seeds seed..seed+R-1; report means and 95% intervals.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Processes for --replicas.")] = 1,
    json_: JsonOpt = False,
) -> None:
    """Predict period, FPS, OverlapScore, bubbles and TTFF of one scenario."""
    from pipefill.cli.render import describe, print_json, print_replicas, print_summary
    from pipefill.sim.scenario import load_scenario
    from pipefill.sim.stream import simulate_summary

    check_out(out, TABLE_SUFFIXES)
    reps: ReplicaSummary | None = None
    with handled():
        sc = load_scenario(scenario, with_policy(policy, set_))
        # the trace streams to --out as it is recorded; metrics are computed online
        metrics = simulate_summary(sc, out).metrics
        if replicas > 1:
            reps = _replicas(sc, replicas, workers, json_)
    if json_:
        extra = {"replicas": reps.to_json()} if reps is not None else {}
        print_json({"scenario": sc.name, "policy": sc.policy.params(), **metrics, **extra})
        return
    print_summary(describe(sc), metrics)
    if reps is not None:
        print_replicas(reps)
    if out is not None:
        out_console.print(f"trace: {out}")


def _replicas(sc: Any, replicas: int, workers: int, json_: bool) -> ReplicaSummary:
    from pipefill.sim.replicas import run_replicas

    with progress_bar("replicas", enabled=not json_ and sys.stderr.isatty()) as update:
        return run_replicas(sc.raw, sc.name, replicas, workers, update)


@app.command("sweep")
def sweep_cmd(
    scenario: ScenarioArg = None,
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", help="An axis: --grid policy.d_in=1,2,3,4 (repeatable; cartesian; "
        "each field once).")] = None,
    set_: SetOpt = None,
    policy: PolicyOpt = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes to run points on.")] = 1,
    out: Annotated[Path | None, typer.Option(
        help="Write the table with every column (.parquet or .csv); the terminal shows "
        "the varied fields and key metrics.")] = None,
    best: Annotated[bool, typer.Option(
        "--best", metavar="", help="Pick the point meeting the limits with the least memory "
        "in flight, and show the period-memory Pareto front; exit 1 when no point "
        "qualifies.")] = False,
    max_latency_ms: Annotated[float | None, typer.Option(
        min=0, help="--best: largest allowed latency p95 (ms).")] = None,
    min_fps: Annotated[float | None, typer.Option(min=0, help="--best: smallest allowed FPS.")
                       ] = None,
    json_: JsonOpt = False,
) -> None:
    """Run a what-if grid over any fields; one row of metrics per point."""
    from pipefill.cli.render import print_best, print_json, print_sweep
    from pipefill.sim.scenario import load_raw
    from pipefill.sim.sweep import best_point, parse_axis

    if not grid:
        fail("--grid: give at least one axis, e.g. --grid policy.d_in=1,2,3,4")
    check_out(out, TABLE_SUFFIXES)
    sets = with_policy(policy, set_)
    with handled():
        raw, name = load_raw(scenario)
        axes = [parse_axis(g) for g in grid]
        table = _run_sweep(raw, name, sets, axes, workers, out, json_)
    pick = best_point(table, max_latency_ms, min_fps) \
        if best or max_latency_ms is not None or min_fps is not None else None
    if json_:
        records = table.to_dict(orient="records")
        if pick is None:
            print_json(records)
        else:
            print_json({"points": records, "best": pick.best, "pareto": pick.pareto,
                        "feasible": pick.feasible, "criteria": pick.criteria})
    else:
        print_sweep(name, table, [a.field for a in axes])
        if pick is not None:
            print_best(pick, [a.field for a in axes])
        if out is not None:
            out_console.print(f"table: {out}")
    if pick is not None and pick.best is None:
        raise typer.Exit(1)


def _run_sweep(raw: dict[str, Any], name: str, sets: list[str], axes: list[Any],
               workers: int, out: Path | None, json_: bool) -> Any:
    """Run the grid and write ``--out``; on Ctrl-C keep the finished points in ``--out``."""
    from pipefill.sim.sweep import SweepInterrupted, run_sweep, sweep_meta
    from pipefill.traces.io import write_table

    meta = sweep_meta(raw, name, sets, axes)
    try:
        with progress_bar("sweep", enabled=not json_ and sys.stderr.isatty()) as update:
            table = run_sweep(raw, sets, axes, name=name, workers=workers, progress=update)
    except SweepInterrupted as stop:
        kept = f"{len(stop.table)} of {stop.total} points finished"
        if out is not None and len(stop.table):
            write_table(stop.table, out, {**meta, "interrupted": True})
            kept += f", kept in {out}"
        else:
            kept += ", nothing written" + ("" if out is not None else " (no --out)")
        err_console.print(f"interrupted: {kept}", markup=False)
        raise typer.Exit(130) from None
    if out is not None:
        write_table(table, out, meta)
    return table


@app.command("bound")
def bound_cmd(scenario: ScenarioArg = None, set_: SetOpt = None, policy: PolicyOpt = None,
              json_: JsonOpt = False) -> None:
    """Analytic steady-state period, its critical cycle and what would move it."""
    from pipefill.cli.render import describe, print_bound, print_json
    from pipefill.sim.bound import compute_bound
    from pipefill.sim.scenario import load_scenario

    with handled():
        sc = load_scenario(scenario, with_policy(policy, set_))
        res = compute_bound(sc)
    if json_:
        print_json({"scenario": sc.name, "policy": sc.policy.params(), **res.to_json()})
        return
    print_bound(describe(sc), res)
