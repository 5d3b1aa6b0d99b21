"""Devices: which device each stage runs on, and how computes that share one slow down.

TOML shape (both tables optional; without them every stage has a device of its own,
named after the stage, exactly as before)::

    [placement]              # stage -> device name
    stage0 = "gpu0"
    stage1 = "gpu0"

    [devices.gpu0]           # how computes that overlap on gpu0 share it
    rate = {2 = 0.55}        # each of 2 concurrent computes runs at 0.55 x its solo speed
    cores = [0]              # CPU replay only: pin the stage threads of gpu0 to these cores
    host = false             # do the stages' dispatch gaps run on the device? (below)

``rate[n]`` is the speed of *each* of ``n`` computes running at once on the device, as a
fraction of its solo speed (processor sharing): 1/n is pure time-sharing (a CPU core),
> 1/n means the device gains throughput from overlap (a GPU filling idle SMs), 1 means
no contention. A level not given defaults to 1/n.

``host``: whether the stages' dispatch gaps (``[dispatch]``: Python, launches,
bookkeeping) run on the device itself. On a CPU device they do: the pinned cores run
the stage threads' Python too, so a gap time-shares the core with the other stages'
computes. A GPU's host thread runs on a CPU, so its gaps overlap with GPU work. Default:
true when ``cores`` is set (a CPU device), false otherwise.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DeviceSpec(BaseModel):
    """One device's contention model (``[devices.<name>]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: dict[int, float] = Field(
        default_factory=dict,
        description="n -> speed of each of n concurrent computes as a fraction of solo speed "
                    "(0 < rate <= 1; n >= 2; a missing level is 1/n, pure time-sharing)")
    cores: list[int] | None = Field(
        None, description="CPU replay: cores the threads of the stages on this device are "
                          "pinned to (default: one core per device, in order of appearance)")

    host: bool | None = Field(
        None, description="whether the stages' dispatch gaps run on this device and share "
                          "it like computes (default: true when cores is set, a CPU device)")

    @property
    def hosts_dispatch(self) -> bool:
        """Whether a dispatch gap on this device is device work (shared like a compute)."""
        return self.host if self.host is not None else self.cores is not None

    @field_validator("rate")
    @classmethod
    def _rates(cls, value: dict[int, float]) -> dict[int, float]:
        for n, r in value.items():
            if n < 2:
                raise ValueError(f"concurrency levels start at 2 (got {n})")
            if not 0 < r <= 1:
                raise ValueError(f"rate[{n}] must be in (0, 1] (got {r!r})")
        return dict(sorted(value.items()))

    @field_validator("cores")
    @classmethod
    def _cores(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0):
            raise ValueError("cores needs at least one core index >= 0")
        return value

    def rate_at(self, n: int) -> float:
        """Speed of each of ``n`` concurrent computes (1.0 alone)."""
        if n <= 1:
            return 1.0
        return self.rate.get(n, 1.0 / n)

    def throughput_at(self, n: int) -> float:
        """Solo-work done per ms with ``n`` computes running: ``n * rate_at(n)``."""
        return n * self.rate_at(n) if n >= 1 else 0.0


class Placement(BaseModel):
    """Stages -> devices, and each named device's contention model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: dict[str, str] = Field(
        default_factory=dict, description="stage -> device name ([placement]); a stage not "
                                          "named runs on a device of its own")
    devices: dict[str, DeviceSpec] = Field(
        default_factory=dict, description="device name -> contention model ([devices])")

    def device_of(self, stage: str) -> str:
        return self.stages.get(stage, stage)

    def spec(self, device: str) -> DeviceSpec:
        return self.devices.get(device) or DeviceSpec()

    def groups(self, stages: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """Device -> the stages placed on it (in stage order)."""
        out: dict[str, list[str]] = {}
        for stage in stages:
            out.setdefault(self.device_of(stage), []).append(stage)
        return {d: tuple(s) for d, s in out.items()}

    def shared(self, stages: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """Only the devices that more than one stage runs on."""
        return {d: s for d, s in self.groups(stages).items() if len(s) > 1}

    @property
    def explicit(self) -> bool:
        """Whether the scenario names any device (CPU replays then pin threads)."""
        return bool(self.stages) or bool(self.devices)
