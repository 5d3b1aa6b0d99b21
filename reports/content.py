"""The report's text sections: notices, metrics, scenario and policy, provenance.

Each function returns HTML blocks (via :mod:`pipefill.reports.html`) for one section; the
figures are added by :mod:`pipefill.reports.build`.
"""

from __future__ import annotations

from typing import Any

from pipefill.reports import html as h
from pipefill.reports.inputs import ReportInput, Run, Sweep
from pipefill.reports.provenance import produced_by, rerun_command, sweep_command
from pipefill.reports.series import dropped
from pipefill.traces.metrics import SUMMARY_KEYS
from pipefill.traces.toml_writer import to_toml

#: cost-model fields shown per phase (others appear in the scenario TOML)
COST_FIELDS = ("dist", "mean", "cv", "low", "high", "steps", "drift_ms")
#: sweep columns listed after the axes in the sweep table
SWEEP_COLUMNS = ("period_ms", "fps", "overlap_score", "ttff_ms", "latency_p95_ms",
                 "peak_bytes_in_flight")
MAX_SWEEP_ROWS = 200


def cut_notice(run: Run) -> str | None:
    """One line naming every hard cut and dropped result of a run (None when it has none)."""
    cuts = run.trace.marks("hard_cut")
    drops = dropped(run.trace)
    if cuts.empty and drops.empty:
        return None
    parts = [f"hard cut before chunk {int(c)} (epoch -> {int(e)}) at {t:,.1f} ms"
             for c, e, t in zip(cuts["chunk"], cuts["epoch"], cuts["start_ms"], strict=True)]
    if not drops.empty:
        parts.append(f"{len(drops)} dropped result(s): chunks "
                     + ", ".join(str(int(c)) for c in drops["chunk"]))
    return f"{run.label}: " + "; ".join(parts) + ". Marked in the Gantt, period and queue figures."


def notices(ri: ReportInput) -> list[str]:
    lines = [n for n in (cut_notice(r) for r in ri.runs) if n]
    return [h.para(line, "notice") for line in lines]


def _metric_rows(runs: list[Run]) -> list[list[Any]]:
    rows = []
    stages = sorted({s for r in runs for s in r.metrics.get("bubble", {})})
    keys = [*SUMMARY_KEYS, *(f"bubble {s}" for s in stages), "chunks", "drops", "hard_cuts"]
    for key in keys:
        values = [_metric(r.metrics, key) for r in runs]
        notes = sorted({r.metrics.get("missing", {}).get(key) or r.metrics.get("notes", {}).get(key)
                        or "" for r in runs} - {""})
        row: list[Any] = [key, *values]
        if len(runs) == 2:
            a, b = values
            num = isinstance(a, int | float) and isinstance(b, int | float)
            row.append(b - a if num else None)
            row.append(f"{(b - a) / a:+.1%}" if num and a else "")
        rows.append([*row, "; ".join(notes)])
    return rows


def _metric(metrics: dict[str, Any], key: str) -> Any:
    if key.startswith("bubble "):
        return metrics.get("bubble", {}).get(key.split(" ", 1)[1])
    return metrics.get(key)


def metrics_section(ri: ReportInput) -> str:
    runs = ri.runs
    headers = ["metric", *(r.label for r in runs)]
    if len(runs) == 2:
        headers += ["measured - predicted", "relative"]
    win = runs[0].metrics.get("window", {})
    note = (f"Steady-state window: chunks {win.get('first_chunk')}..{win.get('last_chunk')}, "
            f"{win.get('periods', 0)} periods after a warm-up of {win.get('warmup')} chunks. "
            "A metric that cannot be computed is shown as missing, with the reason.")
    return h.section("Metrics", h.para(note), h.table([*headers, "note"], _metric_rows(runs)))


def _setting(v: Any) -> Any:
    """A configuration value for display: an unset field is 'not set', not 'missing'."""
    if v is None:
        return "not set"
    return str(v) if isinstance(v, list | dict) else v


def _kv(d: dict[str, Any]) -> str:
    return h.table(["field", "value"], [[k, _setting(v)] for k, v in d.items()])


def scenario_blocks(meta: dict[str, Any]) -> list[str]:
    policy = meta.get("policy") or meta.get("scenario", {}).get("policy", {})
    costs = meta.get("costs") or meta.get("scenario", {}).get("costs", {})
    blocks = [f"<h3>Policy: {h.esc(policy.get('name', 'unknown'))}</h3>", _kv(policy)]
    if costs:
        rows = [[p, *(_setting(c.get(f)) if isinstance(c, dict) else c for f in COST_FIELDS)]
                for p, c in costs.items()]
        blocks += ["<h3>Cost model (ms)</h3>", h.table(["phase", *COST_FIELDS], rows)]
    for key in ("run", "transport"):
        table = meta.get(key) or meta.get("scenario", {}).get(key)
        if table:
            blocks += [f"<h3>{key.title()}</h3>", _kv(table)]
    return blocks


def scenario_section(ri: ReportInput) -> str:
    if ri.sweep is not None:
        return h.section("Scenario and policy (base of the sweep)",
                         *scenario_blocks(ri.sweep.meta))
    metas = [r.trace.meta for r in ri.runs]
    same = all(m.get("scenario") == metas[0].get("scenario") for m in metas)
    blocks = []
    for run in ri.runs[: 1 if same else None]:
        title = "both runs" if same and len(ri.runs) > 1 else run.label
        blocks += [f"<h3>{h.esc(title)}</h3>", *scenario_blocks(run.trace.meta)]
    return h.section("Scenario and policy", *blocks)


def _scenario_toml(meta: dict[str, Any]) -> str:
    raw = meta.get("scenario")
    if not isinstance(raw, dict) or not raw:
        return h.para("The input carries no scenario tables.", "missing")
    return ("<details><summary>scenario.toml (from the input's metadata)</summary>"
            + h.pre(to_toml(raw)) + "</details>")


def produced_section(ri: ReportInput, report_cmd: str) -> str:
    blocks = []
    if ri.sweep is not None:
        blocks += [f"<h3>{h.esc(ri.sweep.path.name)}</h3>",
                   h.para("Re-run the sweep with:"), h.pre(sweep_command(ri.sweep)),
                   _scenario_toml(ri.sweep.meta)]
    for run in ri.runs:
        cmd = rerun_command(run)
        blocks += [f"<h3>{h.esc(run.label)}</h3>",
                   h.table(["field", "value"], produced_by(run.trace.meta))]
        if cmd:
            blocks += [h.para("Re-run with:"), h.pre(cmd)]
        blocks.append(_scenario_toml(run.trace.meta))
    blocks += [h.para("This report was made with:"), h.pre(report_cmd)]
    return h.section("How it was produced", *blocks)


def sweep_section(sweep: Sweep) -> str:
    t = sweep.table
    cols = [*sweep.axes, *(c for c in SWEEP_COLUMNS if c in t.columns),
            *sorted(c for c in t.columns if c.startswith("bubble_")), "error"]
    cols = [c for c in cols if c in t.columns]
    shown = t.head(MAX_SWEEP_ROWS)
    rows = [[_clean(v, c) for v, c in zip(rec, cols, strict=True)]
            for rec in shown[cols].itertuples(index=False)]
    grid = "; ".join(f"{a} = {', '.join(str(v) for v in dict.fromkeys(t[a].tolist()))}"
                     for a in sweep.axes)
    note = f"{len(t)} grid points ({grid})."
    if len(t) > MAX_SWEEP_ROWS:
        note += f" The first {MAX_SWEEP_ROWS} rows are listed."
    return h.section("Sweep table", h.para(note), h.table(cols, rows))


def _clean(v: Any, column: str) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:
        v = None
    if column == "error" and v is None:
        return ""  # no error is not a missing value
    return v
