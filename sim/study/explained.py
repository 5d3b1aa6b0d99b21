"""``explain`` on a verdict's key points: each one simulated with its trace (SimPy
records what every stage waited on) and its idle time attributed to causes, so the
verdict's "why" is not only the bound's critical cycle but the schedule's own account:
``backpressure: stage1 idle 35%: blocked on q_out (full) 89% ...``, with the lever."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipefill.sim.engine.core import simulate
from pipefill.sim.errors import ScenarioError, StallError
from pipefill.sim.fit.facts import explain
from pipefill.traces.schema import TraceError

if TYPE_CHECKING:
    from pipefill.sim.study.result import StudyResult


@dataclass(frozen=True)
class Explained:
    """A key point's ``explain`` verdict: the one line (``verdict``), its ``category`` in
    the brief's words and the ``lever`` that would move it ('' when it has none)."""

    point: int
    label: str
    verdict: str
    category: str = ""
    lever: str = ""

    def line(self) -> str:
        lever = f" (lever: {self.lever})" if self.lever else ""
        return f"{self.label}: {self.verdict}{lever}"

    def to_json(self) -> dict[str, Any]:
        return {"point": self.point, "label": self.label, "verdict": self.verdict,
                "category": self.category, "lever": self.lever}


def explain_points(result: StudyResult, points: list[int]) -> tuple[Explained, ...]:
    """``explain`` of each point's simulated trace (a point that cannot be explained says
    why instead)."""
    out = []
    for i in points:
        label = result.points.label(i)
        try:
            ex = explain(simulate(result.scenario_of(i)), label=label)
        except (TraceError, ScenarioError, StallError) as exc:
            out.append(Explained(i, label, f"not explained: {exc}"))
            continue
        v = ex.verdict
        out.append(Explained(i, label, v.text, v.category, v.lever))
    return tuple(out)
