"""Commands that diagnose a trace: ``check`` (protocol invariants) and ``explain``
(why it does not fill: idle time by cause, chains, verdict)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from pipefill.cli.app import Command, JsonOpt, app, check_out, handled, out_console

if TYPE_CHECKING:
    from pipefill.traces.check import CheckReport
    from pipefill.traces.explain import Explanation

OutOpt = Annotated[Path | None, typer.Option(
    help="Also write the JSON result to this file (.json, atomically).")]
STATUS = {"ok": "ok", "broken": "BROKEN", "not_checked": "not checked"}
#: row labels of the causes
HEADERS = {"fill_drain": "fill/drain"}


def _write(out: Path | None, obj: Any) -> None:
    if out is None:
        return
    import json

    from pipefill.cli.render import jsonable
    from pipefill.traces.io import write_text

    with handled():
        write_text(out, json.dumps(jsonable(obj), indent=1) + "\n")


@app.command("check", cls=Command)
def check_cmd(
    traces: Annotated[list[Path], typer.Argument(
        metavar="TRACE...", help="Traces to check (.parquet or .csv): simulated, replayed, "
        "probe, imported or merged.")],
    out: OutOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Check the protocol invariants of traces: each chunk emitted once and in order, no
    stale epoch after a hard cut, call ids increasing, every rank ran the same calls,
    no overlapping spans, queues within capacity, bytes within the policy's bound.

    Exit 0 when every rule holds, 1 when one is broken, 2 when a file is not a trace.
    A rule a trace cannot support is listed as not checked, never as passed.
    """
    import pipefill
    from pipefill.cli.render import print_json
    from pipefill.measure import as_trace

    check_out(out, (".json",), traces)
    with handled():
        loaded = [as_trace(p, strict=False) for p in traces]  # every file read first
        reports = [pipefill.check(tr, label=p.name) for p, tr in zip(traces, loaded,
                                                                      strict=True)]
    result = {"ok": all(r.ok for r in reports), "traces": [r.to_json() for r in reports]}
    _write(out, result)
    if json_:
        print_json(result)
    else:
        for r in reports:
            _print_check(r)
    if not result["ok"]:
        raise typer.Exit(1)


def _print_check(r: CheckReport) -> None:
    head = (f"{r.label} ({r.source}): {r.count('ok')} ok, {r.count('broken')} broken, "
            f"{r.count('not_checked')} not checked")
    table = Table(title=head, header_style="bold", title_justify="left")
    for col in ("rule", "status", "rows", "first row / detail"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for x in r.results:
        detail = x.detail if x.first is None else f"{x.first.describe()}: {x.detail}"
        table.add_row(x.rule, STATUS[x.status], str(x.rows) if x.rows else "", Text(detail))
    out_console.print(table)


@app.command("explain", cls=Command)
def explain_cmd(
    trace_path: Annotated[Path, typer.Argument(metavar="TRACE", help="A trace (.parquet/.csv).")],
    warmup: Annotated[int | None, typer.Option(
        min=0, help="Emits before the steady window (default: the run's warm-up).")] = None,
    out: OutOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Why doesn't it fill: every stage's idle time in the steady window by cause
    (starved, blocked, dependency, source, fill_drain, unattributed), what the stage
    upstream did meanwhile, and a one-line verdict with the lever that would move it,
    cross-checked with the analytic bound when the trace names its policy.
    """
    import pipefill
    from pipefill.cli.render import print_json

    check_out(out, (".json",), [trace_path])
    with handled():
        res = pipefill.explain(trace_path, warmup=warmup)
    _write(out, res.to_json())
    if json_:
        print_json(res.to_json())
        return
    print_explanation(res)


def print_explanation(e: Explanation) -> None:
    w = e.window
    span = w.get("t_end_ms", 0.0) - w.get("t_start_ms", 0.0)
    table = Table(title=f"{e.label} ({e.source}): idle time in the steady window, chunks "
                  f"{w.get('first_chunk')}-{w.get('last_chunk')} ({span:,.1f} ms)",
                  header_style="bold", title_justify="left")
    table.add_column("share of the window")
    for s in e.stages:
        table.add_column(s.stage, justify="right")
    table.add_row("idle", *(f"{s.idle_share:.1%}" for s in e.stages))
    for cause in e.stages[0].causes:
        table.add_row(f"  {HEADERS.get(cause, cause)}",
                      *(f"{s.causes[cause] / s.window_ms:.1%}" if s.causes[cause] > 0 else ""
                        for s in e.stages))
    if any(s.inferred_ms > 0 for s in e.stages):
        table.add_row("  of it inferred", *(f"{s.inferred_ms / s.window_ms:.1%}"
                                            for s in e.stages))
    out_console.print(table)
    for s in e.stages:
        out_console.print(s.line(), markup=False)
    v = e.verdict
    out_console.print(f"verdict: {v.text}", markup=False)
    out_console.print(f"lever: {v.lever}", markup=False)
    if v.bound:
        out_console.print(v.bound, markup=False)
    for note in e.notes:
        out_console.print(f"note: {note}", markup=False)
