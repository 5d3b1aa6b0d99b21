"""What every verdict rule shares: its result (a :class:`Finding`), the columns and
selections it reads (checked when a study file loads), and small helpers.

A rule is data: a frozen model read from a study file's ``[[rules]]`` table, named by
its ``rule`` key. Each kind judges the study's points itself (``judge``); the registry
of kinds is :data:`pipefill.sim.study.spec.RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipefill.sim.study.points import Points
from pipefill.sim.study.show import fmt, show
from pipefill.sim.study.why import why

Where = dict[str, Any]


@dataclass(frozen=True)
class Finding:
    """One clause of a verdict: ``text`` in the brief's words, the ``points`` it is
    about (most telling first: ``--replay`` measures these), and ``ok``: whether the
    study's target holds (None when the rule states a fact rather than a target)."""

    rule: str
    text: str
    points: tuple[int, ...] = ()
    ok: bool | None = None
    #: the sentences ``text`` joins with "; " (one per group of points), when several
    clauses: tuple[str, ...] = ()

    @classmethod
    def of(cls, rule: str, clauses: list[str], points: tuple[int, ...] = (),
           ok: bool | None = None) -> Finding:
        return cls(rule, "; ".join(clauses), points, ok, tuple(clauses))

    @property
    def lines(self) -> tuple[str, ...]:
        return self.clauses or (self.text,)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "text": self.text, "clauses": list(self.lines),
                "points": list(self.points), "ok": self.ok}


class RuleBase(BaseModel):
    """A verdict rule. ``among`` selects the points it judges (cells equal to the given
    values; ``variant`` is a variant's label; unset: every point)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = Field(description="the kind of rule")
    among: Where | None = Field(None, description="the points it judges (default: all)")

    def reads(self) -> list[tuple[str, str]]:
        """(field, column) of every column the rule reads (a study file naming an unknown
        one fails, naming the field)."""
        return self.where_reads()

    def where_reads(self, name: str = "among", where: Where | None = None
                    ) -> list[tuple[str, str]]:
        chosen = self.among if name == "among" else where
        return [(f"{name}.{k}", k) for k in (chosen or {})]

    def judge(self, pts: Points) -> Finding:  # pragma: no cover - each kind implements it
        raise NotImplementedError


def label(metric: str, what: str | None = None) -> str:
    return what or show(metric).label


def measured(pts: Points, idx: list[int], metric: str) -> tuple[list[int], list[int]]:
    """(points with a value, points without one: failed or the metric missing)."""
    have = [i for i in idx if pts.value(i, metric) is not None and not pts.failed(i)]
    return have, [i for i in idx if i not in have]


def why_of(pts: Points, i: int) -> str:
    return why(pts.rows[i])


def at(pts: Points, i: int, metric: str) -> str:
    """``152.0 ms at D_in = D_out = 2``."""
    return f"{fmt(metric, pts.rows[i].get(metric))} at {pts.label(i)}"


def missing_note(pts: Points, idx: list[int]) -> str:
    """``; missing at X`` for points a rule could not judge ('' when none)."""
    return f"; missing at {pts.name(idx)}" if idx else ""


def described(pts: Points, where: Where) -> str:
    """A selection as its author wrote it: ``layer_pp, items = 1``."""
    return ", ".join(str(v) if k == "variant" else f"{pts.column_label(k)} = {v}"
                     for k, v in where.items())
