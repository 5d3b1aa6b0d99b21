"""Predicted vs measured idle causes: where a stage idles for another reason than the
model said (blocked in reality but not in the model, say).

:func:`idle_difference` explains both traces (:mod:`pipefill.traces.explain`, with the
facts their metadata gives) and compares, per stage, each cause's share of the steady
window; a gap of :data:`SHARE_GAP` of the window or more is a difference, said in one
line. A trace that cannot be explained (no emits, one stage) gives no comparison and
its reason.
"""

from __future__ import annotations

from typing import Any

from pipefill.traces.explain import Explanation, explain_trace
from pipefill.traces.facts import facts_from_meta
from pipefill.traces.schema import Trace, TraceError

#: share of the window by which one cause must differ to be reported
SHARE_GAP = 0.10


def _shares(e: Explanation) -> dict[str, dict[str, float]]:
    return {s.stage: {c: ms / s.window_ms for c, ms in s.causes.items()} for s in e.stages}


def idle_difference(predicted: Trace, measured: Trace) -> dict[str, Any]:
    """``{"predicted": {stage: {cause: share}}, "measured": ..., "differences": [line],
    "verdicts": [predicted, measured]}``, or ``{"reason": ...}`` when one trace cannot
    be explained."""
    try:
        ep = explain_trace(predicted, facts_from_meta(predicted.meta))
        em = explain_trace(measured, facts_from_meta(measured.meta))
    except TraceError as exc:
        return {"reason": f"no idle comparison: {exc}"}
    sp, sm = _shares(ep), _shares(em)
    lines = []
    for stage in sorted(set(sp) & set(sm)):
        for cause, p in sp[stage].items():
            m = sm[stage].get(cause, 0.0)
            if abs(m - p) >= SHARE_GAP:
                lines.append(f"{stage} {cause} {m:.0%} of the window measured, "
                             f"{p:.0%} predicted")
    if ep.verdict.category != em.verdict.category:
        lines.append(f"the verdict differs: predicted {ep.verdict.category}, measured "
                     f"{em.verdict.category}")
    return {"predicted": sp, "measured": sm, "differences": lines,
            "verdicts": [ep.verdict.text, em.verdict.text]}
