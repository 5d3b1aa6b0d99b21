"""Predicted vs measured: metric errors, per-phase duration errors, first divergence.

``diff_traces(predicted, measured)`` compares two traces of (normally) the same
scenario, e.g. ``simulate`` and ``replay``. The schedules *diverge* at the first chunk
where (in this priority on ties) one trace emits a chunk the other drops or never
emits (``outcome``), a stage runs its phases in a different order (``order``), or a
phase starts, relative to its chunk's first phase, or a chunk is emitted, relative to
the previous emit, more than ``tolerance`` x the predicted period away (``timing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipefill.traces.idle_diff import idle_difference
from pipefill.traces.metrics import SUMMARY_KEYS, compute_metrics
from pipefill.traces.schema import Trace

#: fidelity targets of the verdict (DESIGN.md / issue: period 5 %, OverlapScore 0.05)
PERIOD_TARGET, OVERLAP_TARGET = 0.05, 0.05
#: metadata sections whose differences are warned about
META_SECTIONS = ("scenario_name", "policy", "run", "costs", "transport")
#: ...of which those a user's own recorded trace can state (its schedule, not its name)
MEASURED_SECTIONS = ("policy", "run")
KIND_RANK = {"outcome": 0, "order": 1, "timing": 2}


@dataclass(frozen=True)
class Divergence:
    """Where two schedules first part: the ``session``'s ``chunk``, the ``stage`` and
    ``phase`` that moved."""

    session: int
    chunk: int
    kind: str
    stage: str
    phase: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"session": self.session, "chunk": self.chunk, "kind": self.kind,
                "stage": self.stage, "phase": self.phase, "detail": self.detail}

    @property
    def rank(self) -> tuple[int, int, int]:
        return self.chunk, KIND_RANK[self.kind], self.session


def _error(pred: Any, meas: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"predicted": pred, "measured": meas, "abs_error": None,
                           "rel_error": None}
    if isinstance(pred, int | float) and isinstance(meas, int | float):
        out["abs_error"] = float(meas) - float(pred)
        out["rel_error"] = out["abs_error"] / abs(pred) if pred else None
    return out


def metric_errors(mp: dict[str, Any], mm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every summary metric: predicted, measured, measured - predicted, relative error."""
    return {key: _error(mp.get(key), mm.get(key)) for key in SUMMARY_KEYS}


def _durations(trace: Trace) -> pd.DataFrame:
    sp = trace.spans
    return sp.assign(dur=sp["end_ms"] - sp["start_ms"])


def phase_errors(tp: Trace, tm: Trace) -> list[dict[str, Any]]:
    """Median duration per (stage, lane, phase) in each trace and their errors."""
    keys = ["stage", "lane", "name"]
    gp = _durations(tp).groupby(keys)["dur"]
    gm = _durations(tm).groupby(keys)["dur"]
    rows = []
    for key in sorted(set(gp.groups) | set(gm.groups)):
        p = gp.get_group(key) if key in gp.groups else pd.Series(dtype=float)
        m = gm.get_group(key) if key in gm.groups else pd.Series(dtype=float)
        err = _error(float(p.median()) if len(p) else None, float(m.median()) if len(m) else None)
        rows.append({"stage": key[0], "lane": key[1], "phase": key[2], "n_predicted": len(p),
                     "n_measured": len(m), **err})
    return rows


def _outcomes(trace: Trace) -> dict[tuple[int, int], str]:
    ev = trace.events
    marks = ev[(ev["kind"] == "mark") & ev["name"].isin(["emit", "drop"])]
    return {(int(s), int(c)): str(n)
            for s, c, n in zip(marks["session"], marks["chunk"], marks["name"], strict=True)}


def _outcome_divergence(tp: Trace, tm: Trace) -> Divergence | None:
    op, om = _outcomes(tp), _outcomes(tm)
    for session, chunk in sorted(set(op) | set(om), key=lambda sc: (sc[1], sc[0])):
        a, b = op.get((session, chunk), "nothing"), om.get((session, chunk), "nothing")
        if a != b:
            return Divergence(session, chunk, "outcome", "stage0", a if b == "nothing" else b,
                              f"chunk {chunk}: predicted {a}, measured {b}")
    return None


def _compute_spans(trace: Trace) -> pd.DataFrame:
    sp = trace.spans
    return sp[sp["lane"] == "compute"].sort_values(["start_ms", "end_ms"], kind="stable")


def _order_divergence(tp: Trace, tm: Trace) -> Divergence | None:
    sp, sm = _compute_spans(tp), _compute_spans(tm)
    cols = ["name", "session", "chunk", "step"]
    found = []
    for stage in sorted(set(sp["stage"]) & set(sm["stage"])):
        a = sp[sp["stage"] == stage][cols].itertuples(index=False)
        b = sm[sm["stage"] == stage][cols].itertuples(index=False)
        x, y = next(((x, y) for x, y in zip(a, b, strict=False) if tuple(x) != tuple(y)),
                    (None, None))
        if x is not None and y is not None:
            # the phase that moved is the one of the earlier chunk
            moved = min((x, y), key=lambda r: (r.chunk, r.session))
            found.append(Divergence(int(moved.session), int(moved.chunk), "order", str(stage),
                                    str(moved.name), f"{stage} ran {y.name} of chunk {y.chunk}"
                                    f" where {x.name} of chunk {x.chunk} was predicted"))
    return min(found, key=lambda d: d.rank, default=None)


def _offsets(trace: Trace) -> pd.Series:
    """Start of each compute span relative to the first span of its (session, chunk)."""
    sp = _compute_spans(trace)
    first = sp.groupby(["session", "chunk"])["start_ms"].transform("min")
    off = sp.assign(offset=sp["start_ms"] - first).set_index(
        ["session", "chunk", "stage", "name", "step", "epoch"])["offset"]
    return off[~off.index.duplicated()]


def _emit_gaps(trace: Trace) -> pd.Series:
    """Time from each session's previous emit, indexed by (session, chunk)."""
    emits = trace.marks("emit").sort_values("start_ms", kind="stable")
    gaps = emits.groupby("session")["start_ms"].diff()
    out = pd.Series(gaps.to_numpy(), index=pd.MultiIndex.from_arrays(
        [emits["session"], emits["chunk"]])).dropna()
    return out[~out.index.duplicated()]


def _first_beyond(delta: pd.Series, tol_ms: float,
                  from_chunk: int = 0) -> tuple[tuple[Any, ...], float] | None:
    """The largest deviation within the earliest chunk (>= ``from_chunk``) that has one
    beyond tolerance."""
    late = delta[(delta.abs() > tol_ms)
                 & (delta.index.get_level_values("chunk") >= from_chunk)]
    if late.empty:
        return None
    chunks = late.index.get_level_values("chunk")
    in_chunk = late[chunks == chunks.min()]
    pos = int(np.argmax(in_chunk.abs().to_numpy()))
    return tuple(in_chunk.index[pos]), float(in_chunk.iloc[pos])


def _timing_divergence(tp: Trace, tm: Trace, tol_ms: float,
                       from_chunk: int) -> Divergence | None:
    """Timing is compared from the first steady-state chunk on: warm-up chunks pay
    one-off costs (lazy initialisation, first kernel launches) that no model predicts."""
    op, om = _offsets(tp), _offsets(tm)
    found = []
    hit = _first_beyond((om - op.reindex(om.index)).dropna(), tol_ms, from_chunk)
    if hit is not None:
        (session, chunk, stage, name, *_), d = hit
        found.append(Divergence(int(session), int(chunk), "timing", str(stage), str(name),
                                f"{stage} {name} of chunk {chunk} started {abs(d):.2f} ms "
                                f"{'later' if d > 0 else 'earlier'} within its chunk than "
                                f"predicted (tolerance {tol_ms:.2f} ms)"))
    gp, gm = _emit_gaps(tp), _emit_gaps(tm)
    hit = _first_beyond((gm - gp.reindex(gm.index)).dropna(), tol_ms, from_chunk)
    if hit is not None:
        (session, chunk), d = hit
        found.append(Divergence(int(session), int(chunk), "timing", "stage0", "emit",
                                f"chunk {chunk} was emitted {abs(d):.2f} ms "
                                f"{'later' if d > 0 else 'sooner'} after the previous one "
                                f"than predicted (tolerance {tol_ms:.2f} ms)"))
    return min(found, key=lambda d: d.rank, default=None)


def first_divergence(tp: Trace, tm: Trace, tol_ms: float,
                     from_chunk: int = 0) -> Divergence | None:
    """Outcome and order differences count from chunk 0; timing from ``from_chunk``."""
    found = [d for d in (_outcome_divergence(tp, tm), _order_divergence(tp, tm),
                         _timing_divergence(tp, tm, tol_ms, from_chunk)) if d is not None]
    return min(found, key=lambda d: d.rank, default=None)


def _flatten(obj: Any, prefix: str) -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def meta_differences(meta_p: dict[str, Any], meta_m: dict[str, Any]) -> list[str]:
    """Dotted scenario/policy fields whose values differ, as ``field: a != b``.

    A trace recorded with the probe or imported from a profiler names only what its
    author gave (maybe a policy's name and queue depths, no cost model): against one,
    only the policy and run fields both traces carry are compared.
    """
    measured = {meta_p.get("source"), meta_m.get("source")} & {"probe", "import"}
    sections = MEASURED_SECTIONS if measured else META_SECTIONS
    fp = _flatten({k: meta_p.get(k) for k in sections}, "")
    fm = _flatten({k: meta_m.get(k) for k in sections}, "")
    keys = set(fp) & set(fm) if measured else set(fp) | set(fm)
    return [f"{k}: {fp.get(k)!r} != {fm.get(k)!r}" for k in sorted(keys)
            if fp.get(k) != fm.get(k)]


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def status(metrics: dict[str, dict[str, Any]]) -> str:
    """``agree`` when the period is within :data:`PERIOD_TARGET` and OverlapScore (when
    both have it) within :data:`OVERLAP_TARGET`; ``differ`` otherwise; ``cannot judge``
    when a trace has no period."""
    period, ov = metrics["period_ms"]["rel_error"], metrics["overlap_score"]["abs_error"]
    if period is None:
        return "cannot judge"
    ok = abs(period) <= PERIOD_TARGET and (ov is None or abs(ov) <= OVERLAP_TARGET)
    return "agree" if ok else "differ"


def verdict(metrics: dict[str, dict[str, Any]], div: Divergence | None) -> str:
    """One line: do the runs agree within the fidelity targets, and where they part."""
    period, overlap = metrics["period_ms"], metrics["overlap_score"]
    where = ("schedules agree on every chunk" if div is None
             else f"first divergence at chunk {div.chunk} ({div.kind}): {div.detail}")
    head = status(metrics)
    if head == "cannot judge":
        return f"cannot judge: period missing in one trace; {where}"
    ov = overlap["abs_error"]
    ov_text = "OverlapScore missing" if ov is None else f"OverlapScore {ov:+.3f}"
    return (f"{head}: measured period {_pct(period['rel_error'])} vs predicted "
            f"({period['predicted']:.2f} -> {period['measured']:.2f} ms), {ov_text} "
            f"(targets {PERIOD_TARGET:.0%}, {OVERLAP_TARGET}); {where}")


def diff_traces(predicted: Trace, measured: Trace, tolerance: float = 0.2) -> dict[str, Any]:
    """The full comparison as a JSON-able dict (see module docstring).

    ``tolerance``: timing divergence threshold as a fraction of the predicted period.
    """
    mp, mm = compute_metrics(predicted), compute_metrics(measured)
    metrics = metric_errors(mp, mm)
    scale = mp.get("period_ms") or float(_durations(predicted)["dur"].median() or 1.0)
    tol_ms = tolerance * float(scale)
    first_steady = int(mp.get("window", {}).get("first_chunk", 0) or 0)
    div = first_divergence(predicted, measured, tol_ms, first_steady)
    fields = meta_differences(predicted.meta, measured.meta)
    warnings = []
    if fields:
        shown = "; ".join(fields[:8]) + (f"; ... and {len(fields) - 8} more"
                                         if len(fields) > 8 else "")
        warnings.append(f"the traces are of different scenarios/policies: {shown}")
    return {
        "predicted_source": predicted.source,
        "measured_source": measured.source,
        "metrics": metrics,
        "phases": phase_errors(predicted, measured),
        "tolerance_ms": tol_ms,
        "divergence": div.as_dict() if div else None,
        "differing_fields": fields,
        "warnings": warnings,
        "status": status(metrics),
        "verdict": verdict(metrics, div),
        "idle_causes": idle_difference(predicted, measured),
    }
