"""Scenarios: a TOML file (or the built-in default) validated into frozen models.

Tables: ``[run]``, ``[policy]`` (``name`` plus that policy's fields), ``[costs.<phase>]``,
``[transport]`` and optionally ``[placement]`` + ``[devices.<name>]`` (stages that share a
device; see :mod:`pipefill.sim.devices`) and ``[dispatch]`` (stage = ms each compute call
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
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipefill.sim.costs import PHASES, CostSpec
from pipefill.sim.devices import DeviceSpec, Placement
from pipefill.sim.errors import ScenarioError, error_from_validation
from pipefill.sim.policies import make_policy, shared_fields
from pipefill.traces.toml_writer import read_toml

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


class RunConfig(BaseModel):
    """How long and how the stream runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chunks: int = Field(120, ge=1, description="chunks generated per session")
    warmup: int = Field(10, ge=0, description="chunks excluded from steady-state metrics")
    seed: int = Field(0, description="seed of every random draw in the run")
    frames_per_chunk: int = Field(12, ge=1, description="pixel frames per chunk")
    source: Literal["saturated", "realtime"] = Field(
        "saturated", description="saturated: input ready when asked; realtime: arrives at fps_in")
    fps_in: float | None = Field(None, gt=0, description="input frame rate for source = realtime")
    sessions: int = Field(1, ge=1, description="independent streams")
    target_fps: float | None = Field(None, gt=0, description="deadline rate for miss counting")

    @model_validator(mode="after")
    def _realtime(self) -> RunConfig:
        if self.source == "realtime" and self.fps_in is None:
            raise ValueError("fps_in is required when source = 'realtime'")
        return self

    def input_time_ms(self, chunk: int) -> float:
        """When chunk's input is complete (realtime); 0 for a saturated source."""
        if self.source == "saturated" or self.fps_in is None:
            return 0.0
        return (chunk + 1) * self.frames_per_chunk * 1000.0 / self.fps_in


class Transport(BaseModel):
    """Messages between stages: time = latency_ms + bytes / bandwidth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float = Field(0.05, ge=0, description="per-message latency")
    bandwidth_gbps: float = Field(25.0, gt=0, description="link bandwidth, GB/s (1e9 bytes/s)")
    dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8"] = Field(
        "bf16", description="element type for *_shape sizes")
    envelope_bytes: int | None = Field(None, ge=0, description="bytes of one envelope")
    envelope_shape: list[int] | None = Field(None, description="envelope tensor shape")
    result_bytes: int | None = Field(None, ge=0, description="bytes of one result")
    result_shape: list[int] | None = Field(None, description="result tensor shape")
    context_bytes: int = Field(0, ge=0, description="extra bytes of an r0a envelope")

    def _size(self, nbytes: int | None, shape: list[int] | None) -> int:
        if nbytes is not None:
            return nbytes
        if shape is None:
            return 0
        size = DTYPE_BYTES[self.dtype]
        for dim in shape:
            size *= dim
        return size

    @property
    def envelope_size(self) -> int:
        return self._size(self.envelope_bytes, self.envelope_shape)

    @property
    def result_size(self) -> int:
        return self._size(self.result_bytes, self.result_shape)

    def time_ms(self, nbytes: int) -> float:
        return self.latency_ms + nbytes / (self.bandwidth_gbps * 1e6)


class Scenario(BaseModel):
    """A complete, validated what-if: run, policy, cost model, transport.

    ``raw`` keeps the (overridden) input tables so a trace's metadata can re-create it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field("scenario", description="label carried into traces and reports")
    run: RunConfig = Field(default_factory=RunConfig)
    policy: Any = Field(description="a registered policy object")
    costs: dict[str, CostSpec]
    transport: Transport = Field(default_factory=Transport)
    placement: Placement = Field(default_factory=Placement,
                                 description="stage -> device and contention per device")
    dispatch: dict[str, float] = Field(
        default_factory=dict, description="stage -> ms it spends before each compute call "
        "(launch, bookkeeping): the simulator adds it before the span; executors spend it")
    raw: dict[str, Any] = Field(default_factory=dict, description="source tables")

    def cost(self, phase: str) -> CostSpec | None:
        return self.costs.get(phase)

    def dispatch_ms(self, stage: str) -> float:
        """The stage's time before each compute call (0 unless ``[dispatch]`` gives it)."""
        return self.dispatch.get(stage, 0.0)

    @property
    def steps(self) -> int:
        spec = self.costs.get("denoise")
        return spec.steps if spec else 1

    @property
    def deterministic(self) -> bool:
        return all(spec.deterministic for spec in self.costs.values())

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(self.policy.stages(self))

    def shared_devices(self) -> dict[str, tuple[str, ...]]:
        """Device -> its stages, for every device more than one stage runs on."""
        return self.placement.shared(self.stage_names)

    @property
    def has_shared_device(self) -> bool:
        """Two stages share a device: their computes contend, so the timing decides the
        order (not a fixed-order event graph; no fast path, the bound is a range)."""
        return bool(self.shared_devices())


def default_scenario_text() -> str:
    text = resources.files("pipefill.sim").joinpath("default_scenario.toml")
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


def load_raw(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """Read a scenario file (or the built-in default) into raw tables and a name."""
    if path is None:
        return tomllib.loads(default_scenario_text()), "default"
    return merge_over_default(read_toml(path, "scenario", ScenarioError)), Path(path).stem


def check_window(run: RunConfig) -> None:
    """Refuse a warm-up that leaves no steady-state window (every metric would be
    missing). Checked where a user's scenario comes in (files, ``--set``, sweep points),
    not by :func:`build_scenario`, so tests may still build runs of a chunk or two."""
    if run.warmup >= run.chunks:
        raise ScenarioError("run.warmup", f"{run.warmup} leaves no steady-state window in a "
                            f"run of {run.chunks} chunks (it must be below run.chunks)")


def load_scenario(path: str | Path | None = None, sets: list[str] | None = None) -> Scenario:
    """A user's scenario: the file (or the default) with ``sets`` applied, validated."""
    raw, name = load_raw(path)
    sc = build_scenario(apply_overrides(raw, list(sets or [])), name=name)
    check_window(sc.run)
    return sc
