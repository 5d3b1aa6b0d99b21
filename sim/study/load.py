"""Loading studies: a built-in one by name, or a user's TOML file, validated whole.

Every problem is one :class:`StudyError` naming the file and the dotted field
(``mine.toml: rules.0.reach.metric: unknown column 'perod_ms' ...``), raised before any
point runs: the shape by the models of :mod:`pipefill.sim.study.spec`, the columns that
rules, selections, derived columns and figures read by :func:`check_columns`.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipefill.sim.errors import ScenarioError, error_from_validation
from pipefill.sim.policies import POLICIES
from pipefill.sim.study.expr import parse
from pipefill.sim.study.facts import FACTS
from pipefill.sim.study.points import VARIANT
from pipefill.sim.study.spec import StudySpec
from pipefill.traces.metrics import SUMMARY_KEYS
from pipefill.traces.toml_writer import read_toml

BUILTIN = ("fill", "coupling", "sessions", "stream-batch")
#: columns every point's row has besides the summary metrics, facts, axes and derived ones
ROW_COLUMNS = (VARIANT, "label", "chunks", "warmup", "bursty", "aggregate_fps", "engine",
               "error")
#: per-stage and per-queue columns (their names depend on the policy)
ROW_PATTERNS = (re.compile(r"^bubble_\w+$"), re.compile(r"^peak_bytes_\w+$"),
                re.compile(r"^[\w.]+_(mean|max)$"))
#: tables a dotted name in an expression may read from the point's scenario
SCENARIO_TABLES = ("run", "policy", "costs", "transport")


class StudyError(ScenarioError):
    """A bad study file or name: ``source: field: message`` (exit code 2 at the CLI)."""

    def __init__(self, source: str, field: str, message: str) -> None:
        super().__init__(field, message)
        self.args = (f"{source}: {field}: {message}",)
        self.source = source


def builtin_path(name: str) -> Any:
    return resources.files("pipefill.sim.study").joinpath("builtin", f"{name}.toml")


def load_study(name_or_path: str | Path) -> StudySpec:
    """A built-in study by name (``fill``), or a study file (a path ending in .toml)."""
    text = str(name_or_path)
    if text in BUILTIN:
        raw = tomllib.loads(builtin_path(text).read_text(encoding="utf-8"))
        return study_from(raw, text)
    path = Path(text)
    if path.suffix != ".toml" and not path.exists():
        raise StudyError("study", "NAME", f"unknown study {text!r} (built-in: "
                         f"{', '.join(BUILTIN)}; or a study file ending in .toml)")
    try:
        raw = read_toml(path, "study", ScenarioError)
    except ScenarioError as exc:
        message = str(exc).removeprefix("study: ").removeprefix(f"{path.name}: ")
        raise StudyError(path.name, "file", message) from None
    return study_from(raw, path.name)


def study_from(raw: dict[str, Any], source: str = "study") -> StudySpec:
    """Validate a study's tables (module docstring)."""
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        err = error_from_validation(exc)
        raise StudyError(source, err.field, str(err).removeprefix(f"{err.field}: ")) from None
    for field, policy in [("policy", spec.policy),
                          *((f"variants.{i}.policy", v.policy)
                            for i, v in enumerate(spec.variants))]:
        if policy is not None and policy not in POLICIES:
            raise StudyError(source, field, f"unknown policy {policy!r} "
                             f"(allowed: {', '.join(POLICIES)})")
    check_columns(spec, source)
    return spec


def known(spec: StudySpec, column: str, expression: bool = False) -> bool:
    """Whether ``column`` is a column of the study's points (in an expression, also a
    dotted field of the point's scenario)."""
    if column in SUMMARY_KEYS or column in ROW_COLUMNS or column in FACTS:
        return True
    if column in spec.axis_fields() or column in spec.derived_names():
        return True
    if expression and column.split(".")[0] in SCENARIO_TABLES and "." in column:
        return True
    return any(p.match(column) for p in ROW_PATTERNS)


def check_columns(spec: StudySpec, source: str) -> None:
    """Every column a rule, a selection, an expression or a figure reads exists."""
    for field, column, expression in _reads(spec):
        if not known(spec, column, expression):
            raise StudyError(source, field, f"unknown column {column!r} (a metric such as "
                             f"period_ms, a fact ({', '.join(FACTS)}), an axis field or a "
                             f"derived column: {', '.join(spec.derived_names()) or 'none'})")


def _reads(spec: StudySpec) -> list[tuple[str, str, bool]]:
    """(field, column, inside an expression) for everything the study reads."""
    out: list[tuple[str, str, bool]] = []
    for i, v in enumerate(spec.variants):
        out += [(f"variants.{i}.derived.{n}", c, True) for n, t in v.derived.items()
                for c in parse(t).names]
    out += [(f"derived.{n}", c, True) for n, t in spec.derived.items() for c in parse(t).names]
    out += [(f"show.{i}", c, False) for i, c in enumerate(spec.show)]
    for i, rule in enumerate(spec.rules):
        out += [(f"rules.{i}.{field}", c, False) for field, c in rule.reads()]
    for i, fig in enumerate(spec.figures):
        out += [(f"figures.{i}.{k}", c, False) for k in ("metric", "x")
                if (c := getattr(fig, k)) is not None]
        out += [(f"figures.{i}.by.{j}", c, False) for j, c in enumerate(fig.by)]
    return out
