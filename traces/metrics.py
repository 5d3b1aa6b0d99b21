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

from pipefill.traces.memory import memory_in_flight
from pipefill.traces.schema import Trace

#: keys every summary carries (None when missing), in display order
SUMMARY_KEYS = (
    "period_ms", "fps", "period_p50_ms", "stage0_ms", "stage1_ms", "overlap_score",
    "overlap_window", "ttff_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "mesh_idle_ms", "q_in_max", "q_out_max", "peak_bytes_in_flight", "deadline_misses",
)
#: relative gap between the median and the mean emit gap above which emits are bursty
BURSTY_TOLERANCE = 0.05
#: keys that need a steady-state window (at least two emits after the warm-up)
WINDOW_KEYS = ("period_ms", "fps", "period_p50_ms", "stage0_ms", "stage1_ms",
               "overlap_score", "overlap_window", "latency_p50_ms", "latency_p95_ms",
               "latency_p99_ms", "mesh_idle_ms")


@dataclass(frozen=True)
class Window:
    """The steady-state window of one session: emits ``first`` (the warm-up's last emit,
    where the first counted gap starts) to the last; ``chunks`` are the chunks whose gap
    is counted (emit positions first+1 .. last)."""

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


def _on_stage(spans: pd.DataFrame, stage: str) -> pd.Series:
    """``stage`` itself or one of its per-session copies (``stage0.<s>`` front ends)."""
    names = spans["stage"].astype(str)
    return (names == stage) | names.str.startswith(stage + ".")


def per_chunk_busy(spans: pd.DataFrame, stage: str) -> pd.Series:
    """Compute-lane busy time of ``stage`` per chunk (ms), ``stage_k`` of DESIGN.md.

    A batched call is one span per item: each item is charged its share of the call.
    """
    sel = spans[_on_stage(spans, stage) & (spans["lane"] == "compute")]
    call = [sel["stage"], sel["name"], sel["start_ms"], sel["end_ms"]]
    items = sel.groupby(call)["chunk"].transform("size") if len(sel) else sel["chunk"]
    return ((sel["end_ms"] - sel["start_ms"]) / items).groupby(sel["chunk"]).sum()


def _busy_in(spans: pd.DataFrame, stage: str, t0: float, t1: float) -> float:
    """Union of a stage's compute spans clipped to [t0, t1]."""
    sel = spans[(spans["stage"] == stage) & (spans["lane"] == "compute")]
    iv = np.clip(sel[["start_ms", "end_ms"]].to_numpy(), t0, t1)
    iv = iv[np.argsort(iv[:, 0], kind="stable")] if len(iv) else iv
    busy, cur_s, cur_e = 0.0, None, None
    for s, e in iv:
        if cur_e is None or s > cur_e:
            busy += 0.0 if cur_e is None else cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        busy += cur_e - cur_s
    return busy


def _queue_stats(trace: Trace, t0: float, t1: float) -> dict[str, dict[str, float]]:
    counters = trace.events[trace.events["kind"] == "counter"]
    out: dict[str, dict[str, float]] = {}
    for name, grp in counters.groupby("name", sort=True):
        grp = grp.sort_values("start_ms", kind="stable")
        times = grp["start_ms"].to_numpy()
        vals = grp["value"].to_numpy()
        stats = {"max": float(vals.max())}
        # time-weighted mean over the window: the value holds until the next sample
        edges = np.clip(np.append(times, t1), t0, t1)
        widths = np.diff(edges)
        if t1 > t0 and widths.sum() > 0:
            stats["mean"] = float((vals * widths).sum() / widths.sum())
        out[str(name)] = stats
    return out


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
             spans: pd.DataFrame, win: Window) -> None:
    """OverlapScore (per chunk, DESIGN.md) with the reason when it leaves [0, 1]."""
    s0 = per_chunk_busy(spans, "stage0").reindex(win.chunks, fill_value=0.0).to_numpy()
    s1 = per_chunk_busy(spans, "stage1").reindex(win.chunks, fill_value=0.0).to_numpy()
    res["stage0_ms"], res["stage1_ms"] = _median(s0), _median(s1)
    low = np.minimum(s0, s1)
    ok = low > 0
    if not ok.any():
        missing["overlap_score"] = "a stage does no work per chunk in the window"
        return
    hidden = np.maximum(0.0, s0 + s1 - win.periods)
    res["overlap_score"] = score = _median(hidden[ok] / low[ok])
    if score > 1.0 + 1e-9:
        notes["overlap_score"] = (
            f"{score:.2f} > 1: per-chunk gaps are shorter than a chunk's own work on the "
            "lesser stage, so the stages do not work one chunk at a time in order "
            "(batched, stream-batched or bursty emits); overlap_window is the share for "
            "this policy")


def overlap_window(busy: dict[str, float], span: float) -> tuple[float | None, str]:
    """(sum B - T) / (sum B - max B) over the window, clipped at 0, with a note or reason."""
    total = sum(busy.values())
    hideable = total - max(busy.values(), default=0.0)
    if len(busy) < 2 or hideable <= 0:
        return None, "needs two stages that both work in the window"
    value = (total - span) / hideable
    if value < 0:
        return 0.0, (f"stages idle together for {span - total:.1f} ms of the "
                     f"{span:.1f} ms window (source- or transport-limited): no work hidden")
    return value, ""


def _window_fill(res: dict[str, Any], missing: dict[str, str], notes: dict[str, str],
                 every: pd.DataFrame, stages: list[str], win: Window) -> None:
    """Per-stage bubbles and overlap_window over the window's wall time."""
    span = win.t1 - win.t0
    if span <= 0:
        missing["overlap_window"] = "the window holds no time"
        return
    # a stage's idle time does not depend on whose work it ran (shared stages)
    busy = {s: _busy_in(every, s, win.t0, win.t1) for s in stages}
    res["bubble"] = {s: 1.0 - b / span for s, b in busy.items()}
    value, text = overlap_window(busy, span)
    res["overlap_window"] = value
    if value is None:
        missing["overlap_window"] = text
    elif text:
        notes["overlap_window"] = text


def _session_metrics(trace: Trace, session: int, warmup: int, fpc: int,
                     target_fps: float | None) -> dict[str, Any]:
    ev = trace.events
    res: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    missing: dict[str, str] = {}
    notes: dict[str, str] = {}
    emits = trace.marks("emit")
    emits = emits[emits["session"] == session].sort_values("start_ms", kind="stable")
    inputs = trace.marks("input")
    inputs = inputs[inputs["session"] == session]
    spans = ev[(ev["kind"] == "span") & (ev["session"] == session)]
    res.update(chunks=len(emits), warmup=warmup, bursty=None, bubble={},
               hard_cuts=len(trace.marks("hard_cut")),
               drops=int(((ev["kind"] == "mark") & (ev["name"] == "drop")
                          & (ev["session"] == session)).sum()))
    t_emit = emits["start_ms"].to_numpy()
    if len(emits) and len(inputs):
        res["ttff_ms"] = float(t_emit[0] - inputs["start_ms"].min())
    else:
        missing["ttff_ms"] = "no emit" if not len(emits) else "no input marks in the trace"
    win = steady_window(t_emit, emits["chunk"].to_numpy(), warmup)
    if isinstance(win, str):
        missing.update(dict.fromkeys(WINDOW_KEYS, win))
        res["window"] = {"warmup": warmup, "periods": 0, "reason": win}
        return _finish(res, missing, notes, trace, 0.0,
                       float(ev["end_ms"].max() if len(ev) else 0.0), target_fps, fpc,
                       t_emit, session)
    res["window"] = win.describe()
    _rate(res, missing, notes, win, fpc)
    _overlap(res, missing, notes, spans, win)
    _latency(res, missing, inputs, emits.iloc[win.first:])
    _mesh_idle(res, missing, spans, emits["chunk"].to_numpy(), win.first)
    every = ev[ev["kind"] == "span"]
    _window_fill(res, missing, notes, every, sorted(str(s) for s in spans["stage"].unique()),
                 win)
    return _finish(res, missing, notes, trace, win.t0, win.t1, target_fps, fpc, t_emit,
                   session)


def _latency(res: dict[str, Any], missing: dict[str, str], inputs: pd.DataFrame,
             win_emits: pd.DataFrame) -> None:
    t_in = inputs.groupby("chunk")["start_ms"].min()
    joined = win_emits.set_index("chunk")["start_ms"] - t_in.reindex(win_emits["chunk"]).values
    lat = joined.dropna().to_numpy()
    if not len(lat):
        for q in (50, 95, 99):
            missing[f"latency_p{q}_ms"] = "no input marks for the window's chunks"
        return
    for q in (50, 95, 99):
        res[f"latency_p{q}_ms"] = float(np.percentile(lat, q))


def _mesh_idle(res: dict[str, Any], missing: dict[str, str], spans: pd.DataFrame,
               chunk_ids: np.ndarray, first: int) -> None:
    s1 = spans[(spans["stage"] == "stage1") & (spans["lane"] == "compute")]
    if s1.empty:
        missing["mesh_idle_ms"] = "no stage1 spans"
        return
    g = s1.groupby("chunk")
    tb0, tb1 = g["start_ms"].min(), g["end_ms"].max()
    cur = tb0.reindex(chunk_ids[first:]).to_numpy()
    prev = tb1.reindex(chunk_ids[first - 1:-1]).to_numpy()
    gaps = np.maximum(0.0, cur - prev)
    gaps = gaps[~np.isnan(gaps)]
    if len(gaps):
        res["mesh_idle_ms"] = _median(gaps)
    else:
        missing["mesh_idle_ms"] = "stage1 spans do not cover the window"


def _finish(res: dict[str, Any], missing: dict[str, str], notes: dict[str, str], trace: Trace,
            t0: float, t1: float, target_fps: float | None, fpc: int, t_emit: np.ndarray,
            session: int = 0) -> dict[str, Any]:
    queues = _queue_stats(trace, t0, t1)
    res["queues"] = {k: v for k, v in queues.items() if k != "bytes_in_flight"}
    for q in ("q_in", "q_out"):
        name = q if q in queues else f"{q}.{session}"  # per-session queues
        if name in queues:
            res[f"{q}_max"] = int(queues[name]["max"])
        else:
            missing[f"{q}_max"] = f"no {q} counter in the trace"
    if "bytes_in_flight" in queues:
        res["peak_bytes_in_flight"] = int(queues["bytes_in_flight"]["max"])
    else:
        missing["peak_bytes_in_flight"] = "no bytes_in_flight counter in the trace"
    if target_fps is None:
        missing["deadline_misses"] = "no run.target_fps given"
    elif len(t_emit):
        # playback starts at the first emit; chunk n is due n chunk-periods later
        due = t_emit[0] + np.arange(len(t_emit)) * fpc * 1000.0 / target_fps
        res["deadline_misses"] = int((t_emit > due + 1e-9).sum())
    else:
        missing["deadline_misses"] = "no emit"
    res["missing"] = missing
    res["notes"] = notes
    return res


def compute_metrics(trace: Trace, warmup: int | None = None) -> dict[str, Any]:
    """Summary of a trace: the first session's metrics, plus per-session ones when several.

    ``warmup`` defaults to the run's (trace metadata), else 10.
    """
    run = trace.meta.get("run", {})
    wu = int(warmup if warmup is not None else run.get("warmup", 10))
    fpc = int(run.get("frames_per_chunk", 12))
    target = run.get("target_fps")
    sessions = sorted(int(s) for s in trace.marks("emit")["session"].unique()) or [0]
    per = {s: _session_metrics(trace, s, wu, fpc, target) for s in sessions}
    out = dict(per[sessions[0]])
    if len(sessions) > 1:
        out["sessions"] = {str(s): m for s, m in per.items()}
        fps = [m["fps"] for m in per.values() if m["fps"] is not None]
        out["aggregate_fps"] = float(sum(fps)) if fps else None
        out.update(_pooled_latency(trace, sessions, wu))
    out["bubble_run"] = _run_bubbles(trace)
    mem = memory_in_flight(trace)
    out["memory"] = mem
    if not mem:
        out["missing"] = {**out["missing"], "memory": "no bytes_in_flight counter in the trace"}
    out["source"] = trace.source
    return out


def _run_bubbles(trace: Trace) -> dict[str, float]:
    """Idle share of each stage over the whole run, first input to last emit (a finite
    batch's fill and drain included, e.g. GPipe's (P-1)/(M+P-1))."""
    emits, inputs = trace.marks("emit"), trace.marks("input")
    if emits.empty:
        return {}
    t0 = float(inputs["start_ms"].min()) if len(inputs) else 0.0
    t1 = float(emits["start_ms"].max())
    spans = trace.spans
    if t1 <= t0:
        return {}
    return {str(s): 1.0 - _busy_in(spans, str(s), t0, t1) / (t1 - t0)
            for s in sorted(spans.loc[spans["lane"] == "compute", "stage"].unique())}


def _pooled_latency(trace: Trace, sessions: list[int], warmup: int) -> dict[str, Any]:
    """p50/p95/p99 of every session's steady-state latencies pooled together."""
    emits, inputs = trace.marks("emit"), trace.marks("input")
    lats = []
    for s in sessions:
        e = emits[emits["session"] == s].sort_values("start_ms", kind="stable").iloc[warmup:]
        t_in = inputs[inputs["session"] == s].groupby("chunk")["start_ms"].min()
        lats.append((e["start_ms"] - t_in.reindex(e["chunk"]).to_numpy()).dropna().to_numpy())
    pooled = np.concatenate(lats) if lats else np.array([])
    return {f"aggregate_latency_p{q}_ms": float(np.percentile(pooled, q)) if len(pooled)
            else None for q in (50, 95, 99)}
