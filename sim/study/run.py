"""Running a study: each variant's grid through the sweep runner, then the facts, the
derived columns and the verdict.

The points of one variant are one sweep (:func:`pipefill.sim.sweep.run.run_sweep`: the
fast path where the schedule allows it, SimPy elsewhere, on ``workers`` processes). A
point's row is its variant and label, its axis cells, the sweep's metrics, the facts of
:mod:`pipefill.sim.study.facts` and the study's derived columns, in that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipefill.sim.errors import ScenarioError
from pipefill.sim.policies import POLICIES
from pipefill.sim.scenario.load import apply_overrides, build_scenario
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.study.explained import explain_points
from pipefill.sim.study.expr import evaluate_all, parse
from pipefill.sim.study.facts import point_facts
from pipefill.sim.study.points import VARIANT, Dim, Points, point_label
from pipefill.sim.study.result import StudyResult
from pipefill.sim.study.rule import Finding
from pipefill.sim.study.spec import StudySpec, VariantSpec
from pipefill.sim.sweep.executors import ExecSpec
from pipefill.sim.sweep.grid import Axis, grid_points
from pipefill.sim.sweep.run import SweepRequest, run_sweep
from pipefill.traces.toml_writer import toml_value


@dataclass(frozen=True)
class StudyRun:
    """Where a study runs: the scenario's ``raw`` tables and ``name``, the user's ``sets``
    (``--set``), the sweep ``engine``, ``workers`` processes and whether to ``explain``
    the key points."""

    raw: dict[str, Any]
    name: str
    sets: Sequence[str] = ()
    engine: str = "auto"
    workers: int = 1
    #: run ``explain`` on the key points' simulated traces
    explain: bool = True


def run_study(spec: StudySpec, req: StudyRun,
              progress: Callable[[int, int], None] | None = None) -> StudyResult:
    """Every point of ``spec`` on ``req``'s scenario, and the verdict."""
    check_user_sets(spec, req.sets)
    # the scenario's own policy table (the user's sets applied): where `keep` reads from
    base = apply_overrides(req.raw, list(req.sets)).get("policy", {})
    rows: list[dict[str, Any]] = []
    point_sets: list[tuple[str, ...]] = []
    total = sum(len(grid_points(_axes(spec, v))) for v in spec.variants)
    for variant in spec.variants:
        sets = variant_sets(spec, variant, base, req.sets)
        axes = _axes(spec, variant)
        done = run_sweep(SweepRequest(req.raw, req.name, axes, sets,
                                      ExecSpec(workers=req.workers), engine=req.engine))
        table = done.table.to_dict(orient="records")
        for values, metrics in zip(grid_points(axes), table, strict=True):
            full = [*sets, *(f"{k}={toml_value(v)}" for k, v in values.items())]
            rows.append(_row(spec, variant, values, metrics, req, full))
            point_sets.append(tuple(full))
            if progress:
                progress(len(rows), total)
    pts = Points(tuple(rows), dims(spec))
    findings = [rule.judge(pts) for rule in spec.rules]
    stalled = [i for i in range(len(pts)) if pts.failed(i)]
    if stalled:
        first = str(pts.rows[stalled[0]]["error"]).splitlines()[0]
        findings.append(Finding("stall", f"{pts.name(stalled)} cannot run: {first}",
                                tuple(stalled[:1]), False))
    result = StudyResult(spec, req.name, pts, tuple(findings), req.raw, tuple(point_sets))
    if not req.explain:
        return result
    return replace(result, explained=explain_points(result, result.key_points()))


def check_user_sets(spec: StudySpec, sets: Sequence[str]) -> None:
    """Refuse a ``--set`` of a field the study itself sets or varies: every point would
    override it, silently."""
    owned = {a: "varies" for a in spec.axis_fields()}
    owned.update({k: "sets" for v in spec.variants for k in v.sets if k not in owned})
    owned.update({k: "sets" for k in spec.sets if k not in owned})
    for item in sets:
        key = item.partition("=")[0].strip()
        if key in owned:
            raise ScenarioError("--set", f"{key}: study {spec.name} {owned[key]} this field "
                                "at its points (the value would be overridden); drop it "
                                "or write your own study file")


def variant_sets(spec: StudySpec, variant: VariantSpec, base: dict[str, Any],
                 user: Sequence[str]) -> list[str]:
    """The overrides every point of ``variant`` gets (module docstring of spec): the
    user's, the policy switch, the ``keep`` fields the scenario's policy table ``base``
    gives, the study's and the variant's sets."""
    policy = variant.policy or spec.policy
    sets = [*user]
    if policy is not None:
        sets.append(f"policy.name={policy}")
        fields = POLICIES[policy].model_fields
        sets += [f"policy.{f}={toml_value(base[f])}" for f in spec.keep
                 if f in fields and base.get(f) is not None]
    sets += [f"{k}={toml_value(v)}" for k, v in {**spec.sets, **variant.sets}.items()]
    return sets


def dims(spec: StudySpec) -> tuple[Dim, ...]:
    """The variant (when there are several) and every axis, in the study's order."""
    out = [Dim(VARIANT, "variant")] if len(spec.variants) > 1 else []
    seen: dict[str, str] = {}
    for axis in [*spec.axes, *(a for v in spec.variants for a in v.axes)]:
        seen.setdefault(axis.field, axis.name)
    return tuple(out + [Dim(f, label) for f, label in seen.items()])


def _axes(spec: StudySpec, variant: VariantSpec) -> list[Axis]:
    return [Axis(a.field, tuple(a.values)) for a in [*spec.axes, *variant.axes]]


def _row(spec: StudySpec, variant: VariantSpec, values: dict[str, Any],
         metrics: dict[str, Any], req: StudyRun, sets: list[str]) -> dict[str, Any]:
    sc = build_scenario(apply_overrides(req.raw, sets), name=req.name)
    names = {a.field: a.name for a in [*spec.axes, *variant.axes]}
    row: dict[str, Any] = {VARIANT: variant.label,
                           "label": point_label(variant.label if len(spec.variants) > 1
                                                else "", [(names[k], v)
                                                          for k, v in values.items()]),
                           **values}
    row.update({k: _plain(v) for k, v in metrics.items() if k not in row})
    row.update(point_facts(sc, row))
    exprs = {n: parse(t) for n, t in {**variant.derived, **spec.derived}.items()}
    row.update(evaluate_all(exprs, row, lambda name: scenario_field(sc, name)))
    return row


def scenario_field(sc: Scenario, name: str) -> Any:
    """A dotted field of the point's scenario (``policy.items``, ``costs.denoise.mean``),
    with the policy's defaults filled in; None when it has no such field."""
    table, _, rest = name.partition(".")
    if table == "policy":
        return sc.policy.params().get(rest)
    node: Any = {"run": sc.run, "costs": sc.costs, "transport": sc.transport}.get(table)
    for part in rest.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
    return node


def _plain(value: Any) -> Any:
    """A table cell as a plain Python value: numpy scalars unwrapped, NaN as None."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value
