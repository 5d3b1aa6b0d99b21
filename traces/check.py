"""Protocol invariants of a trace (the domain brief's checklist), rule by rule.

:func:`check_trace` runs every rule of :data:`RULES` on a trace of any source
(simulated, replayed, probe, imported, merged) and returns a :class:`CheckReport`: per
rule ``ok``, ``broken`` (how many rows break it and the first one) or ``not_checked``
(what the trace lacks for it; never counted as passed). Rules that need the policy
(queue capacities, the bytes bound) read :class:`~pipefill.traces.facts.PolicyFacts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipefill.traces.check_rules import (
    Outcome,
    RowRef,
    bytes_bound,
    call_id_order,
    emit_complete,
    emit_once,
    emit_order,
    epoch_order,
    queue_capacity,
    rank_calls,
    span_overlap,
    stale_epoch,
    time_range,
)
from pipefill.traces.facts import PolicyFacts
from pipefill.traces.schema import Trace, TraceError

OK, BROKEN, NOT_CHECKED = "ok", "broken", "not_checked"


@dataclass(frozen=True)
class RuleResult:
    """One rule on one trace. ``rows``: how many rows break it (0 unless broken);
    ``first``: the first of them; ``detail``: the first break in words, the reason it
    was not checked, or what was checked."""

    rule: str
    title: str
    status: str
    rows: int = 0
    first: RowRef | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "title": self.title, "status": self.status,
                "rows": self.rows, "first": None if self.first is None else self.first.to_json(),
                "detail": self.detail}


@dataclass(frozen=True)
class CheckReport:
    """Every rule's result on one trace (``label`` names the file)."""

    label: str
    source: str
    results: tuple[RuleResult, ...]

    @property
    def ok(self) -> bool:
        """No rule broken (rules not checked do not count as broken, nor as passed)."""
        return all(r.status != BROKEN for r in self.results)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {"trace": self.label, "source": self.source, "ok": self.ok,
                "broken": self.count(BROKEN), "not_checked": self.count(NOT_CHECKED),
                "rules": [r.to_json() for r in self.results]}


#: a rule: (events, facts) -> (rows broken, first row, detail) or a reason it cannot run
Rule = Callable[[pd.DataFrame, PolicyFacts], Outcome]

#: rule name -> (title, function), in report order
RULES: dict[str, tuple[str, Rule]] = {
    "emit_once": ("every chunk of every session emitted at most once", emit_once),
    "emit_complete": ("no chunk skipped: each one up to the last emitted is emitted or "
                      "dropped", emit_complete),
    "emit_order": ("emits in chunk order per session", emit_order),
    "stale_epoch": ("no frame of an old epoch emitted after a hard cut", stale_epoch),
    "epoch_order": ("epochs never go backwards", epoch_order),
    "call_id_order": ("call_id strictly increasing per stage, session, phase and step",
                      call_id_order),
    "rank_calls": ("every rank of a mesh ran the same calls", rank_calls),
    "span_overlap": ("compute spans on one lane do not overlap", span_overlap),
    "time_range": ("marks and spans within the run's time range", time_range),
    "queue_capacity": ("queue depths never above capacity", queue_capacity),
    "bytes_bound": ("bytes in flight never above the policy's bound", bytes_bound),
}


def check_events(events: pd.DataFrame, facts: PolicyFacts, label: str = "trace",
                 source: str = "unknown") -> CheckReport:
    """Run every rule on a validated event table."""
    results = []
    for name, (title, rule) in RULES.items():
        out = rule(events, facts)
        if isinstance(out, str):
            results.append(RuleResult(name, title, NOT_CHECKED, detail=out))
            continue
        rows, first, detail = out
        status = BROKEN if rows else OK
        results.append(RuleResult(name, title, status, rows, first if rows else None, detail))
    return CheckReport(label, source, tuple(results))


def check_trace(trace: Trace, facts: PolicyFacts | None = None,
                label: str = "trace") -> CheckReport:
    """Check ``trace`` (see the module docstring); raise :class:`TraceError` when it has
    no rows at all (nothing to check is not a pass)."""
    if not len(trace.events):
        raise TraceError("rows", "the trace has no rows")
    facts = facts if facts is not None else PolicyFacts()
    ev = trace.events
    if not np.isfinite(ev["start_ms"].to_numpy(dtype=float)).all():
        raise TraceError("start_ms", "rows without a finite time")
    return check_events(ev, facts, label, trace.source)
