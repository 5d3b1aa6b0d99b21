"""pipefill command line: parses arguments, calls library functions, prints, exits.

Exit codes: 0 ok; 2 bad input (one line naming the field, no output file written);
3 the schedule stalled or a run failed (the message names stage, action and queues).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from sim.bound import Bound, compute_bound
from sim.engine import StallError, simulate
from sim.replicas import ReplicaSummary, run_replicas
from sim.scenario import Scenario, ScenarioError, apply_overrides, build_scenario, load_raw
from sim.sweep import BestPick, best_point, parse_axis, run_sweep
from traces.io import write_table, write_trace
from traces.metrics import SUMMARY_KEYS, compute_metrics
from traces.schema import TraceError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Simulate and measure how streaming video-DiT pipelines fill their stages.")
out_console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

ScenarioArg = Annotated[Path | None, typer.Argument(
    help="Scenario TOML file; the built-in default scenario when omitted.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a field: --set policy.d_in=2 (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]

#: errors that mean "bad input": exit 2
INPUT_ERRORS: tuple[type[Exception], ...] = (ScenarioError, TraceError)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Turn library errors into one clear line and the documented exit code."""
    try:
        yield
    except INPUT_ERRORS as exc:
        fail(str(exc), 2)
    except StallError as exc:
        fail(str(exc), 3)


def load(scenario: Path | None, sets: list[str] | None) -> Scenario:
    raw, name = load_raw(scenario)
    return build_scenario(apply_overrides(raw, list(sets or [])), name=name)


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item"):  # numpy scalars
        return jsonable(obj.item())
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(obj), sort_keys=False) + "\n")


def _fmt(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def print_summary(title: str, metrics: dict[str, Any]) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("note")
    missing = metrics.get("missing", {})
    for key in SUMMARY_KEYS:
        table.add_row(key, _fmt(metrics.get(key)), missing.get(key, ""))
    for stage, value in sorted(metrics.get("bubble", {}).items()):
        table.add_row(f"bubble {stage}", f"{value:.1%}", "idle share in the window")
    add_fill_and_memory_rows(table, metrics)
    win = metrics.get("window", {})
    note = (f"chunks {win.get('first_chunk')}..{win.get('last_chunk')}, "
            f"{win.get('periods', 0)} periods after warm-up {win.get('warmup')}")
    table.add_row("window", str(metrics.get("chunks")), note)
    if metrics.get("drops") or metrics.get("hard_cuts"):
        table.add_row("drops / hard cuts", f"{metrics['drops']} / {metrics['hard_cuts']}", "")
    out_console.print(table)


def add_fill_and_memory_rows(table: Table, metrics: dict[str, Any]) -> None:
    """Rows for cyclic schedules, finite batches, several sessions and memory by stage."""
    if metrics.get("mean_period_ms") is not None:
        table.add_row("mean_period_ms", _fmt(metrics["mean_period_ms"]),
                      "mean gap between emits in the window (cyclic schedules)")
    for stage, value in sorted(metrics.get("bubble_run", {}).items()):
        table.add_row(f"bubble_run {stage}", f"{value:.1%}", "idle share, first input to last emit")
    if metrics.get("aggregate_fps") is not None:
        table.add_row("aggregate_fps", _fmt(metrics["aggregate_fps"]), "all sessions together")
        table.add_row("aggregate_latency_p95_ms", _fmt(metrics.get("aggregate_latency_p95_ms")),
                      "all sessions pooled")
    for stage, peak in sorted(metrics.get("memory", {}).get("stages", {}).items()):
        table.add_row(f"peak bytes {stage}", _fmt(peak), "in flight toward this stage")


def describe(sc: Scenario) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sc.policy.params().items() if k != "name")
    return f"{sc.name}: {sc.policy.name}({params})"


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
        sc = load(scenario, set_)
        trace = simulate(sc)
        metrics = compute_metrics(trace)
        if replicas > 1:
            with progress_bar("replicas", enabled=not json_ and sys.stderr.isatty()) as update:
                reps = run_replicas(sc.raw, sc.name, replicas, workers, update)
        if out is not None:
            write_trace(trace, out)
    if json_:
        extra = {"replicas": reps.to_json()} if reps is not None else {}
        print_json({"scenario": sc.name, "policy": sc.policy.params(), **metrics, **extra})
        return
    print_summary(describe(sc), metrics)
    if reps is not None:
        print_replicas(reps)
    if out is not None:
        out_console.print(f"trace: {out}")


def print_replicas(reps: ReplicaSummary) -> None:
    table = Table(title=f"{len(reps.seeds)} replicas (seeds {reps.seeds[0]}..{reps.seeds[-1]})",
                  header_style="bold")
    for col in ("metric", "mean", "95% interval", "n"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, e in reps.estimates.items():
        ci = "" if e.low is None else f"[{_fmt(e.low)}, {_fmt(e.high)}]"
        table.add_row(key, _fmt(e.mean), ci, str(e.n))
    out_console.print(table)


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    if not enabled:
        yield lambda done, total: None
        return
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


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
            meta = {"kind": "sweep", "scenario_name": name, "scenario": raw,
                    "sets": list(set_ or []), "grid": {a.field: list(a.values) for a in axes}}
            write_table(table, out, meta)
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
    cols = [a.field for a in axes] + ["period_ms", "fps", "overlap_score", "ttff_ms"]
    cols += [c for c in table.columns if c.startswith("bubble_")] + ["peak_bytes_in_flight"]
    view = Table(title=f"sweep of {name}: {len(table)} points", header_style="bold")
    for c in cols:
        view.add_column(c, justify="right")
    for rec in table.to_dict(orient="records"):
        view.add_row(*(_fmt(None if _isnan(rec.get(c)) else rec.get(c)) for c in cols))
    out_console.print(view)
    if pick is not None:
        print_best(pick, [a.field for a in axes])
    if out is not None:
        out_console.print(f"table: {out}")


def print_best(pick: BestPick, axes: list[str]) -> None:
    if pick.best is None:
        out_console.print(f"best: no grid point meets {pick.criteria}")
        return
    where = ", ".join(f"{a}={pick.best[a]}" for a in axes)
    out_console.print(f"best ({pick.criteria}; {pick.feasible} points qualify): {where}: "
                      f"{_fmt(pick.best['peak_bytes_in_flight'])} bytes in flight, period "
                      f"{_fmt(pick.best['period_ms'])} ms")
    cols = [*axes, "period_ms", "fps", "latency_p95_ms", "peak_bytes_in_flight"]
    view = Table(title="Pareto front: period vs memory in flight", header_style="bold")
    for c in cols:
        view.add_column(c, justify="right")
    for rec in pick.pareto:
        view.add_row(*(_fmt(None if _isnan(rec.get(c)) else rec.get(c)) for c in cols))
    out_console.print(view)


@app.command("bound")
def bound_cmd(scenario: ScenarioArg = None, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Analytic steady-state period, its critical cycle and what would move it."""
    with handled():
        sc = load(scenario, set_)
        res = compute_bound(sc)
    if json_:
        print_json({"scenario": sc.name, "policy": sc.policy.params(), **res.to_json()})
        return
    print_bound(describe(sc), res)


def print_bound(title: str, b: Bound) -> None:
    kind = {"exact": "exact", "lower_bound": "lower bound", "estimate": "estimate"}[b.kind]
    if b.from_means:
        kind += ", from mean costs"
    table = Table(title=title, show_header=True, header_style="bold")
    for col in ("", "value", "note"):
        table.add_column(col, justify="right" if col == "value" else "left")
    table.add_row("period_ms", _fmt(b.period_ms), f"{kind}: {b.reason}")
    table.add_row("fps", _fmt(b.fps), "")
    table.add_row("serial_ms", _fmt(b.serial_ms), "upper bound: all work of a chunk back to back")
    # Text: the chain's [k] indices are not rich markup
    table.add_row("critical cycle", f"{b.critical.lag_chunks} chunk(s)", Text(b.critical.chain))
    table.add_row("regime", f"{b.cyclicity} chunk(s)", "the steady state repeats every")
    for stage, ms in b.busy_ms.items():
        table.add_row(f"busy {stage}", _fmt(ms), "ms of work per chunk")
    for phase, slope in b.sensitivity.items():
        lim = b.limits.get(phase)
        note = (f"while {phase} >= {lim['cost_ms']:.1f} ms (then period "
                f"{lim['period_ms']:.1f} ms)" if lim else "")
        table.add_row(f"d period / d {phase}", f"{slope:.3g}", note)
    for note in b.notes:
        table.add_row("note", "", note)
    out_console.print(table)
    out_console.print(b.explanation, markup=False)


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


@app.command("report")
def report_cmd(
    inputs: Annotated[list[Path], typer.Argument(
        help="A trace, a predicted/measured pair of traces, or a sweep table.")],
    out: Annotated[Path, typer.Option(help="Report directory (created or replaced).")],
    bound: Annotated[float | None, typer.Option(
        min=0, help="Analytic period (ms) to draw on the period figure; by default "
                    "computed from a simulated input's scenario.")] = None,
    window: Annotated[int, typer.Option(
        min=0, help="Chunks shown in the Gantt window (0 = the whole run).")] = 24,
    json_: JsonOpt = False,
) -> None:
    """Write PNG figures and one self-contained index.html for a trace, a pair or a sweep."""
    # imported here: matplotlib is slow to load and only this command needs it
    from reports.build import ReportOptions, build_report

    with handled():
        if bound is None:
            bound = _bound_of_simulated(inputs)
        res = build_report(inputs, out, ReportOptions(bound_ms=bound, window=window))
    if json_:
        print_json({"out": str(res.out), "kind": res.kind, "index": str(res.index),
                    "figures": res.figures, "notices": res.notices})
        return
    out_console.print(f"{res.kind} report: {res.index}")
    for note in res.notices:
        out_console.print(f"note: {note}")
    out_console.print("figures: " + ", ".join(res.figures))


def _bound_of_simulated(inputs: list[Path]) -> float | None:
    """The analytic period of the first simulated trace's scenario, if it has one.

    Best effort: a sweep table, a measured trace or a scenario the bound cannot model
    just means no bound line on the figure.
    """
    from traces.io import read_trace

    for path in inputs:
        try:
            meta = read_trace(path).meta
            if meta.get("source") == "sim" and isinstance(meta.get("scenario"), dict):
                return compute_bound(build_scenario(meta["scenario"])).period_ms
        except (ValueError, KeyError):
            continue
    return None


@app.command("export")
def export_cmd(
    trace_path: Annotated[Path, typer.Argument(metavar="TRACE", help="A trace (.parquet/.csv).")],
    out: Annotated[Path, typer.Option(help="Chrome trace JSON to write (.json).")],
    json_: JsonOpt = False,
) -> None:
    """Export a trace as Chrome trace event JSON (open it in Perfetto or chrome://tracing)."""
    from traces.chrome import export_chrome, read_exportable

    with handled():
        stats = export_chrome(read_exportable(trace_path), out)
    if json_:
        print_json({"out": str(out), **vars(stats)})
        return
    out_console.print(f"chrome trace: {out}: {stats.spans} spans, {stats.marks} marks, "
                      f"{stats.counters} counter samples, {stats.flows} flows "
                      f"({stats.unconsumed} sends never received), {stats.processes} "
                      f"processes, {stats.threads} threads")


def _replay_threads(sc: Scenario, opts: Any, dopts: Any, inject: str | None, out: Path,
                    json_: bool) -> Any:
    """Threads backend: every stage a thread of this process; writes the trace."""
    from dataclasses import replace

    from exec.dist_config import DistOptions
    from exec.errors import ExecError
    from exec.kernels import Fault
    from exec.replay import replay

    if dopts != DistOptions():
        fail("--mesh-size/--world-size/--master-addr/--master-port/--dist-backend: only "
             "with --backend dist")
    opts = replace(opts, fault=Fault.parse(inject) if inject else None)
    with progress_bar("replay", enabled=not json_ and sys.stderr.isatty()) as update:
        try:
            trace = replay(sc, opts, progress=update)
        except ExecError as exc:
            write_trace(exc.trace, out)
            if exc.abandoned:
                # a kernel never returned: interpreter teardown would abort inside it
                crash_exit(f"{exc} (partial trace written to {out})", 3)
            fail(f"{exc} (partial trace written to {out})", 3)
    write_trace(trace, out)
    return trace


def _replay_dist(sc: Scenario, opts: Any, dopts: Any, inject: str | None, out: Path,
                 json_: bool) -> Any:
    """Dist backend: under torchrun this process is one rank; else launch every rank."""
    from exec.dist_config import RankEnv
    from exec.dist_spawn import spawn_replay
    from traces.io import read_trace

    env = RankEnv.from_environ()
    if env is not None:
        return _replay_rank(sc, opts, dopts, inject, out, env)
    outcome = spawn_replay(sc, opts, dopts, inject, out)
    if outcome.code == 2:
        fail(str(outcome.error), 2)
    if outcome.code != 0:
        written = outcome.report is not None and outcome.report.trace_written
        fail(f"{outcome.error}" + (f" (partial trace written to {out})" if written else ""), 3)
    return read_trace(out)


def _replay_rank(sc: Scenario, opts: Any, dopts: Any, inject: str | None, out: Path,
                 env: Any) -> Any:
    """One rank of a torchrun launch: rank0 writes the trace and reports; others are quiet."""
    from exec.dist_faults import DistFault
    from exec.dist_rank import run_rank

    result = run_rank(sc, opts, dopts, env, DistFault.parse(inject) if inject else None)
    if result.trace is not None:
        write_trace(result.trace, out)
    if result.error is not None:
        written = f" (partial trace written to {out})" if result.trace is not None else ""
        crash_exit(f"{result.error}{written}", 3)
    return result.trace


def crash_exit(message: str, code: int) -> NoReturn:
    """Print the error line and leave at once: a thread may sit in a kernel or a
    collective that interpreter teardown would wait for (crash-only)."""
    err_console.print(f"error: {message}", markup=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


#: ``replay --backend`` -> how to run it (each writes the trace; None: nothing to report)
REPLAY_BACKENDS: dict[str, Callable[..., Any]] = {"threads": _replay_threads,
                                                  "dist": _replay_dist}


@app.command("dist-rank", hidden=True)
def dist_rank_cmd(spec: Annotated[Path, typer.Argument(
        help="Launch spec (JSON) written by the pipefill launcher.")]) -> None:
    """Internal: one rank of a `replay --backend dist` that pipefill launched itself."""
    from exec.dist_config import RankEnv
    from exec.dist_rank import run_rank
    from exec.dist_spawn import LaunchSpec, RankReport
    from exec.errors import ExecConfigError

    launch = LaunchSpec.read(spec)
    env = RankEnv.from_environ()
    report = Path(launch.result)
    rank0 = env is None or env.rank == 0
    try:
        if env is None:
            raise ExecConfigError("RANK", "dist-rank runs under the pipefill launcher, "
                                  "which sets RANK and WORLD_SIZE")
        sc, opts, dopts, fault = launch.options()
        result = run_rank(sc, opts, dopts, env, fault)
    except INPUT_ERRORS as exc:
        if rank0:
            RankReport(2, str(exc)).write(report)
        crash_exit(str(exc), 2)
    if result.trace is not None:
        write_trace(result.trace, launch.out)
    if rank0:
        RankReport(3 if result.error else 0, result.error, list(result.abandoned),
                   result.trace is not None).write(report)
    if result.error is not None:
        crash_exit(result.error, 3)


@app.command("replay")
def replay_cmd(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    *,
    out: Annotated[Path, typer.Option(help="Write the measured trace (.parquet or .csv).")],
    device: Annotated[str, typer.Option(help="cpu, or cuda (one stream per stage).")] = "cpu",
    kernels: Annotated[str, typer.Option(
        help="calibrated: matmul loops sized to the cost model; spin (cuda): clock-spin "
             "kernels of the modelled length that do not contend; model: small DiT + VAE.")
    ] = "calibrated",
    chunks: Annotated[int | None, typer.Option(min=1, help="Override run.chunks.")] = None,
    threads: Annotated[int, typer.Option(help="Intra-op threads per stage (CPU).")] = 1,
    model_size: Annotated[str, typer.Option(help="Model kernels: tiny, small or base.")
                          ] = "small",
    calibration: Annotated[Path | None, typer.Option(
        help="Calibration cache (JSON); default ~/.cache/pipefill/calibration.json.")] = None,
    timeout: Annotated[float, typer.Option(
        help="Seconds any wait or kernel may take before the run fails.")] = 60.0,
    inject: Annotated[str | None, typer.Option(
        help="Make one kernel raise: PHASE:CHUNK or STAGE:PHASE:CHUNK. --backend dist also: "
             "hang:, kill:, wrong_group:[WHERE:]PHASE:CHUNK (WHERE: stage0, stage1 or "
             "rankN), bad_version:QUEUE:CHUNK, missing_tensor:QUEUE:CHUNK.")] = None,
    backend: Annotated[str, typer.Option(
        help="threads: one process, a thread per stage; dist: one process per rank over "
             "torch.distributed (rank0 = stage0, ranks 1..N = the mesh), launched here or "
             "by torchrun.")] = "threads",
    mesh_size: Annotated[int, typer.Option(
        help="dist: ranks of the mesh; the world is 1 + mesh size.")] = 1,
    world_size: Annotated[int | None, typer.Option(
        help="dist: the world size you expect (checked against the policy).")] = None,
    master_addr: Annotated[str, typer.Option(
        help="dist: rendezvous address (loopback unless given).")] = "127.0.0.1",
    master_port: Annotated[int | None, typer.Option(
        help="dist: rendezvous port (a free one unless given).")] = None,
    dist_backend: Annotated[str, typer.Option(
        help="dist: auto (gloo on CPU, NCCL on CUDA), gloo or nccl.")] = "auto",
    json_: JsonOpt = False,
) -> None:
    """Run the scenario's policy on real torch kernels and measure it (same trace format)."""
    # imported here: torch is slow to load and only the executor needs it
    from exec.dist_config import DistOptions
    from exec.replay import ReplayOptions

    if out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        fail(f"--out: {out.name}: unknown extension (use .parquet or .csv)")
    run_backend = REPLAY_BACKENDS.get(backend)
    if run_backend is None:
        fail(f"--backend: unknown backend {backend!r} (allowed: {', '.join(REPLAY_BACKENDS)})")
    with handled():
        sc = load(scenario, [*(set_ or []), *([f"run.chunks={chunks}"] if chunks else [])])
        opts = ReplayOptions(device=device, kernels=kernels, threads=threads,
                             model_size=model_size, calibration_path=calibration,
                             timeout_s=timeout)
        dopts = DistOptions(mesh_size=mesh_size, world_size=world_size,
                            master_addr=master_addr, master_port=master_port,
                            dist_backend=dist_backend)
        trace = run_backend(sc, opts, dopts, inject, out, json_)
        if trace is None:
            return  # a mesh rank under torchrun: rank0 reports
        metrics = compute_metrics(trace)
    if json_:
        print_json({"scenario": sc.name, "policy": sc.policy.params(),
                    "device": trace.meta["device"], "kernels": trace.meta["kernels"], **metrics})
        return
    print_summary(f"{describe(sc)} measured on {trace.meta['device']} ({kernels} kernels)",
                  metrics)
    out_console.print(f"trace: {out}")


def print_diff(res: dict[str, Any]) -> None:
    table = Table(title=f"{res['predicted_source']} (predicted) vs {res['measured_source']} "
                  "(measured)", header_style="bold")
    for col in ("metric", "predicted", "measured", "abs error", "rel error"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, e in res["metrics"].items():
        rel = "" if e["rel_error"] is None else f"{e['rel_error']:+.1%}"
        table.add_row(key, _fmt(e["predicted"]), _fmt(e["measured"]),
                      "" if e["abs_error"] is None else f"{e['abs_error']:+.3f}", rel)
    out_console.print(table)
    phases = Table(title="median phase durations (ms)", header_style="bold")
    for col in ("stage", "phase", "n pred/meas", "predicted", "measured", "error", "rel"):
        phases.add_column(col, justify="left" if col in ("stage", "phase") else "right")
    for p in res["phases"]:
        rel = "" if p["rel_error"] is None else f"{p['rel_error']:+.1%}"
        phases.add_row(p["stage"], p["phase"], f"{p['n_predicted']}/{p['n_measured']}",
                       _fmt(p["predicted"]), _fmt(p["measured"]),
                       "" if p["abs_error"] is None else f"{p['abs_error']:+.3f}", rel)
    out_console.print(phases)
    out_console.print(res["verdict"])


@app.command("diff")
def diff_cmd(
    predicted: Annotated[Path, typer.Argument(help="Predicted trace (e.g. from simulate).")],
    measured: Annotated[Path, typer.Argument(help="Measured trace (e.g. from replay).")],
    tolerance: Annotated[float, typer.Option(
        min=0, help="Timing divergence threshold, as a fraction of the predicted period.")
    ] = 0.2,
    json_: JsonOpt = False,
) -> None:
    """Compare two traces: metric errors, phase durations, first divergence, verdict."""
    from traces.diff import diff_traces
    from traces.io import read_trace

    with handled():
        res = diff_traces(read_trace(predicted), read_trace(measured), tolerance)
    for warning in res["warnings"]:
        err_console.print(f"warning: {warning}", markup=False)
    if json_:
        print_json(res)
        return
    print_diff(res)


@app.command("calibrate")
def calibrate_cmd(
    measured: Annotated[Path, typer.Argument(help="A measured trace (.parquet or .csv).")],
    out: Annotated[Path, typer.Option(help="Scenario TOML to write.")],
    dist: Annotated[str, typer.Option(
        help="Family: auto, constant, normal, lognormal or empirical.")] = "auto",
    warmup: Annotated[int | None, typer.Option(
        min=0, help="Chunks left out of the fit (default: the run's warm-up).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Fit per-phase cost distributions and transport to a trace; write a scenario."""
    from sim.calibrate import calibrate_trace
    from traces.io import read_trace, write_text

    with handled():
        trace = read_trace(measured)
        cal = calibrate_trace(trace, dist=dist, warmup=warmup)
        write_text(out, cal.toml(header=f"pipefill calibrate {measured.name} "
                                 f"(source {trace.source}, {trace.meta.get('device', '?')})"))
    if json_:
        print_json({"out": str(out), "costs": cal.raw["costs"], "transport": cal.transport,
                    "samples": {f.phase: f.samples for f in cal.fits},
                    "outliers": {f.phase: f.outliers for f in cal.fits}})
        return
    table = Table(title=f"calibrated from {measured.name}", header_style="bold")
    for col in ("phase", "dist", "mean ms", "cv", "samples", "outliers"):
        table.add_column(col, justify="left" if col in ("phase", "dist") else "right")
    for f in cal.fits:
        note = str(f.samples) if f.samples else "0 (kept as given)"
        table.add_row(f.phase, str(f.spec.get("dist", "constant")), _fmt(f.mean_ms if f.samples
                      else None), _fmt(f.cv if f.samples else None), note, str(f.outliers))
    out_console.print(table)
    tr = cal.transport
    out_console.print(f"transport: latency {tr.get('latency_ms')} ms, "
                      f"bandwidth {tr.get('bandwidth_gbps')} GB/s")
    out_console.print(f"scenario: {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
