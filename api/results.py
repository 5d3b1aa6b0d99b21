"""What the Python API returns: typed results with a ``to_json()`` form (the objects the
CLI renders), for runs whose own library types do not already have one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from pipefill.sim.scenario.model import Scenario
    from pipefill.sim.sweep.grid import BestPick
    from pipefill.traces.schema import Trace


def _events(trace: Trace | None, what: str) -> pd.DataFrame:
    if trace is None:
        raise ValueError(f"this {what} kept no trace (it was streamed to a file only)")
    return trace.events


@dataclass(frozen=True)
class Simulation:
    """One simulated run. ``metrics`` follow DESIGN.md (a metric that cannot be computed
    is absent and named in ``metrics["missing"]`` with its reason); ``engine`` is the one
    that ran it (``fast`` or ``simpy``); ``trace`` is None when it was only streamed to
    ``out`` (``simulate(..., keep_trace=False)``)."""

    scenario: Scenario
    engine: str
    metrics: dict[str, Any]
    trace: Trace | None = None
    out: Path | None = None

    @property
    def events(self) -> pd.DataFrame:
        """The trace as a DataFrame, one row per event (the trace format's columns)."""
        return _events(self.trace, "simulation")

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.name, "policy": self.scenario.policy.params(),
                **self.metrics}


@dataclass(frozen=True)
class SweepResult:
    """A finished what-if grid: ``table`` has one row per point (axis columns first, then
    the metrics), in grid order; ``ran`` points ran now, ``reused`` were resumed."""

    name: str
    axes: list[str]
    table: pd.DataFrame
    ran: int
    reused: int
    where: str
    out: Path | None = None

    def best(self, max_latency_ms: float | None = None,
             min_fps: float | None = None) -> BestPick:
        """The point meeting the limits with the least memory in flight, and the
        period-memory Pareto front of the feasible points."""
        from pipefill.sim.sweep.grid import best_point

        return best_point(self.table, max_latency_ms, min_fps)

    def to_json(self) -> list[dict[str, Any]]:
        return self.table.to_dict(orient="records")  # type: ignore[return-value]


@dataclass(frozen=True)
class Replay:
    """A measured run of the scenario's policy on real kernels: its trace (also written
    to ``out``), metrics computed with the simulator's code, and the trust warnings of
    the parallelism the run really had (``warnings``; a figure from a run with warnings
    is not trustworthy)."""

    scenario: Scenario
    trace: Trace
    metrics: dict[str, Any]
    out: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def events(self) -> pd.DataFrame:
        return _events(self.trace, "replay")

    def to_json(self) -> dict[str, Any]:
        meta = self.trace.meta
        trust = meta.get("parallelism") or None
        return {"scenario": self.scenario.name, "policy": self.scenario.policy.params(),
                "device": meta.get("device"), "kernels": meta.get("kernels"),
                "engine": meta.get("backend"), "parallelism": trust,
                "warnings": self.warnings, **self.metrics}


class ReplayError(RuntimeError):
    """A replay failed; the partial trace was written (the message says where).

    ``code``: the CLI's exit code (2 bad input, 3 a stage failed or hung); ``exit_now``:
    a thread of this process may sit in a kernel or a collective for ever, so the caller
    should leave without interpreter teardown (``os._exit``) rather than unwind.
    """

    def __init__(self, message: str, code: int, exit_now: bool = False) -> None:
        super().__init__(message)
        self.code, self.exit_now = code, exit_now


@dataclass(frozen=True)
class Diff:
    """Predicted vs measured: ``status`` (``agree``, ...), metric and phase errors, the
    first divergence and metadata differences; ``to_json()`` is ``pipefill diff --json``."""

    data: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def warnings(self) -> list[str]:
        return list(self.data.get("warnings", []))

    def to_json(self) -> dict[str, Any]:
        return self.data
