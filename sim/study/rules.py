"""Verdict rules that read one metric over a set of points: a pass gate, a range, a
formula check and a trend along an axis (the comparisons are in
:mod:`pipefill.sim.study.compare`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipefill.sim.study.points import VARIANT, Points
from pipefill.sim.study.rule import Finding, RuleBase, label, measured, missing_note, why_of
from pipefill.sim.study.show import fmt, fmt_range, show


class Gate(RuleBase):
    """A pass gate: ``metric >= at_least`` (or ``<= at_most``) at each point. Says where
    it holds and names the points where it does not (a failed point does not pass)."""

    rule: Literal["gate"] = "gate"
    metric: str = Field(description="the column gated")
    at_least: float | None = Field(None, description="passes when the metric is >= this")
    at_most: float | None = Field(None, description="passes when the metric is <= this")
    says: str | None = Field(None, description="the gate in words (default: "
                             "'<metric> >= <at_least>')")

    @model_validator(mode="after")
    def _one_bound(self) -> Gate:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of at_least and at_most")
        return self

    def reads(self) -> list[tuple[str, str]]:
        return [("metric", self.metric), *self.where_reads()]

    def judge(self, pts: Points) -> Finding:
        idx = pts.select(self.among)
        have, _ = measured(pts, idx, self.metric)
        ok = [i for i in have if self._passes(pts.value(i, self.metric))]
        bad = [i for i in idx if i not in ok]
        what = self.says or (f"{show(self.metric).label} "
                             f"{'>=' if self.at_least is not None else '<='} "
                             f"{self.at_least if self.at_least is not None else self.at_most:g}")
        scope = "every point" if self.among is None else pts.name(idx)
        if not bad:
            worst = min(have, key=lambda i: self._margin(pts.value(i, self.metric) or 0.0))
            closest = ("" if len({pts.value(i, self.metric) for i in have}) == 1 else
                       f" (closest: {fmt(self.metric, pts.rows[worst].get(self.metric))} "
                       f"at {pts.label(worst)})")
            return Finding(self.rule, f"{what} at {scope}{closest}", (worst,), True)
        values = [v for i in bad if (v := pts.value(i, self.metric)) is not None]
        shown = f" ({fmt_range(self.metric, values)})" if values else " (missing)"
        if not ok:
            return Finding(self.rule, f"{what} at no point of {scope}{shown}", tuple(bad[:1]),
                           False)
        return Finding(self.rule, f"{what} at {len(ok)} of {len(idx)} points; not at "
                       f"{pts.name(bad)}{shown}", (bad[0], ok[0]), False)

    def _passes(self, v: float | None) -> bool:
        if v is None:
            return False
        return v >= self.at_least if self.at_least is not None else v <= (self.at_most or 0.0)

    def _margin(self, v: float) -> float:
        """How far ``v`` is inside the gate."""
        return v - self.at_least if self.at_least is not None else (self.at_most or 0.0) - v


class Range(RuleBase):
    """Where a metric is least and most: ``TTFF / period 1.0-3.3: least at ..., most at ...``."""

    rule: Literal["range"] = "range"
    metric: str = Field(description="the column")
    what: str | None = Field(None, description="the metric in words (default: its label)")

    def reads(self) -> list[tuple[str, str]]:
        return [("metric", self.metric), *self.where_reads()]

    def judge(self, pts: Points) -> Finding:
        have, missing = measured(pts, pts.select(self.among), self.metric)
        name = label(self.metric, self.what)
        if not have:
            return Finding(self.rule, f"{name}: missing at every point")
        lo = min(have, key=lambda i: pts.value(i, self.metric) or 0.0)
        hi = max(have, key=lambda i: pts.value(i, self.metric) or 0.0)
        values = [pts.value(i, self.metric) or 0.0 for i in have]
        return Finding(self.rule, f"{name} {fmt_range(self.metric, values)}: least at "
                       f"{pts.label(lo)}, most at {pts.label(hi)}"
                       f"{missing_note(pts, missing)}", (lo, hi))


class Formula(RuleBase):
    """A measured metric against a formula's value (a derived column): ``bubble matches
    (P-1)/(M+P-1) within 0.004 at layer_pp``, or where it departs most."""

    rule: Literal["formula"] = "formula"
    metric: str = Field(description="the measured column")
    expected: str = Field(description="the column holding the formula's value")
    tolerance: float = Field(0.01, ge=0, description="largest absolute difference that "
                             "still matches")
    says: str | None = Field(None, description="the formula in words")

    def reads(self) -> list[tuple[str, str]]:
        return [("metric", self.metric), ("expected", self.expected), *self.where_reads()]

    def judge(self, pts: Points) -> Finding:
        idx = pts.select(self.among)
        have, missing = measured(pts, idx, self.metric)
        have = [i for i in have if pts.value(i, self.expected) is not None]
        formula = self.says or self.expected
        if not have:
            return Finding(self.rule, f"{label(self.metric)} vs {formula}: no point has both",
                           ok=False)
        err = {i: abs((pts.value(i, self.metric) or 0.0) - (pts.value(i, self.expected) or 0.0))
               for i in have}
        worst = max(have, key=lambda i: err[i])
        scope = pts.name(idx)
        if err[worst] <= self.tolerance:
            return Finding(self.rule, f"{label(self.metric)} matches {formula} within "
                           f"{err[worst]:.2g} at {scope}{missing_note(pts, missing)}",
                           (worst,), True)
        return Finding(self.rule, f"{label(self.metric)} departs from {formula} by up to "
                       f"{err[worst]:.3g} (at {pts.label(worst)}: "
                       f"{fmt(self.metric, pts.rows[worst].get(self.metric))} vs "
                       f"{fmt(self.metric, pts.rows[worst].get(self.expected))})", (worst,),
                       False)


class Trend(RuleBase):
    """Metrics along an ordered column, one clause per group (``by``): ``throughput 96.7
    -> 193.4 fps (x2.00) over sessions = 1, 2``."""

    rule: Literal["trend"] = "trend"
    along: str = Field(description="the column the points are ordered by")
    metrics: list[str] = Field(min_length=1, description="the columns followed")
    by: list[str] = Field(default_factory=lambda: [VARIANT],
                          description="one clause per value of these columns")
    ratio: bool = Field(False, description="also give the first metric as a multiple of "
                        "its value at the first point")
    why: bool = Field(False, description="say what sets the period at each group's last point")

    def reads(self) -> list[tuple[str, str]]:
        return [("along", self.along), *((f"metrics.{i}", m) for i, m in enumerate(self.metrics)),
                *((f"by.{i}", b) for i, b in enumerate(self.by)), *self.where_reads()]

    def judge(self, pts: Points) -> Finding:
        idx = pts.select(self.among)
        groups: dict[str, list[int]] = {}
        for i in idx:
            key = repr([pts.rows[i].get(b) for b in self.by])
            groups.setdefault(key, []).append(i)
        parts, key_points = [], []
        for members in groups.values():
            members = sorted(members, key=lambda i: pts.value(i, self.along) or 0.0)
            parts.append(self._clause(pts, members))
            key_points += [members[0], members[-1]]
        return Finding.of(self.rule, parts, tuple(dict.fromkeys(key_points)))

    def _clause(self, pts: Points, members: list[int]) -> str:
        head = pts.name(members) if len(members) > 1 else pts.label(members[0])
        along = ", ".join(fmt(self.along, pts.rows[i].get(self.along), unit=False)
                          for i in members)
        runs = []
        for n, metric in enumerate(self.metrics):
            values = [fmt(metric, pts.rows[i].get(metric), unit=False) for i in members]
            unit = show(metric).unit if not show(metric).percent else ""
            text = f"{show(metric).label} {' -> '.join(values)}{' ' + unit if unit else ''}"
            first = pts.value(members[0], metric)
            if self.ratio and n == 0 and first:
                mult = [(pts.value(i, metric) or 0.0) / first for i in members[1:]]
                text += " (" + ", ".join(f"x{m:.2f}" for m in mult) + ")"
            runs.append(text)
        text = f"{head}: {', '.join(runs)} over {pts.column_label(self.along)} = {along}"
        reason = why_of(pts, members[-1]) if self.why else ""
        return f"{text} ({pts.label(members[-1])}: {reason})" if reason else text
