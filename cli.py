"""pipefill command line: parses arguments, calls library functions, prints, exits.

Exit codes: 0 ok; 2 bad input (one line naming the field, no output file written);
3 the schedule stalled or a run failed (the message names stage, action and queues).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from sim.engine import StallError, simulate
from sim.scenario import Scenario, ScenarioError, apply_overrides, build_scenario, load_raw
from sim.sweep import parse_axis, run_sweep
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
    win = metrics.get("window", {})
    note = (f"chunks {win.get('first_chunk')}..{win.get('last_chunk')}, "
            f"{win.get('periods', 0)} periods after warm-up {win.get('warmup')}")
    table.add_row("window", str(metrics.get("chunks")), note)
    if metrics.get("drops") or metrics.get("hard_cuts"):
        table.add_row("drops / hard cuts", f"{metrics['drops']} / {metrics['hard_cuts']}", "")
    out_console.print(table)


def describe(sc: Scenario) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sc.policy.params().items() if k != "name")
    return f"{sc.name}: {sc.policy.name}({params})"


@app.command("simulate")
def simulate_cmd(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the trace (.parquet or .csv).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Predict period, FPS, OverlapScore, bubbles and TTFF of one scenario."""
    with handled():
        sc = load(scenario, set_)
        trace = simulate(sc)
        metrics = compute_metrics(trace)
        if out is not None:
            write_trace(trace, out)
    if json_:
        print_json({"scenario": sc.name, "policy": sc.policy.params(), **metrics})
        return
    print_summary(describe(sc), metrics)
    if out is not None:
        out_console.print(f"trace: {out}")


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
    if json_:
        print_json(table.to_dict(orient="records"))
        return
    cols = [a.field for a in axes] + ["period_ms", "fps", "overlap_score", "ttff_ms"]
    cols += [c for c in table.columns if c.startswith("bubble_")] + ["peak_bytes_in_flight"]
    view = Table(title=f"sweep of {name}: {len(table)} points", header_style="bold")
    for c in cols:
        view.add_column(c, justify="right")
    for rec in table.to_dict(orient="records"):
        view.add_row(*(_fmt(None if _isnan(rec.get(c)) else rec.get(c)) for c in cols))
    out_console.print(view)
    if out is not None:
        out_console.print(f"table: {out}")


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
