"""One section of a scenario resolved on its own: what a sweep plans points by.

A section is a top-level part of a :class:`~pipefill.sim.scenario.model.Scenario`
(``run``, ``policy``, ``costs``, ``transport``, ``placement`` with its ``devices``,
``dispatch``) and the raw tables that make it. :func:`resolve` applies overrides to those
tables only and validates the section alone (the checks that span sections, such as the
phases a policy needs, are the whole scenario's); :func:`dump` is the section's resolved
form, the same as that section of the whole scenario's dump, which
:func:`pipefill.sim.sweep.store.section_hashes` hashes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from pipefill.sim.errors import ScenarioError, error_from_validation
from pipefill.sim.policies import make_policy
from pipefill.sim.scenario.costs import PHASES, CostSpec
from pipefill.sim.scenario.load import apply_overrides, build_dispatch, build_placement
from pipefill.sim.scenario.model import RunConfig, Scenario, Transport

#: the sections, in key order
SECTIONS = ("run", "policy", "costs", "transport", "placement", "dispatch")
#: raw tables -> the section they make (a ``--grid`` field's first name)
SECTION_OF = {"devices": "placement", "name": "run"}
#: section -> the raw tables it is made of
TABLES = {"placement": ("placement", "devices")}


def section_of(field: str) -> str:
    first = field.split(".")[0]
    return SECTION_OF.get(first, first)


def _validated(model: Any, table: str, raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error_from_validation(exc, table) from None


def _costs(raw: dict[str, Any]) -> dict[str, CostSpec]:
    table = raw.get("costs")
    if not isinstance(table, dict) or not table:
        raise ScenarioError("costs", "missing: give [costs.<phase>] for the policy's phases")
    out = {}
    for phase, spec in table.items():
        if phase not in PHASES:
            raise ScenarioError(f"costs.{phase}", f"unknown phase (allowed: {', '.join(PHASES)})")
        out[phase] = _validated(CostSpec, f"costs.{phase}",
                                {"mean": float(spec)} if isinstance(spec, int | float)
                                and not isinstance(spec, bool) else spec)
    return out


#: section -> its value from the (overridden) raw tables, validated on its own
BUILDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "run": lambda raw: _validated(RunConfig, "run", raw.get("run", {})),
    "policy": lambda raw: make_policy(raw.get("policy", {})),
    "costs": _costs,
    "transport": lambda raw: _validated(Transport, "transport", raw.get("transport", {})),
    "placement": lambda raw: build_placement(raw.get("placement", {}), raw.get("devices", {})),
    "dispatch": lambda raw: build_dispatch(raw.get("dispatch", {})),
}


def resolve(section: str, raw: dict[str, Any], sets: list[str]) -> Any:
    """The section's value with ``sets`` applied to its tables (other sets ignored)."""
    tables = TABLES.get(section, (section,))
    mine = [s for s in sets if section_of(s.partition("=")[0]) == section]
    sub = apply_overrides({t: raw[t] for t in tables if t in raw}, mine)
    return BUILDERS[section](sub)


def dump(section: str, value: Any) -> Any:
    """The section's resolved form, as in the whole scenario's JSON dump."""
    if section == "policy":
        return value.params()
    if section == "costs":
        return {p: spec.model_dump(mode="json") for p, spec in value.items()}
    if section == "dispatch":
        return dict(value)
    return value.model_dump(mode="json")


def dumps_of(sc: Scenario) -> dict[str, Any]:
    """Every section of a whole scenario in its resolved form."""
    return {s: dump(s, getattr(sc, s)) for s in SECTIONS}
