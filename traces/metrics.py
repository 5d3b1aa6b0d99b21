"""Metrics of DESIGN.md computed from a trace alone (shared by sim, exec, diff, sweeps, reports).

Steady state: the emits of one session in emission order, skipping the first
``warmup``; ``period_k`` is the gap to the previous emit. ``period_ms`` is the *mean*
gap over the window, (t_emit[last] - t_emit[first]) / (n - 1): the throughput, and
``fps`` derives from it; ``period_p50_ms`` (the median gap) is reported beside it and the
summary says when emits are bursty (the two differ by more than
:data:`BURSTY_TOLERANCE`). A metric that cannot be computed is ``None`` in the result and
its reason is under ``missing``, never 0; a value shown outside its natural range carries
its reason under ``notes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipefill.traces.memory import memory_of
from pipefill.traces.reduce import TOTAL, SessionState, TraceReducer, record_order
from pipefill.traces.schema import Trace

#: keys every summary carries (None when missing), in display order
SUMMARY_KEYS = (
    "period_ms", "fps", "period_p50_ms", "stage0_ms", "stage1_ms", "overlap_score",
    "overlap_window", "ttff_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "mesh_idle_ms", "q_in_max", "q_out_max", "peak_bytes_in_flight", "deadline_misses",
)
#: relative gap between the median and the mean emit gap above which emits are bursty
BURSTY_TOLERANCE = 0.05
#: how far above 1 a share (OverlapScore, overlap_window) may come out of float
#: rounding (sums and differences of span times) and still be shown as exactly 1
UNIT_TOLERANCE = 1e-9
#: OverlapScore above 1 with a period at least this share of the busier stage's work per
#: chunk is cost noise around a full overlap, not several chunks worked on at a time
NOISE_PERIOD_SHARE = 0.95
#: keys that need a steady-state window (at least two emits after the warm-up)
WINDOW_KEYS = ("period_ms", "fps", "period_p50_ms", "stage0_ms", "stage1_ms",
               "overlap_score", "overlap_window", "latency_p50_ms", "latency_p95_ms",
               "latency_p99_ms", "mesh_idle_ms")


@dataclass(frozen=True)
class Window:
    """The steady-state window of one session: emits ``first - 1`` (the warm-up's last
    emit, where the first counted gap starts) to the last; ``chunks`` are the chunks whose
    gap is counted (emit positions first .. last)."""

    warmup: int
    first: int
    chunks: np.ndarray
    periods: np.ndarray
    t0: float
    t1: float

    def describe(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "first_chunk": int(self.chunks[0]),
                "last_chunk": int(self.chunks[-1]), "periods": len(self.periods),
                "t_start_ms": self.t0, "t_end_ms": self.t1}


def _median(values: np.ndarray) -> float:
    return float(np.median(values))


def per_chunk_busy(spans: pd.DataFrame, stage: str) -> pd.Series:
    """Compute-lane busy time of ``stage`` (or its ``stage.<s>`` copies) per chunk (ms),
    ``stage_k`` of DESIGN.md; the items of a batched call share its time."""
    red = TraceReducer(1).feed(record_order(spans)).finish()
    out: dict[int, float] = {}
    for sess in red.sessions.values():
        arr = sess.busy0 if stage == "stage0" else sess.busy1 if stage == "stage1" else None
        if arr is None:
            raise ValueError(f"per-chunk busy time is defined for stage0 and stage1, not {stage}")
        for k in np.flatnonzero(arr.a[: arr.n]):
            out[int(k)] = out.get(int(k), 0.0) + float(arr.a[k])
    return pd.Series(out, dtype=float).sort_index()


def steady_window(t_emit: np.ndarray, chunk_ids: np.ndarray, warmup: int) -> Window | str:
    """The window after ``warmup`` emits, or the reason there is none."""
    first = max(warmup, 1)
    if len(t_emit) < first + 1:
        return (f"no steady-state window: {len(t_emit)} chunks emitted, need more than "
                f"{first} (warm-up {warmup})")
    return Window(warmup, first, chunk_ids[first:], np.diff(t_emit)[first - 1:],
                  float(t_emit[first - 1]), float(t_emit[-1]))


def _rate(res: dict[str, Any], missing: dict[str, str], notes: dict[str, str],
          win: Window, fpc: int) -> None:
    """period (mean gap), fps, the median gap, and whether emits are bursty."""
    res["period_p50_ms"] = _median(win.periods)
    span = win.t1 - win.t0
    if span <= 0:
        reason = (f"all {len(win.periods) + 1} emits of the window fall at one instant "
                  f"(t = {win.t1:.3f} ms): a zero period is not a rate")
        missing["period_ms"] = missing["fps"] = reason
        return
    res["period_ms"] = span / len(win.periods)
    res["fps"] = fpc * 1000.0 / res["period_ms"]
    gap = abs(res["period_p50_ms"] - res["period_ms"]) / res["period_ms"]
    res["bursty"] = bool(gap > BURSTY_TOLERANCE)
    if res["bursty"]:
        notes["period_ms"] = (f"emits are bursty: the median gap ({res['period_p50_ms']:.3f} ms)"
                              f" is {gap:.0%} off the mean ({res['period_ms']:.3f} ms); "
                              "period_ms and fps use the mean (the throughput)")


def _overlap(res: dict[str, Any], missing: dict[str, str], notes: dict[str, str],
             sess: SessionState, win: Window) -> None:
    """OverlapScore (per chunk, DESIGN.md) with the reason when it leaves [0, 1]."""
    s0, s1 = sess.busy0.take(win.chunks), sess.busy1.take(win.chunks)
    res["stage0_ms"], res["stage1_ms"] = _median(s0), _median(s1)
    low = np.minimum(s0, s1)
    ok = low > 0
    if not ok.any():
        missing["overlap_score"] = "a stage does no work per chunk in the window"
        return
    hidden = np.maximum(0.0, s0 + s1 - win.periods)
    res["overlap_score"] = score = clamp_unit(_median(hidden[ok] / low[ok]))
    if score > 1.0:
        notes["overlap_score"] = _above_one(score, res)


def clamp_unit(value: float) -> float:
    """``value``, or exactly 1 when it exceeds 1 by no more than UNIT_TOLERANCE (float
    rounding: 1.0000000000000002 is a full overlap, not more than one)."""
    return 1.0 if 1.0 < value <= 1.0 + UNIT_TOLERANCE else value


def _above_one(score: float, res: dict[str, Any]) -> str:
    """Why the per-chunk OverlapScore came out above 1: noise around a full overlap when
    the period is the busier stage's work per chunk, else chunks worked on together."""
    period, busier = res.get("period_ms"), max(res["stage0_ms"], res["stage1_ms"])
    if period is not None and not res.get("bursty") and period >= NOISE_PERIOD_SHARE * busier:
        return (f"{score:.2f} > 1 from cost noise: the stages overlap fully (period "
                f"{period:.1f} ms vs {busier:.1f} ms of work per chunk on the busier stage), "
                "and a gap after a late emit is shorter than the next chunk's work, which "
                "puts the per-chunk median a little above 1; overlap_window is the share "
                "over the window")
    return (f"{score:.2f} > 1: per-chunk gaps are shorter than a chunk's own work on the "
            "lesser stage, so the stages do not work one chunk at a time in order "
            "(batched, stream-batched or bursty emits); overlap_window is the share for "
            "this policy")


def overlap_window(busy: dict[str, float], span: float) -> tuple[float | None, str]:
    """(sum B - T) / (sum B - max B) over the window, clipped at 0, with a note or reason."""
    total = sum(busy.values())
    hideable = total - max(busy.values(), default=0.0)
    if len(busy) < 2 or hideable <= 0:
        return None, "needs two stages that both work in the window"
    value = clamp_unit((total - span) / hideable)
    if value < 0:
        return 0.0, (f"stages idle together for {span - total:.1f} ms of the "
                     f"{span:.1f} ms window (source- or transport-limited): no work hidden")
    return value, ""


def _window_fill(res: dict[str, Any], missing: dict[str, str], notes: dict[str, str],
                 red: TraceReducer, session: int, win: Window) -> None:
    """Per-stage bubbles and overlap_window over the window's wall time."""
    span = win.t1 - win.t0
    if span <= 0:
        missing["overlap_window"] = "the window holds no time"
        return
    # a stage's idle time does not depend on whose work it ran (shared stages)
    stages = sorted(red.session(session).stages)
    busy = {s: red.stages[s].between(("t0", session), ("last", session)) if s in red.stages
            else 0.0 for s in stages}
    res["bubble"] = {s: 1.0 - b / span for s, b in busy.items()}
    value, text = overlap_window(busy, span)
    res["overlap_window"] = value
    if value is None:
        missing["overlap_window"] = text
    elif text:
        notes["overlap_window"] = text


def _latency(res: dict[str, Any], missing: dict[str, str], sess: SessionState,
             first: int) -> None:
    t_emit, chunks = sess.emits()
    lat = t_emit[first:] - sess.t_input.take(chunks[first:])
    lat = lat[~np.isnan(lat)]
    if not len(lat):
        for q in (50, 95, 99):
            missing[f"latency_p{q}_ms"] = "no input marks for the window's chunks"
        return
    for q in (50, 95, 99):
        res[f"latency_p{q}_ms"] = float(np.percentile(lat, q))


def _mesh_idle(res: dict[str, Any], missing: dict[str, str], sess: SessionState,
               first: int) -> None:
    if sess.mesh_start.n == 0:
        missing["mesh_idle_ms"] = "no stage1 spans"
        return
    _, chunks = sess.emits()
    gaps = np.maximum(0.0, sess.mesh_start.take(chunks[first:])
                      - sess.mesh_end.take(chunks[first - 1:-1]))
    gaps = gaps[~np.isnan(gaps)]
    if len(gaps):
        res["mesh_idle_ms"] = _median(gaps)
    else:
        missing["mesh_idle_ms"] = "stage1 spans do not cover the window"


def _session_metrics(red: TraceReducer, session: int, warmup: int, fpc: int,
                     target_fps: float | None) -> dict[str, Any]:
    res: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    missing: dict[str, str] = {}
    notes: dict[str, str] = {}
    sess = red.session(session)
    t_emit, chunks = sess.emits()
    res.update(chunks=len(t_emit), warmup=warmup, bursty=None, bubble={},
               hard_cuts=red.hard_cuts, drops=sess.drops)
    if len(t_emit) and np.isfinite(sess.first_input):
        res["ttff_ms"] = float(t_emit[0] - sess.first_input)
    else:
        missing["ttff_ms"] = "no emit" if not len(t_emit) else "no input marks in the trace"
    win = steady_window(t_emit, chunks, warmup)
    if isinstance(win, str):
        missing.update(dict.fromkeys(WINDOW_KEYS, win))
        res["window"] = {"warmup": warmup, "periods": 0, "reason": win}
    else:
        res["window"] = win.describe()
        _rate(res, missing, notes, win, fpc)
        _overlap(res, missing, notes, sess, win)
        _latency(res, missing, sess, win.first)
        _mesh_idle(res, missing, sess, win.first)
        _window_fill(res, missing, notes, red, session, win)
    _queues(res, missing, red, session)
    _deadlines(res, missing, t_emit, target_fps, fpc)
    res["missing"], res["notes"] = missing, notes
    return res


def _queues(res: dict[str, Any], missing: dict[str, str], red: TraceReducer,
            session: int) -> None:
    window = (("t0", session), ("last", session))
    res["queues"] = {}
    for name, c in sorted(red.counters.items()):
        if name == TOTAL:
            continue
        stats = {"max": c.peak}
        mean = c.mean(*window)
        if mean is not None:
            stats["mean"] = mean
        res["queues"][name] = stats
    for q in ("q_in", "q_out"):
        name = q if q in red.counters else f"{q}.{session}"  # per-session queues
        if name in red.counters:
            res[f"{q}_max"] = int(red.counters[name].peak)
        else:
            missing[f"{q}_max"] = f"no {q} counter in the trace"
    if TOTAL in red.counters:
        res["peak_bytes_in_flight"] = int(red.counters[TOTAL].peak)
    else:
        missing["peak_bytes_in_flight"] = "no bytes_in_flight counter in the trace"


def _deadlines(res: dict[str, Any], missing: dict[str, str], t_emit: np.ndarray,
               target_fps: float | None, fpc: int) -> None:
    if target_fps is None:
        missing["deadline_misses"] = "no run.target_fps given"
    elif len(t_emit):
        # playback starts at the first emit; chunk n is due n chunk-periods later
        due = t_emit[0] + np.arange(len(t_emit)) * fpc * 1000.0 / target_fps
        res["deadline_misses"] = int((t_emit > due + 1e-9).sum())
    else:
        missing["deadline_misses"] = "no emit"


def compute_metrics(trace: Trace, warmup: int | None = None) -> dict[str, Any]:
    """Summary of a trace: the first session's metrics, plus per-session ones when several.

    ``warmup`` defaults to the run's (trace metadata), else 10.
    """
    wu = _warmup(trace.meta, warmup)
    red = TraceReducer(wu).feed(record_order(trace.events)).finish()
    return summarize(red, trace.meta, wu)


def _warmup(meta: dict[str, Any], warmup: int | None) -> int:
    return int(warmup if warmup is not None else meta.get("run", {}).get("warmup", 10))


def summarize(red: TraceReducer, meta: dict[str, Any], warmup: int | None = None) -> dict[str, Any]:
    """The summary of what ``red`` consumed (a whole trace, or rows as they were recorded)."""
    run = meta.get("run", {})
    wu = _warmup(meta, warmup)
    fpc = int(run.get("frames_per_chunk", 12))
    target = run.get("target_fps")
    sessions = sorted(s for s, st in red.sessions.items() if len(st.t_emit)) or [0]
    per = {s: _session_metrics(red, s, wu, fpc, target) for s in sessions}
    out = dict(per[sessions[0]])
    if len(sessions) > 1:
        out["sessions"] = {str(s): m for s, m in per.items()}
        fps = [m["fps"] for m in per.values() if m["fps"] is not None]
        out["aggregate_fps"] = float(sum(fps)) if fps else None
        out.update(_pooled_latency(red, sessions, wu))
    out["bubble_run"] = _run_bubbles(red)
    out["memory"] = mem = memory_of(red)
    if not mem:
        out["missing"] = {**out["missing"], "memory": "no bytes_in_flight counter in the trace"}
    out["source"] = str(meta.get("source", "unknown"))
    return out


def _run_bubbles(red: TraceReducer) -> dict[str, float]:
    """Idle share of each stage over the whole run, first input to last emit (a finite
    batch's fill and drain included, e.g. GPipe's (P-1)/(M+P-1))."""
    x = red._marks
    if "run1" not in x or x["run1"] <= x["run0"]:
        return {}
    span = x["run1"] - x["run0"]
    return {s: 1.0 - b.between("run0", "run1") / span for s, b in sorted(red.stages.items())}


def _pooled_latency(red: TraceReducer, sessions: list[int], warmup: int) -> dict[str, Any]:
    """p50/p95/p99 of every session's steady-state latencies pooled together."""
    lats = []
    for s in sessions:
        t_emit, chunks = red.session(s).emits()
        lat = t_emit[warmup:] - red.session(s).t_input.take(chunks[warmup:])
        lats.append(lat[~np.isnan(lat)])
    pooled = np.concatenate(lats) if lats else np.array([])
    return {f"aggregate_latency_p{q}_ms": float(np.percentile(pooled, q)) if len(pooled)
            else None for q in (50, 95, 99)}
