"""Terminal rendering of library results (rich tables, JSON); no logic, no exits."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table
from rich.text import Text

from pipefill.cli.app import err_console, out_console
from pipefill.cli.render_steady import interval_note, period_cell, window_text

if TYPE_CHECKING:  # rendering never needs pandas or the simulator loaded
    from pipefill.sim.bound.analysis import Bound
    from pipefill.sim.policies.catalog import PolicyDoc
    from pipefill.sim.scenario.model import Scenario
    from pipefill.sim.sweep.grid import BestPick
    from pipefill.sim.sweep.replicas import ReplicaSummary


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


#: what a metric is, shown when it has no reason or note of its own
METRIC_NOTES = {
    "period_ms": "mean emit gap in the window (the throughput)",
    "period_p50_ms": "median emit gap (robust to outliers; not a rate)",
    "overlap_score": "median per chunk of hidden / min(stage0, stage1)",
    "overlap_window": "share of non-bottleneck work hidden over the window",
}


def print_summary(title: str, metrics: dict[str, Any]) -> None:
    from pipefill.traces.metrics import SUMMARY_KEYS

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("note")
    missing, notes = metrics.get("missing", {}), metrics.get("notes", {})
    for key in SUMMARY_KEYS:
        table.add_row(key, _fmt(metrics.get(key)),
                      missing.get(key) or notes.get(key) or METRIC_NOTES.get(key, ""))
        if key == "period_ms" and "period_ci_ms" in metrics:
            table.add_row("period_ci_ms", _fmt(metrics["period_ci_ms"]), interval_note(metrics))
    for stage, value in sorted(metrics.get("bubble", {}).items()):
        table.add_row(f"bubble {stage}", f"{value:.1%}", "idle share in the window")
    add_fill_and_memory_rows(table, metrics)
    table.add_row("window", str(metrics.get("chunks")), window_note(metrics))
    if metrics.get("drops") or metrics.get("hard_cuts"):
        table.add_row("drops / hard cuts", f"{metrics['drops']} / {metrics['hard_cuts']}", "")
    out_console.print(table)


def window_note(metrics: dict[str, Any]) -> str:
    """Which chunks the steady-state metrics cover, or why there is no window."""
    win = metrics.get("window", {})
    warmup = win.get("warmup", metrics.get("warmup"))
    if win.get("reason"):
        return str(win["reason"])
    if win.get("first_chunk") is None or win.get("last_chunk") is None:
        return f"no steady-state window ({metrics.get('chunks')} chunks, warm-up {warmup})"
    return window_text(win, warmup)


def print_trust(meta: dict[str, Any]) -> None:
    """How far a measured run can be trusted: its parallelism and its kernel calibration."""
    trust = meta.get("parallelism") or {}
    if trust:
        shares = ", ".join(f"{d} {v:.0%}" for d, v in trust.get("device_share", {}).items()
                           if v is not None)
        free = [trust.get("free_cores_before"), trust.get("free_cores_after")]
        cores = ("; free cores before/after " + "/".join(f"{f:.2f}" for f in free if f is not None)
                 if any(f is not None for f in free) else "")
        verdict = "stages ran as modelled" if trust.get("parallel") else "NOT TRUSTWORTHY"
        out_console.print(f"parallelism: {verdict}; CPU share while computing: "
                          f"{shares or 'n/a'}{cores}")
    use = (meta.get("kernels") or {}).get("calibration")
    if isinstance(use, dict):
        check = (f", quick check {use['quick_ms']:.4g} vs cached {use['cached_ms']:.4g} ms/iter"
                 if use.get("quick_ms") is not None and use.get("cached_ms") is not None
                 else "")
        load = use.get("load_at_measure") or {}
        out_console.print(f"kernel calibration: {use.get('source')} (measured "
                          f"{use.get('measured_at')}, load average "
                          f"{load.get('loadavg_1m', '?')}{check})")


def add_fill_and_memory_rows(table: Table, metrics: dict[str, Any]) -> None:
    """Rows for cyclic schedules, finite batches, several sessions and memory by stage."""
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


def print_replicas(reps: ReplicaSummary) -> None:
    table = Table(title=f"{len(reps.seeds)} replicas (seeds {reps.seeds[0]}..{reps.seeds[-1]})",
                  header_style="bold")
    for col in ("metric", "mean", "95% interval", "n"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, e in reps.estimates.items():
        ci = "" if e.low is None else f"[{_fmt(e.low)}, {_fmt(e.high)}]"
        table.add_row(key, _fmt(e.mean), ci, str(e.n))
    out_console.print(table)


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
    if b.settled is not None:
        table.add_row("settled period_ms", _fmt(b.settled.period_ms), b.settled.describe())
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
    idle = res.get("idle_causes") or {}
    for line in idle.get("differences", []) or ([idle["reason"]] if "reason" in idle else []):
        out_console.print(f"idle causes: {line}", markup=False)
    out_console.print(res["verdict"])


#: sweep metrics the terminal shows (header, scale); --out and --json carry every column
SWEEP_TERMINAL: dict[str, tuple[str, float]] = {
    "period_ms": ("period ms", 1.0),
    "fps": ("fps", 1.0),
    "overlap_score": ("overlap", 1.0),
    "latency_p95_ms": ("p95 ms", 1.0),
    "peak_bytes_in_flight": ("peak MiB", 2.0**-20),
}


def sweep_columns(table: Any, axes: list[str]) -> list[tuple[str, str, float]]:
    """(column, header, scale) for the terminal: the axes that vary (by their last name),
    the key metrics, and ``error`` when a point stalled."""
    cols = [(a, a.split(".")[-1], 1.0) for a in axes if table[a].nunique(dropna=False) > 1]
    cols += [(c, h, k) for c, (h, k) in SWEEP_TERMINAL.items() if c in table.columns]
    if "error" in table.columns and table["error"].notna().any():
        cols.append(("error", "error", 1.0))
    return cols


def print_sweep(name: str, table: Any, axes: list[str]) -> None:
    """The varied axes and key metrics, one row per point (fits 80 columns)."""
    cols = sweep_columns(table, axes)
    view = Table(title=f"sweep of {name}: {len(table)} points", header_style="bold")
    for _, header, _ in cols:
        view.add_column(header, justify="left" if header == "error" else "right",
                        overflow="fold" if header == "error" else "ellipsis")
    for rec in table.to_dict(orient="records"):
        view.add_row(*(_sweep_cell(rec, c, k, axes) for c, _, k in cols))
    out_console.print(view)
    ignored = [a for a in axes if table[a].isna().any()]
    if ignored:
        out_console.print(f"n/a: {', '.join(ignored)} is not a field of that point's policy "
                          "(the axis is ignored there)", markup=False)
    if "converged" in table.columns and (table["converged"] == False).any():  # noqa: E712
        n = int((table["converged"] == False).sum())  # noqa: E712
        out_console.print(f"* {n} point{'s' * (n != 1)} did not converge: stopped at the "
                          "cap (run.chunks), the interval is wider than asked", markup=False)
    if "engine" in table.columns:  # which engine ran the points (the column has each's)
        counts = table["engine"].value_counts()
        out_console.print("engine: " + ", ".join(f"{e} for {n} point{'s' * (n != 1)}"
                                                 for e, n in counts.items()), markup=False)
    out_console.print(f"{len(cols)} of {len(table.columns)} columns shown; --out or --json "
                      "has all", markup=False)
    fixed = [a for a in axes if table[a].nunique(dropna=False) <= 1]
    if fixed:
        out_console.print("same in every point: " + ", ".join(
            f"{a}={table[a].iloc[0]}" for a in fixed), markup=False)


def _sweep_cell(rec: dict[str, Any], col: str, scale: float, axes: list[str]) -> str:
    """One sweep table cell: ``n/a`` for an axis the point's policy lacks, the period with
    its half-width (``*``: not converged), else the value."""
    if col in axes and rec.get(col) is None:
        return "n/a"
    if col == "period_ms" and "period_ci_ms" in rec:
        return period_cell(rec) or "missing"
    return _fmt(_scaled(rec.get(col), scale))


def _scaled(value: Any, scale: float) -> Any:
    if value is None or _isnan(value):
        return None
    return value * scale if scale != 1.0 and isinstance(value, int | float) else value


def print_calibration(source: str, cal: Any, out: Any) -> None:
    """Fitted phases, transport and where the scenario was written."""
    table = Table(title=f"calibrated from {source}", header_style="bold")
    for col in ("phase", "dist", "mean ms", "cv", "samples", "outliers"):
        table.add_column(col, justify="left" if col in ("phase", "dist") else "right")
    for f in cal.fits:
        note = str(f.samples) if f.samples else "0 (kept as given)"
        table.add_row(f.phase, str(f.spec.get("dist", "constant")), _fmt(f.mean_ms if f.samples
                      else None), _fmt(f.cv if f.samples else None), note, str(f.outliers))
    out_console.print(table)
    link = cal.scenario.transport
    out_console.print(f"transport: latency {link.latency_ms:g} ms, bandwidth "
                      f"{link.bandwidth_gbps:g} GB/s, envelope {link.envelope_size} B, result "
                      f"{link.result_size} B")
    for dev in cal.devices:
        out_console.print(dev.describe())
        for note in dev.notes:
            out_console.print(f"  {note}")
    out_console.print(f"scenario: {out}")


def print_measured(headline: str, lines: list[str]) -> None:
    """A measure command's summary: one headline, then one line per item."""
    out_console.print(headline)
    for line in lines:
        out_console.print(f"  {line}")


def print_sweep_summary(outcome: Any) -> None:
    """One line for a sweep run without a TTY: points, errors, time, where."""
    table = outcome.table
    errors = int(table["error"].notna().sum()) if "error" in table.columns else 0
    err_console.print(f"sweep: {len(table)} points ({outcome.ran} run, {outcome.reused} "
                      f"resumed, {errors} with errors) on {outcome.where}", markup=False)


def print_policies(docs: list[PolicyDoc], detailed: bool) -> None:
    """One table per policy: its fields (with ``detailed``, the contract first); else one
    line per policy and its field names."""
    if not detailed:
        table = Table(title="policies (pipefill policies NAME for one's fields)",
                      header_style="bold")
        for col in ("policy", "what it does", "fields"):
            table.add_column(col)
        for d in docs:
            table.add_row(d.name, d.summary, ", ".join(f.name for f in d.fields))
        out_console.print(table)
        return
    for d in docs:
        out_console.print(f"{d.name}: {d.summary}", markup=False)
        if d.details:
            out_console.print(d.details, markup=False)
        table = Table(header_style="bold")
        for col in ("field", "type", "default", "allowed", "meaning"):
            table.add_column(col)
        for f in d.fields:
            table.add_row(f.name, f.type, "unset" if f.default is None else str(f.default),
                          f.range, Text(f.description))
        out_console.print(table)


def print_study(res: Any) -> None:
    """The study's question, one row per point (its shown columns), the verdict, and the
    measured key points beside their prediction."""
    from pipefill.sim.study.show import fmt, heading

    spec = res.spec
    out_console.print(f"{spec.name}: {spec.title} (scenario {res.scenario})", markup=False)
    out_console.print(textwrap.fill(spec.question, width=max(60, out_console.width)),
                      markup=False)
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("point", no_wrap=True)
    for col in spec.show:
        head = heading(col).replace(" (", "\n(")
        table.add_column(head, justify="right", min_width=max(map(len, head.split())))
    for row in res.points.rows:
        cells = ["error" if row.get("error") else "-" if row.get(c) is None
                 else fmt(c, row.get(c), unit=False) for c in spec.show]
        table.add_row(row["label"] or row["variant"] or "-", *cells)
    out_console.print(table)
    out_console.print("verdict:", markup=False)
    for line in (c for f in res.findings for c in f.lines):
        out_console.print(textwrap.fill(f"- {line}", width=max(60, out_console.width),
                                        subsequent_indent="  ", break_on_hyphens=False,
                                        break_long_words=False), markup=False)
    if res.explained:
        out_console.print("why, from explain on each key point's simulated trace:",
                          markup=False)
        for e in res.explained:
            out_console.print(textwrap.fill(f"- {e.line()}", width=max(60, out_console.width),
                                            subsequent_indent="  ", break_on_hyphens=False,
                                            break_long_words=False), markup=False)
    if res.measured:
        _print_measured_points(res.measured)


def _print_measured_points(measured: Any) -> None:
    from pipefill.sim.study.show import fmt, show

    first = measured[0]
    out_console.print(f"key points, {first.chunks} chunks, predicted | measured:",
                      markup=False)
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("point", no_wrap=True)
    keys = list(first.predicted)
    for k in keys:
        table.add_column(show(k).label, justify="right", no_wrap=True)
    for m in measured:
        table.add_row(m.label, *(f"{fmt(k, m.predicted.get(k), unit=False)} | "
                                 f"{fmt(k, m.measured.get(k), unit=False)}" for k in keys))
    out_console.print(table)
