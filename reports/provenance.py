"""How an input was produced, and how to produce it again: metadata tables and commands.

The scenario travels in every trace's metadata as raw tables;
:func:`pipefill.traces.toml_writer.to_toml` turns them back into a scenario file, so the
report can show the exact command to re-run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipefill.reports.inputs import Run, Sweep
from pipefill.traces.toml_writer import toml_value

#: metadata keys shown under "how it was produced", in order, with their labels
PRODUCED_BY: dict[str, str] = {
    "source": "source", "backend": "backend", "device": "device", "seed": "seed",
    "scenario_name": "scenario", "git_revision": "git revision",
    "format_version": "trace format",
}
#: trace source -> the command that makes such a trace from a scenario file
RERUN: dict[str, str] = {"sim": "pipefill simulate", "exec": "pipefill replay"}


def produced_by(meta: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(label, str(meta[k])) for k, label in PRODUCED_BY.items() if k in meta]
    versions = meta.get("versions")
    if isinstance(versions, dict):
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
    return rows


def rerun_command(run: Run) -> str | None:
    cmd = RERUN.get(run.trace.source)
    if cmd is None or not run.trace.meta.get("scenario"):
        return None
    return f"{cmd} scenario.toml --out {run.path.name}"


def sweep_command(sweep: Sweep) -> str:
    grid = sweep.meta.get("grid") or {a: _values(sweep, a) for a in sweep.axes}
    parts = ["pipefill sweep scenario.toml"]
    parts += [f"--grid {k}={','.join(toml_value(x) for x in v)}" for k, v in grid.items()]
    parts += [f"--set '{s}'" for s in sweep.meta.get("sets", [])]
    return " ".join([*parts, f"--out {sweep.path.name}"])


def _values(sweep: Sweep, axis: str) -> list[Any]:
    return list(dict.fromkeys(sweep.table[axis].tolist()))


def report_command(paths: list[Path], out: Path, bound_ms: float | None, window: int) -> str:
    cmd = ["pipefill report", *(str(p) for p in paths), f"--out {out}"]
    if bound_ms is not None:
        cmd.append(f"--bound {bound_ms:g}")
    cmd.append(f"--window {window}")
    return " ".join(cmd)
