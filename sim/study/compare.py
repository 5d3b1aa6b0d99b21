"""Verdict rules that compare points: reaching a target at the least cost, a change
against a reference point, and the smallest setting that restores a reference."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipefill.sim.study.points import Points
from pipefill.sim.study.rule import Finding, RuleBase, Where, described, measured, why_of
from pipefill.sim.study.show import fmt, fmt_delta, fmt_range, show


class Reach(RuleBase):
    """A ratio that should come down to ``target`` (period / bottleneck -> 1): names the
    points that miss it and why (their critical cycle), the cheapest point that reaches
    it (least ``cost``), and what the costlier ones buy beyond it."""

    rule: Literal["reach"] = "reach"
    metric: str = Field(description="the ratio judged (1.0 = at the target)")
    target: float = Field(1.0, gt=0, description="the value to come down to")
    tolerance: float = Field(0.01, ge=0, description="relative: within it counts as reached")
    cost: str | None = Field(None, description="a column to minimise among the points "
                             "that reach it (memory in flight)")
    what: str = Field("the target", description="the target in words ('the bottleneck')")
    says: str = Field("{}", description="a value in words; {} is the value ('period {}x "
                      "the bottleneck')")

    def reads(self) -> list[tuple[str, str]]:
        return [("metric", self.metric), *([("cost", self.cost)] if self.cost else []),
                *self.where_reads()]

    def judge(self, pts: Points) -> Finding:
        idx = pts.select(self.among)
        have, _ = measured(pts, idx, self.metric)
        limit = self.target * (1 + self.tolerance)
        reach = [i for i in have if (pts.value(i, self.metric) or 0.0) <= limit]
        miss = [i for i in idx if i not in reach]
        parts, keys = self._misses(pts, miss)
        if not reach:
            parts.append(f"no point reaches {self.what} within {self.tolerance:.0%}")
            return Finding.of(self.rule, parts, tuple(keys), False)
        cheapest = min(reach, key=lambda i: (self._cost(pts, i), idx.index(i)))
        parts.append(f"{pts.label(cheapest)} reaches it: {self._says(pts, [cheapest])}")
        keys.insert(0, cheapest)
        beyond = [i for i in reach if i != cheapest]
        if self.cost and beyond:
            parts += self._beyond(pts, cheapest, beyond, reach)
            keys.append(max(beyond, key=lambda i: self._cost(pts, i)))
        return Finding.of(self.rule, parts, tuple(dict.fromkeys(keys)), True)

    def _misses(self, pts: Points, miss: list[int]) -> tuple[list[str], list[int]]:
        """One clause per group of points that miss (``D_out = 1 serialises ...``)."""
        if not miss:
            return [], []
        parts: list[str] = []
        keys: list[int] = []
        told: set[int] = set()
        terms = pts.terms(miss) or [(pts.name(miss), frozenset(miss))]
        # worst group first; a later group speaks only for the points not yet told
        for text, members in sorted(terms, key=lambda t: self._worst_value(pts, t[1]),
                                    reverse=True):
            ordered = sorted(members - told) or sorted(members)
            told |= members
            worst = max(ordered, key=lambda i: pts.value(i, self.metric) or float("inf"))
            why = why_of(pts, worst)
            parts.append(f"{text}: {self._says(pts, ordered)}{', ' + why if why else ''}")
            keys.append(worst)
        return parts, keys

    def _worst_value(self, pts: Points, members: frozenset[int]) -> tuple[float, float]:
        """The group's worst value, then its mean (a tie goes to the worse group)."""
        values = [pts.value(i, self.metric) or float("inf") for i in members]
        return max(values), sum(values) / len(values)

    def _beyond(self, pts: Points, cheapest: int, beyond: list[int], reach: list[int]
                ) -> list[str]:
        """What the points that also reach it buy over the cheapest, and what it costs."""
        assert self.cost is not None
        base = pts.value(cheapest, self.metric) or 0.0
        gain = {i: (base - (pts.value(i, self.metric) or 0.0)) / self.target for i in beyond}
        extra = {i: self._cost(pts, i) - self._cost(pts, cheapest) for i in beyond}
        cost = f"more {show(self.cost).label}"
        out = []
        nothing = [i for i in beyond if gain[i] <= self.tolerance]
        if nothing:
            more = [extra[i] for i in nothing]
            costs = (f"costs {fmt_range(self.cost, more)} {cost}" if max(more) > 0
                     else f"holds no more {show(self.cost).label} either")
            out.append(f"{pts.name(nothing, reach)} buys nothing ({self._says(pts, nothing)}) "
                       f"and {costs}")
        better = [i for i in beyond if i not in nothing]
        if better:
            out.append(f"{pts.name(better, reach)} gains up to {max(gain[i] for i in better):.1%} "
                       f"for {fmt_range(self.cost, [extra[i] for i in better])} {cost}")
        return out

    def _cost(self, pts: Points, i: int) -> float:
        return (pts.value(i, self.cost) or 0.0) if self.cost else 0.0

    def _says(self, pts: Points, members: list[int]) -> str:
        values = [v for i in members if (v := pts.value(i, self.metric)) is not None]
        return self.says.format(fmt_range(self.metric, values, unit=False) if values
                                else "missing")


class Versus(RuleBase):
    """Each point against a reference point: the change of each metric (the first one
    also relative), why the most changed point changed, and which did not change."""

    rule: Literal["versus"] = "versus"
    reference: Where = Field(description="the reference point(s)")
    metrics: list[str] = Field(min_length=1, description="the columns compared (the first "
                               "decides what counts as a change)")
    pair_on: list[str] = Field(default_factory=list, description="compare each point with "
                               "the reference point that has the same cells in these columns")
    tolerance: float = Field(0.01, ge=0, description="a relative change of the first metric "
                             "up to this is no change")
    about: str | None = Field(None, description="the reference in words")

    def reads(self) -> list[tuple[str, str]]:
        return [*((f"metrics.{i}", m) for i, m in enumerate(self.metrics)),
                *((f"pair_on.{i}", c) for i, c in enumerate(self.pair_on)),
                *self.where_reads("reference", self.reference), *self.where_reads()]

    def judge(self, pts: Points) -> Finding:
        refs = pts.select(self.reference)
        if not refs or (len(refs) > 1 and not self.pair_on):
            return Finding(self.rule, f"reference {self.reference} selects {len(refs)} points: "
                           "give one, or pair_on", ok=False)
        lead = self.metrics[0]
        changed: list[tuple[int, int, float]] = []
        same: list[int] = []
        for i in (i for i in pts.select(self.among) if i not in refs):
            r = self._pair(pts, refs, i)
            a, b = pts.value(i, lead), pts.value(r, lead) if r is not None else None
            if r is None or a is None or b is None:
                continue
            rel = (a - b) / abs(b) if b else 0.0
            if abs(rel) <= self.tolerance:
                same.append(i)
            else:
                changed.append((i, r, rel))
        parts = [self._delta(pts, i, r, rel) for i, r, rel in changed]
        keys = [refs[0]]
        if changed:
            i, _, _ = max(changed, key=lambda c: abs(c[2]))
            why = why_of(pts, i)
            parts[[c[0] for c in changed].index(i)] += f", {why}" if why else ""
            keys.insert(0, i)
        if same:
            parts.append(f"{pts.name(same)}: {show(lead).label} within {self.tolerance:.0%}")
        parts = parts or ["nothing to compare"]
        return Finding.of(self.rule, [f"{self._head(pts, refs)}: {parts[0]}", *parts[1:]],
                          tuple(dict.fromkeys(keys)))

    def _pair(self, pts: Points, refs: list[int], i: int) -> int | None:
        if not self.pair_on:
            return refs[0]
        want = [pts.rows[i].get(k) for k in self.pair_on]
        return next((r for r in refs if [pts.rows[r].get(k) for k in self.pair_on] == want),
                    None)

    def _delta(self, pts: Points, i: int, r: int, rel: float) -> str:
        out = []
        for n, m in enumerate(self.metrics):
            a, b = pts.value(i, m), pts.value(r, m)
            if a is not None and b is not None:
                pct = f", {rel:+.0%}" if n == 0 else ""
                out.append(f"{show(m).label} {fmt(m, a)} ({fmt_delta(m, a - b)}{pct})")
        return f"{pts.label(i)}: {', '.join(out)}"

    def _head(self, pts: Points, refs: list[int]) -> str:
        values = ("" if len(refs) > 1 else " (" + ", ".join(
            fmt(m, pts.rows[refs[0]].get(m)) for m in self.metrics) + ")")
        about = f", {self.about}" if self.about else ""
        return f"against {described(pts, self.reference)}{values}{about}"


class Restore(RuleBase):
    """The smallest value of an ordered setting (``recompute_lag``) at which the points
    ``among`` come back within ``tolerance`` of a reference point's metric."""

    rule: Literal["restore"] = "restore"
    reference: Where = Field(description="the reference point")
    order: str = Field(description="the setting, ordered (a column)")
    metric: str = Field(description="the column restored")
    tolerance: float = Field(0.01, ge=0, description="relative: within it counts as restored")

    def reads(self) -> list[tuple[str, str]]:
        return [("order", self.order), ("metric", self.metric),
                *self.where_reads("reference", self.reference), *self.where_reads()]

    def judge(self, pts: Points) -> Finding:
        refs = pts.select(self.reference)
        base = pts.value(refs[0], self.metric) if len(refs) == 1 else None
        if base is None:
            return Finding(self.rule, f"reference {self.reference} selects {len(refs)} points "
                           f"with {self.metric}: give exactly one", ok=False)
        have, _ = measured(pts, pts.select(self.among), self.metric)
        have.sort(key=lambda i: pts.value(i, self.order) or 0.0)
        if not have:
            return Finding(self.rule, f"no point of {self.among} has {self.metric}", ok=False)
        rel = {i: ((pts.value(i, self.metric) or 0.0) - base) / abs(base) if base else 0.0
               for i in have}
        first = next((i for i in have if abs(rel[i]) <= self.tolerance), None)
        setting, group = pts.column_label(self.order), pts.name(have)
        restores = f"{described(pts, self.reference)}'s {show(self.metric).label}"
        if first is None:
            best = min(have, key=lambda i: abs(rel[i]))
            return Finding(self.rule, f"{group}: no {setting} up to "
                           f"{pts.rows[have[-1]].get(self.order)} restores {restores} "
                           f"(closest {rel[best]:+.0%} at {setting} = "
                           f"{pts.rows[best].get(self.order)})", (best, refs[0]), False)
        at = pts.rows[first].get(self.order)
        before = have[:have.index(first)]
        if not before:
            return Finding(self.rule, f"{group}: within {self.tolerance:.0%} of {restores} "
                           f"from {setting} = {at}", (first, refs[0]), True)
        costs = ", ".join(f"{setting} = {pts.rows[i].get(self.order)} costs "
                          f"{fmt_delta(self.metric, (pts.value(i, self.metric) or 0.0) - base)}"
                          f" ({rel[i]:+.0%})" for i in before)
        return Finding(self.rule, f"{group}: the smallest {setting} that restores {restores} "
                       f"is {at} (within {abs(rel[first]):.1%}); {costs}",
                       (before[0], first, refs[0]), True)
