"""Scenarios: a TOML file (or the built-in default) validated into frozen models.

Tables: ``[run]``, ``[policy]`` (``name`` plus that policy's fields), ``[costs.<phase>]``,
``[transport]`` and optionally ``[placement]`` + ``[devices.<name>]`` (stages that share a
device; see :mod:`pipefill.sim.scenario.devices`) and ``[dispatch]`` (stage = ms each compute call
spends before its span: launch and bookkeeping, the gap between a stage's spans). Any
field can be overridden with ``--set table.field=value`` (values parsed as TOML, so
``2``, ``1.5``, ``"x"``, ``[3, 7]`` and ``true`` work).
Every validation failure becomes a :class:`ScenarioError` naming the dotted field.

A scenario file may give only some tables: it is merged over the built-in default
(:func:`merge_over_default`). Setting ``policy.name`` to another policy switches to it
with its own defaults, keeping only the policy fields set with ``--set``.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipefill.sim.errors import ScenarioError, error_from_validation
from pipefill.sim.policies import make_policy, shared_fields
from pipefill.sim.scenario.costs import PHASES, CostSpec
from pipefill.sim.scenario.devices import DeviceSpec, Placement
from pipefill.sim.scenario.model import RunConfig, Scenario, Transport
from pipefill.traces.toml_writer import read_toml


def default_scenario_text() -> str:
    text = resources.files("pipefill.sim.scenario").joinpath("default_scenario.toml")
    return text.read_text(encoding="utf-8")


def parse_value(text: str) -> Any:
    """Parse an override value as TOML; fall back to the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """Turn ``costs.decode = 120`` into a table so ``--set costs.decode.cv=0.1`` can extend it."""
    costs = raw.get("costs")
    if isinstance(costs, dict):
        for phase, spec in costs.items():
            if isinstance(spec, int | float) and not isinstance(spec, bool):
                costs[phase] = {"mean": float(spec)}
    return raw


def _parse_set(item: str) -> tuple[list[str], Any]:
    key, sep, value = item.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not sep or not path:
        raise ScenarioError("--set", f"{item!r} is not of the form table.field=value")
    return path, parse_value(value.strip())


def _assign(out: dict[str, Any], path: list[str], value: Any) -> None:
    node = out
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ScenarioError(".".join(path), f"{part!r} is not a table")
        node = child
    node[path[-1]] = value


def apply_overrides(raw: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` applied, in order.

    ``policy.name=OTHER`` (another policy than the current one) replaces the policy
    table by ``{name: OTHER}``, the fields both policies have at the old policy's values
    (:func:`pipefill.sim.policies.shared_fields`: "serial vs phase_pp" keeps
    ``recompute``), and the ``policy.*`` fields given in ``sets`` (before or after it);
    the old policy's other fields do not carry over, the new one's defaults apply.
    """
    out = _normalize(copy.deepcopy(raw))
    explicit: dict[str, Any] = {}
    for item in sets:
        path, value = _parse_set(item)
        if path == ["policy", "name"]:
            current = out.get("policy")
            named = current.get("name") if isinstance(current, dict) else None
            if named is not None and named != value:  # a table without a name just gets one
                out["policy"] = {"name": value, **shared_fields(current, value),
                                 **copy.deepcopy(explicit)}
                continue
        if path[0] == "policy" and len(path) == 2 and path[1] != "name":
            explicit[path[1]] = value
        _assign(out, path, value)
    return out


def merge_over_default(raw: dict[str, Any]) -> dict[str, Any]:
    """A partial scenario completed from the built-in default.

    A table the file gives replaces the default's (a cost model or a transport is one
    description; a named ``[policy]`` is that policy with its own defaults, as when
    switching with ``--set policy.name``), except a ``[policy]`` without a name, whose
    fields are merged into the default's policy. Tables left out come from the default.
    """
    default = tomllib.loads(default_scenario_text())
    default.pop("name", None)  # a file is named after itself
    merged = {**default, **copy.deepcopy(raw)}
    policy = raw.get("policy")
    if isinstance(policy, dict) and "name" not in policy:
        merged["policy"] = {**default["policy"], **copy.deepcopy(policy)}
    return merged


def build_scenario(raw: dict[str, Any], name: str = "scenario") -> Scenario:
    """Validate raw tables into a Scenario (policy resolved through the registry)."""
    raw = _normalize(copy.deepcopy(raw))
    unknown = set(raw) - {"run", "policy", "costs", "transport", "name", "placement", "devices",
                          "dispatch"}
    if unknown:
        raise ScenarioError(sorted(unknown)[0], "unknown table (use run, policy, costs, "
                            "transport, placement, devices, dispatch)")
    costs_raw = raw.get("costs")
    if not isinstance(costs_raw, dict) or not costs_raw:
        raise ScenarioError("costs", "missing: give [costs.<phase>] for the policy's phases")
    for phase in costs_raw:
        if phase not in PHASES:
            raise ScenarioError(f"costs.{phase}", f"unknown phase (allowed: {', '.join(PHASES)})")
    try:
        run = RunConfig.model_validate(raw.get("run", {}))
        costs = {p: CostSpec.model_validate(s) for p, s in costs_raw.items()}
        transport = Transport.model_validate(raw.get("transport", {}))
    except ValidationError as exc:
        table = _which_table(exc, raw)
        raise error_from_validation(exc, table) from None
    policy = make_policy(raw.get("policy", {}))
    placement = build_placement(raw.get("placement", {}), raw.get("devices", {}))
    dispatch = build_dispatch(raw.get("dispatch", {}))
    sc = Scenario(name=str(raw.get("name", name)), run=run, policy=policy, costs=costs,
                  transport=transport, placement=placement, dispatch=dispatch, raw=raw)
    policy.check(sc)
    _check_placement(sc)
    for stage in sc.dispatch:
        if stage not in sc.stage_names:
            raise ScenarioError(f"dispatch.{stage}", f"unknown stage (policy {sc.policy.name} "
                                f"runs {', '.join(sc.stage_names)})")
    return sc


def build_dispatch(table: Any) -> dict[str, float]:
    """Validate ``[dispatch]``: stage = ms (a finite number >= 0)."""
    if not isinstance(table, dict):
        raise ScenarioError("dispatch", "must be a table of stage = ms")
    out = {}
    for stage, ms in table.items():
        ok = isinstance(ms, int | float) and not isinstance(ms, bool) and 0 <= ms < float("inf")
        if not ok:
            raise ScenarioError(f"dispatch.{stage}", f"must be a number of ms >= 0 (got {ms!r})")
        out[str(stage)] = float(ms)
    return out


def build_placement(stages: Any, devices: Any) -> Placement:
    """Validate ``[placement]`` (stage -> device name) and ``[devices.<name>]``."""
    if not isinstance(stages, dict):
        raise ScenarioError("placement", "must be a table of stage = \"device\"")
    for stage, dev in stages.items():
        if not isinstance(dev, str) or not dev:
            raise ScenarioError(f"placement.{stage}", f"must be a device name (got {dev!r})")
    if not isinstance(devices, dict):
        raise ScenarioError("devices", "must be a table of [devices.<name>] tables")
    specs = {}
    for dev, table in devices.items():
        try:
            specs[dev] = DeviceSpec.model_validate(table)
        except ValidationError as exc:
            raise error_from_validation(exc, f"devices.{dev}") from None
    return Placement(stages=dict(stages), devices=specs)


def _check_placement(sc: Scenario) -> None:
    stages = sc.stage_names
    for stage in sc.placement.stages:
        if stage not in stages:
            raise ScenarioError(f"placement.{stage}", f"unknown stage (policy {sc.policy.name} "
                                f"runs {', '.join(stages)})")
    used = {sc.placement.device_of(s) for s in stages}
    for dev in sc.placement.devices:
        if dev not in used:
            raise ScenarioError(f"devices.{dev}", "no stage is placed on it (name it in "
                                "[placement])")


def _which_table(exc: ValidationError, raw: dict[str, Any]) -> str:
    title = exc.title
    if title == "RunConfig":
        return "run"
    if title == "Transport":
        return "transport"
    for phase, spec in raw.get("costs", {}).items():
        try:
            CostSpec.model_validate(spec)
        except ValidationError:
            return f"costs.{phase}"
    return "costs"


def with_policy(policy: str | None, sets: Sequence[str] | None) -> list[str]:
    """``sets`` with a policy switch first (``policy.name=NAME``, as ``--policy``)."""
    return [*([f"policy.name={policy}"] if policy else []), *(sets or [])]


def load_raw(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """Read a scenario file (or the built-in default) into raw tables and a name."""
    if path is None:
        return tomllib.loads(default_scenario_text()), "default"
    return merge_over_default(read_toml(path, "scenario", ScenarioError)), Path(path).stem


def check_window(run: RunConfig) -> None:
    """Refuse a warm-up that leaves no steady-state window (every metric would be
    missing). Checked where a user's scenario comes in (files, ``--set``, sweep points),
    not by :func:`build_scenario`, so tests may still build runs of a chunk or two."""
    if run.warmup != "auto" and run.warmup >= run.chunks:
        raise ScenarioError("run.warmup", f"{run.warmup} leaves no steady-state window in a "
                            f"run of {run.chunks} chunks (it must be below run.chunks: "
                            "--set run.warmup=N)")
    if run.chunks < 2:
        raise ScenarioError("run.chunks", f"{run.chunks} chunk has no steady-state window "
                            "(a period is the gap between two emits: give at least 2)")


def load_scenario(path: str | Path | None = None, sets: list[str] | None = None) -> Scenario:
    """A user's scenario: the file (or the default) with ``sets`` applied, validated."""
    raw, name = load_raw(path)
    sc = build_scenario(apply_overrides(raw, list(sets or [])), name=name)
    check_window(sc.run)
    return sc
