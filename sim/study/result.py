"""A finished study: every point's row, the verdict's findings and, after ``--replay``,
the key points measured beside their prediction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipefill.sim.scenario.load import apply_overrides, build_scenario
from pipefill.sim.study.facts import FACTS
from pipefill.sim.study.show import heading

if TYPE_CHECKING:
    import pandas as pd

    from pipefill.sim.scenario.model import Scenario
    from pipefill.sim.study.explained import Explained
    from pipefill.sim.study.points import Points
    from pipefill.sim.study.rule import Finding
    from pipefill.sim.study.spec import StudySpec

#: metrics shown side by side for a measured key point
COMPARED = ("period_ms", "overlap_score", "ttff_ms")


@dataclass(frozen=True)
class Measured:
    """One key point run short (``chunks``) on the model and on an executor: ``predicted``
    and ``measured`` hold the metrics of :data:`COMPARED`; ``warnings`` say when the
    machine could not run the stages as modelled (the measurement is then suspect)."""

    point: int
    label: str
    chunks: int
    predicted: dict[str, Any]
    measured: dict[str, Any]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"point": self.point, "label": self.label, "chunks": self.chunks,
                "predicted": self.predicted, "measured": self.measured,
                "warnings": list(self.warnings)}


@dataclass(frozen=True)
class StudyResult:
    """Result of :func:`pipefill.sim.study.run.run_study`. ``points`` has one row per
    point (``variant``, ``label``, axis cells, metrics, facts, derived columns);
    ``findings`` are the verdict's clauses in the study's rule order (plus one for
    points that could not run); ``explained``: ``explain`` on the key points' simulated
    traces; ``raw`` and ``point_sets`` re-create each point."""

    spec: StudySpec
    scenario: str
    points: Points
    findings: tuple[Finding, ...]
    raw: dict[str, Any]
    point_sets: tuple[tuple[str, ...], ...]
    measured: tuple[Measured, ...] = field(default=())
    #: ``explain`` of the key points' simulated traces
    explained: tuple[Explained, ...] = field(default=())

    @property
    def verdict(self) -> list[str]:
        """The verdict, one clause per line."""
        return [f.text for f in self.findings]

    @property
    def table(self) -> pd.DataFrame:
        """Every point's row as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(list(self.points.rows))

    def key_points(self) -> list[int]:
        """The points the verdict names, most telling first (``--replay`` runs these)."""
        seen = dict.fromkeys(i for f in self.findings for i in f.points)
        return list(seen)[:self.spec.replay.points]

    def scenario_of(self, point: int, sets: tuple[str, ...] = ()) -> Scenario:
        """The scenario a point ran, with ``sets`` applied after its own overrides."""
        return build_scenario(apply_overrides(self.raw, [*self.point_sets[point], *sets]),
                              name=self.scenario)

    def _columns(self) -> list[str]:
        """The columns a reader of the JSON sees named: shown ones and figures'."""
        figs = [c for f in self.spec.figures for c in (f.metric, f.x) if c is not None]
        return list(dict.fromkeys([*self.spec.show, *figs]))

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "study": spec.name, "title": spec.title, "question": spec.question,
            "brief": spec.brief, "scenario": self.scenario, "columns": spec.show,
            "dims": [{"key": d.key, "label": d.label} for d in self.points.dims],
            "labels": {c: heading(c) for c in self._columns()},
            "facts": FACTS, "verdict": self.verdict,
            "findings": [f.to_json() for f in self.findings],
            "points": [dict(r) for r in self.points.rows],
            "figures": [f.model_dump() for f in spec.figures],
            "explained": [e.to_json() for e in self.explained],
            "measured": [m.to_json() for m in self.measured],
        }
