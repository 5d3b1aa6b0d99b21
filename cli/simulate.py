"""Commands that run the model: simulate, sweep, bound."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipefill.cli.app import (
    Command,
    JsonOpt,
    PolicyOpt,
    ScenarioArg,
    SetOpt,
    app,
    check_out,
    err_console,
    fail,
    handled,
    note_switch,
    out_console,
    progress_bar,
)

if TYPE_CHECKING:
    from pipefill.sim.sweep.replicas import ReplicaSummary

# library modules are imported inside the commands: `pipefill --help` and `bound` should
# not pay for pandas and the simulator (see README, start-up)

TABLE_SUFFIXES = (".parquet", ".pq", ".csv")
EngineOpt = Annotated[str, typer.Option(
    help="auto|simpy|fast: auto takes the fast path for fixed-order schedules (SimPy when "
    "the order depends on timing, or for a written trace); fast refuses the former.")]
PrecisionOpt = Annotated[float | None, typer.Option(
    metavar="REL", help="Run until the 95% interval of the steady-state period is within "
    "REL x period (e.g. 0.005), run.chunks being the cap; with run.warmup = \"auto\" "
    "the warm-up is MSER-5's.")]


def precision_of(rel: float | None) -> Any:
    """``--precision`` as a target (exit 2 unless 0 < REL < 1)."""
    if rel is None:
        return None
    if not 0.0 < rel < 1.0:
        fail(f"--precision: the relative half-width must be > 0 and < 1 (got {rel:g})")
    from pipefill.sim.precision import Precision

    return Precision(rel)


@app.command("simulate", cls=Command)
def simulate_cmd(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    policy: PolicyOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the trace (.parquet or .csv).")] = None,
    replicas: Annotated[int, typer.Option(
        min=1, help="Also run seeds seed..seed+R-1; report means and 95% intervals.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Processes for --replicas.")] = 1,
    engine: EngineOpt = "auto",
    precision: PrecisionOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Predict period, FPS, OverlapScore, bubbles and TTFF of one scenario."""
    import pipefill
    from pipefill.cli.longrun import LongRun
    from pipefill.cli.render import describe, print_json, print_replicas, print_summary

    check_out(out, TABLE_SUFFIXES, [scenario])
    target = precision_of(precision)
    reps: ReplicaSummary | None = None
    with handled():
        sc = pipefill.load_scenario(scenario, set_ or (), policy=policy)
        note_switch(scenario, sc)
        # SimPy streams the trace to --out as it is recorded and computes metrics online;
        # a long run says how long it will take, shows progress and stops on Ctrl-C
        with LongRun("simulate", sys.stderr.isatty(), out, cap=target is not None) as long:
            metrics = pipefill.simulate(sc, engine=engine, out=out, keep_trace=False,
                                        precision=precision, monitor=long).metrics
        if replicas > 1 and not metrics.get("interrupted"):
            reps = _replicas(sc, replicas, workers, json_, engine, target)
    if json_:
        extra = {"replicas": reps.to_json()} if reps is not None else {}
        print_json({"scenario": sc.name, "policy": sc.policy.params(), **metrics, **extra})
    else:
        print_summary(f"{describe(sc)} [engine: {metrics['engine']}]", metrics)
        if reps is not None:
            print_replicas(reps)
        if out is not None:
            out_console.print(f"trace: {out}")
    if metrics.get("interrupted"):
        kept = f"; its trace is in {out}" if out is not None else ""
        err_console.print(f"interrupted: the summary covers the {metrics['chunks']:,} chunks "
                          f"emitted before Ctrl-C{kept}", markup=False)
        raise typer.Exit(130)


def _replicas(sc: Any, replicas: int, workers: int, json_: bool,
              engine: str, target: Any) -> ReplicaSummary:
    from pipefill.sim.sweep.replicas import run_replicas

    with progress_bar("replicas", enabled=not json_ and sys.stderr.isatty()) as update:
        return run_replicas(sc.raw, sc.name, replicas, workers, update, engine, target)


@app.command("sweep", cls=Command)
def sweep_cmd(
    scenario: ScenarioArg = None,
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", help="An axis: --grid policy.d_in=1,2,3,4 (repeatable; cartesian; "
        "each field once).")] = None,
    set_: SetOpt = None,
    policy: PolicyOpt = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Processes to run points on (pool, or LocalCluster workers).")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        help="Run on Dask: 'local' starts a LocalCluster of --workers processes; "
        "tcp://HOST:PORT uses an existing Dask scheduler.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the table with every column (.parquet or .csv); the terminal shows "
        "the varied fields and key metrics. Finished tasks stream to OUT.parts/.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", metavar="", help="Keep the points already in --out (and OUT.parts/); "
        "run the rest.")] = False,
    points_per_task: Annotated[int | None, typer.Option(
        min=1, help="Points per task (default: about 8 tasks per worker, at most 64).")
                               ] = None,
    task_timeout: Annotated[float, typer.Option(
        min=0.001, help="Longest wait (s) for the next task to finish on a pool or cluster.")
                            ] = 3600.0,
    best: Annotated[bool, typer.Option(
        "--best", metavar="", help="Pick the point meeting the limits with the least memory "
        "in flight, and show the period-memory Pareto front; exit 1 when no point "
        "qualifies.")] = False,
    max_latency_ms: Annotated[float | None, typer.Option(
        min=0, help="--best: largest allowed latency p95 (ms).")] = None,
    min_fps: Annotated[float | None, typer.Option(min=0, help="--best: smallest allowed FPS.")
                       ] = None,
    engine: EngineOpt = "auto",
    precision: PrecisionOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run a what-if grid over any fields; one row of metrics per point."""
    from pipefill.cli.render import print_best, print_json, print_sweep
    if not grid:
        fail("--grid: give at least one axis, e.g. --grid policy.d_in=1,2,3,4")
    check_out(out, TABLE_SUFFIXES, [scenario])
    precision_of(precision)
    with handled():
        run = SweepRun(scheduler, workers, task_timeout, out, resume, points_per_task, json_,
                       engine, precision)
        res = _run_sweep(scenario, grid, set_ or [], policy, run)
    name, table, axes = res.name, res.table, res.axes
    pick = res.best(max_latency_ms, min_fps) \
        if best or max_latency_ms is not None or min_fps is not None else None
    if json_:
        records = table.to_dict(orient="records")
        if pick is None:
            print_json(records)
        else:
            print_json({"points": records, "best": pick.best, "pareto": pick.pareto,
                        "feasible": pick.feasible, "criteria": pick.criteria})
    else:
        print_sweep(name, table, axes)
        if pick is not None:
            print_best(pick, axes)
        if out is not None:
            out_console.print(f"table: {out}")
    if pick is not None and pick.best is None:
        raise typer.Exit(1)


@dataclass(frozen=True)
class SweepRun:
    """How a sweep runs: where tasks run (``scheduler``, ``workers``, ``wait_s`` for the
    next task), ``out`` (table; parts stream beside it), ``resume``, ``per_task`` (points
    per task, None: automatic), ``json_``, ``engine`` (auto, simpy or fast),
    ``precision`` (relative half-width, or None)."""

    scheduler: str | None
    workers: int
    wait_s: float
    out: Path | None
    resume: bool
    per_task: int | None
    json_: bool
    engine: str = "auto"
    precision: float | None = None


def _run_sweep(scenario: Path | None, grid: list[str], sets: list[str], policy: str | None,
               run: SweepRun) -> Any:
    """Run the grid (streaming finished tasks to ``--out``.parts) and write ``--out``; on
    Ctrl-C write the finished points to ``--out`` too, say how many, exit 130."""
    import pipefill
    from pipefill.cli.longrun import SweepBar, sweep_notice
    from pipefill.cli.render import print_sweep_summary
    from pipefill.sim.sweep.executors import SweepTimeout
    from pipefill.sim.sweep.grid import SweepInterrupted

    tty = not run.json_ and sys.stderr.isatty()
    try:
        with SweepBar(tty) as bar:
            outcome = pipefill.sweep(
                grid, scenario, sets=sets, policy=policy, workers=run.workers,
                scheduler=run.scheduler, out=run.out, resume=run.resume,
                per_task=run.per_task, engine=run.engine, task_timeout_s=run.wait_s,
                precision=run.precision, progress=bar.progress, cost_progress=bar.work,
                planned=None if run.json_ else sweep_notice(run.out, run.workers))
    except SweepInterrupted as stop:
        kept = f"{len(stop.table)} of {stop.total} points finished"
        if stop.kept_in is not None:
            kept += f", kept in {stop.kept_in} (--resume runs the rest)"
        else:
            kept += ", nothing written" + ("" if run.out is not None else " (no --out)")
        err_console.print(f"interrupted: {kept}", markup=False)
        raise typer.Exit(130) from None
    except SweepTimeout as exc:
        fail(f"sweep: {exc}", 3)
    if not tty and not run.json_:
        print_sweep_summary(outcome)
    return outcome


@app.command("bound", cls=Command)
def bound_cmd(scenario: ScenarioArg = None, set_: SetOpt = None, policy: PolicyOpt = None,
              json_: JsonOpt = False) -> None:
    """Analytic steady-state period, its critical cycle and what would move it."""
    import pipefill
    from pipefill.cli.render import describe, print_bound, print_json

    with handled():
        sc = pipefill.load_scenario(scenario, set_ or (), policy=policy)
        note_switch(scenario, sc)
        res = pipefill.bound(sc)
    if json_:
        print_json({"scenario": sc.name, "policy": sc.policy.params(), **res.to_json()})
        return
    print_bound(describe(sc), res)
