"""The scenario model: a complete, validated what-if (run, policy, costs, transport, devices).

Frozen pydantic models only; reading TOML, merging over the default and ``--set`` overrides
live in :mod:`pipefill.sim.scenario.load`, which knows the policy registry. The policy field
is typed by the policy interface (:class:`pipefill.sim.policies.base.Policy`), which itself
refers back to :class:`Scenario` for typing only, so there is no import cycle.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

from pipefill.sim.policies.base import Policy
from pipefill.sim.scenario.costs import CostSpec
from pipefill.sim.scenario.devices import Placement

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


class RunConfig(BaseModel):
    """How long and how the stream runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chunks: int = Field(120, ge=1, description="chunks generated per session")
    warmup: int | Literal["auto"] = Field(
        10, description="chunks excluded from steady-state metrics (>= 0), or \"auto\": "
        "where the transient ends, by MSER-5 on the emit gaps")
    seed: int = Field(0, description="seed of every random draw in the run")
    frames_per_chunk: int = Field(12, ge=1, description="pixel frames per chunk")
    source: Literal["saturated", "realtime"] = Field(
        "saturated", description="saturated: input ready when asked; realtime: arrives at fps_in")
    fps_in: float | None = Field(None, gt=0, description="input frame rate for source = realtime")
    sessions: int = Field(1, ge=1, description="independent streams")
    target_fps: float | None = Field(None, gt=0, description="deadline rate for miss counting")

    @field_validator("warmup")
    @classmethod
    def _warmup(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError("must be >= 0 or \"auto\"")
        return v

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
    # SerializeAsAny: a dump (cache keys, metadata) carries the concrete policy's fields,
    # not only the interface's
    policy: SerializeAsAny[Policy] = Field(description="a registered policy object")
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
