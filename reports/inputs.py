"""What a report is made from: one trace, a predicted/measured pair, or one sweep table.

A file is a *sweep table* when its metadata says ``kind = "sweep"`` (what ``pipefill
sweep`` writes); it is a *trace* when it has the trace columns; anything else is
rejected with a :class:`ReportError` naming the file, before any output is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipefill.traces.io import MEASURED_SOURCES, read_table
from pipefill.traces.measured import check_measured
from pipefill.traces.metrics import compute_metrics
from pipefill.traces.schema import COLUMNS, Trace, TraceError, validate

#: trace source -> its role in a report (a simulated trace predicts, an executed one measures)
SOURCE_ROLES: dict[str, str] = {"sim": "predicted", "exec": "measured", "probe": "measured",
                                "import": "measured"}
#: roles of a pair in order when the sources do not decide it
PAIR_ROLES = ("predicted", "measured")


class ReportError(TraceError):
    """Bad report input or output location; ``field`` names the argument or file."""


@dataclass
class Run:
    """One trace in a report, with its role (``predicted``/``measured``) and its metrics."""

    path: Path
    trace: Trace
    role: str
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.role} ({self.path.name})"


@dataclass
class Sweep:
    """A sweep table: one row per grid point, axis columns first (:mod:`pipefill.sim.sweep`)."""

    path: Path
    table: pd.DataFrame
    meta: dict[str, Any]
    axes: list[str]


@dataclass
class ReportInput:
    """The classified inputs: ``kind`` is ``trace``, ``pair`` or ``sweep``."""

    kind: str
    runs: list[Run] = field(default_factory=list)
    sweep: Sweep | None = None

    @property
    def paths(self) -> list[Path]:
        return [r.path for r in self.runs] if self.sweep is None else [self.sweep.path]


def _sweep_axes(df: pd.DataFrame, meta: dict[str, Any], path: Path) -> list[str]:
    grid = meta.get("grid")
    axes = list(grid) if isinstance(grid, dict) else []
    if not axes and "period_ms" in df.columns:
        axes = list(df.columns[: list(df.columns).index("period_ms")])
    missing = [a for a in axes if a not in df.columns]
    if not axes or missing:
        raise ReportError(str(path), f"sweep table without its grid axis column "
                          f"{(missing or ['(none)'])[0]!r}")
    if "period_ms" not in df.columns:
        raise ReportError(str(path), "sweep table without a period_ms column")
    return axes


#: an empty axis cell: the axis is not a field of that point's policy (ignored there)
NOT_APPLICABLE = "n/a"


def _axis_cells(df: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Axis columns as the grid gave them: an empty cell becomes NOT_APPLICABLE and the
    integers a null turned into floats (Parquet, CSV) are integers again."""
    df = df.copy()
    for axis in axes:
        col = df[axis]
        if not col.isna().any():
            continue
        df[axis] = [NOT_APPLICABLE if pd.isna(v) else
                    int(v) if isinstance(v, float) and v.is_integer() else v for v in col]
    return df


def load_one(path: Path) -> Run | Sweep:
    """Read and classify one input file."""
    df, meta = read_table(path)
    if meta.get("kind") == "sweep":
        axes = _sweep_axes(df, meta, path)
        return Sweep(path, _axis_cells(df, axes), meta, axes)
    if not set(COLUMNS) <= set(df.columns):
        raise ReportError(str(path), "neither a trace (columns " + ", ".join(COLUMNS)
                          + ") nor a sweep table (metadata kind = 'sweep')")
    trace = Trace(validate(df), meta)
    if trace.source in MEASURED_SOURCES:
        check_measured(trace)
    if trace.spans.empty:
        raise ReportError(str(path), "the trace has no spans: nothing to report")
    return Run(path, trace, SOURCE_ROLES.get(trace.source, "predicted"))


def _assign_roles(runs: list[Run]) -> list[Run]:
    """Predicted first: by source when the two differ, else in the order given."""
    sources = [r.trace.source for r in runs]
    if len(set(sources)) == 2 and set(sources) <= set(SOURCE_ROLES):
        runs = sorted(runs, key=lambda r: list(SOURCE_ROLES).index(r.trace.source))
    for run, role in zip(runs, PAIR_ROLES, strict=True):
        run.role = role
    return runs


def load_inputs(paths: list[Path]) -> ReportInput:
    """Classify ``paths``: one trace, two traces (a pair) or one sweep table."""
    if not paths:
        raise ReportError("INPUT", "give a trace, a predicted/measured pair or a sweep table")
    loaded = [load_one(Path(p)) for p in paths]
    sweeps = [x for x in loaded if isinstance(x, Sweep)]
    runs = [x for x in loaded if isinstance(x, Run)]
    if sweeps and (len(sweeps) > 1 or runs):
        raise ReportError("INPUT", "a sweep table is reported on its own (got "
                          f"{len(sweeps)} sweep table(s) and {len(runs)} trace(s))")
    if sweeps:
        return ReportInput("sweep", sweep=sweeps[0])
    if len(runs) > 2:
        raise ReportError("INPUT", f"{len(runs)} traces: give one trace or a "
                          "predicted/measured pair")
    if len(runs) == 2:
        runs = _assign_roles(runs)
    for run in runs:
        run.metrics = compute_metrics(run.trace)
    return ReportInput("trace" if len(runs) == 1 else "pair", runs=runs)
