"""Metrics of DESIGN.md computed from a trace alone (shared by sim, exec, diff, sweeps, reports).

Steady state: the emits of one session in emission order, skipping the first
``warmup`` (``"auto"``: MSER-5) and the cool-down (the emits after the session's last
input entered: a finite run's drain); ``period_k`` is the gap to the previous emit. The
window is kept online (:mod:`pipefill.traces.window`): a run of any length is summarised
in bounded memory, medians and percentiles from a quantile sketch beyond 65,536 chunks
(within 0.5%, said under ``notes``). ``period_ms`` is the *mean*
gap over the window, (t_emit[last] - t_emit[first]) / (n - 1): the throughput, and
``fps`` derives from it; ``period_p50_ms`` (the median gap) is reported beside it and the
summary says when emits are bursty (the two differ by more than
:data:`BURSTY_TOLERANCE`). A metric that cannot be computed is ``None`` in the result and
its reason is under ``missing``, never 0; a value shown outside its natural range carries
its reason under ``notes``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipefill.traces.memory import memory_of
from pipefill.traces.reduce import TOTAL, SessionState, TraceReducer, last_inputs, record_order
from pipefill.traces.sketch import EXACT_MAX, RELATIVE_ERROR, QuantileSketch
from pipefill.traces.window import Anchor, WindowStats

if TYPE_CHECKING:
    import pandas as pd

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
#: keys that need a steady-state window (at least two emits after the warm-up, before
#: the cool-down)
WINDOW_KEYS = ("period_ms", "fps", "period_p50_ms", "stage0_ms", "stage1_ms",
               "overlap_score", "overlap_window", "latency_p50_ms", "latency_p95_ms",
               "latency_p99_ms", "mesh_idle_ms")


def warmup_of(meta: dict[str, Any], warmup: int | str | None = None) -> int | None:
    """The warm-up to use: ``warmup`` if given, else the run's (trace metadata), else 10;
    ``"auto"`` is None (MSER-5)."""
    wu = warmup if warmup is not None else meta.get("run", {}).get("warmup", 10)
    return None if wu == "auto" else int(wu)


def per_chunk_busy(spans: pd.DataFrame, stage: str) -> pd.Series:
    """Compute-lane busy time of ``stage`` (or its ``stage.<s>`` copies) per chunk (ms),
    ``stage_k`` of DESIGN.md; the items of a batched call share its time."""
    import pandas as pd

    if stage not in ("stage0", "stage1"):
        raise ValueError(f"per-chunk busy time is defined for stage0 and stage1, not {stage}")
    sp = spans[(spans["kind"] == "span") & (spans["lane"] == "compute")]
    sp = sp.iloc[np.argsort(sp["end_ms"].to_numpy(), kind="stable")]
    st, name = sp["stage"].to_numpy(dtype=object), sp["name"].to_numpy(dtype=object)
    s, e = sp["start_ms"].to_numpy(dtype=float), sp["end_ms"].to_numpy(dtype=float)
    chunk = sp["chunk"].to_numpy(dtype=np.int64)
    # a batched call's items are consecutive rows with the same stage, phase and interval
    new = np.ones(len(sp), dtype=bool)
    new[1:] = (st[1:] != st[:-1]) | (name[1:] != name[:-1]) | (s[1:] != s[:-1]) | \
        (e[1:] != e[:-1])
    call = np.cumsum(new) - 1
    items = np.bincount(call)[call] if len(call) else np.zeros(0, dtype=np.int64)
    mine = np.array([str(x).split(".", 1)[0] == stage for x in st], dtype=bool) & (chunk >= 0)
    share = pd.Series((e - s)[mine] / items[mine])
    return share.groupby(chunk[mine]).sum().astype(float).sort_index()


def _rate(res: dict[str, Any], missing: dict[str, str], notes: dict[str, str],
          w: WindowStats, fpc: int) -> None:
    """period (mean gap), fps, the median gap, and whether emits are bursty."""
    res["period_p50_ms"] = w.sk.gap.quantile(50)
    span = w.t1 - w.t0
    if span <= 0:
        reason = (f"all {w.end - w.first_pos + 1} emits of the window fall at one instant "
                  f"(t = {w.t1:.3f} ms): a zero period is not a rate")
        missing["period_ms"] = missing["fps"] = reason
        return
    res["period_ms"] = span / (w.end - w.first_pos)
    res["fps"] = fpc * 1000.0 / res["period_ms"]
    gap = abs(res["period_p50_ms"] - res["period_ms"]) / res["period_ms"]
    res["bursty"] = bool(gap > BURSTY_TOLERANCE)
    if res["bursty"]:
        notes["period_ms"] = (f"emits are bursty: the median gap ({res['period_p50_ms']:.3f} ms)"
                              f" is {gap:.0%} off the mean ({res['period_ms']:.3f} ms); "
                              "period_ms and fps use the mean (the throughput)")


def _overlap(res: dict[str, Any], missing: dict[str, str], notes: dict[str, str],
             w: WindowStats) -> None:
    """OverlapScore (per chunk, DESIGN.md) with the reason when it leaves [0, 1]."""
    res["stage0_ms"], res["stage1_ms"] = w.sk.busy0.quantile(50), w.sk.busy1.quantile(50)
    if not w.sk.ratio.n:
        missing["overlap_score"] = "a stage does no work per chunk in the window"
        return
    score = w.sk.ratio.quantile(50)
    res["overlap_score"] = score = clamp_unit(score) if score is not None else None
    if score is not None and score > 1.0:
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
                 w: WindowStats, stages: set[str]) -> None:
    """Per-stage bubbles and overlap_window over the window's wall time."""
    span = w.t1 - w.t0
    if span <= 0 or w.anchor0 is None or w.anchor1 is None:
        missing["overlap_window"] = "the window holds no time"
        return
    busy = {s: _busy_between(w.anchor0, w.anchor1, s) for s in sorted(stages)}
    res["bubble"] = {s: 1.0 - b / span for s, b in busy.items()}
    value, text = overlap_window(busy, span)
    res["overlap_window"] = value
    if value is None:
        missing["overlap_window"] = text
    elif text:
        notes["overlap_window"] = text


def _busy_between(a0: Anchor, a1: Anchor, stage: str) -> float:
    # a stage's idle time does not depend on whose work it ran (shared stages)
    b1 = a1.busy.get(stage)
    b0 = a0.busy.get(stage)
    return (b1.value if b1 is not None else 0.0) - (b0.value if b0 is not None else 0.0)


def _latency(res: dict[str, Any], missing: dict[str, str], w: WindowStats) -> None:
    if not w.sk.latency.n:
        for q in (50, 95, 99):
            missing[f"latency_p{q}_ms"] = "no input marks for the window's chunks"
        return
    for q in (50, 95, 99):
        res[f"latency_p{q}_ms"] = w.sk.latency.quantile(q)


def _mesh_idle(res: dict[str, Any], missing: dict[str, str], w: WindowStats,
               stages: set[str]) -> None:
    if "stage1" not in stages:
        missing["mesh_idle_ms"] = "no stage1 spans"
        return
    if w.sk.mesh.n:
        res["mesh_idle_ms"] = w.sk.mesh.quantile(50)
    else:
        missing["mesh_idle_ms"] = "stage1 spans do not cover the window"


def window_of(w: WindowStats, warmup: int | None) -> dict[str, Any]:
    """What the window covers, how it was chosen and the cool-down it left out."""
    out: dict[str, Any] = {"warmup": warmup if warmup is not None else w.first_pos,
                           "warmup_method": "mser5" if w.auto else "fixed",
                           "cooldown": w.emits - w.end}
    if w.mser_at_limit:
        out["warmup_note"] = ("MSER-5 put the warm-up at half the run: the transient may "
                              "be longer than the run shows")
    return out


def window_part(res: dict[str, Any], missing: dict[str, str], notes: dict[str, str],
                w: WindowStats, stages: set[str], fpc: int, warmup: int | None) -> None:
    """The window's metrics of one session: ``res["window"]``, the rate, per-chunk
    medians, latency, mesh idle, bubbles and overlap_window (or why each is missing)."""
    res["window"] = window = window_of(w, warmup)
    if w.end - w.first_pos < 1:
        reason = (f"no steady-state window: {w.end} chunks emitted before the cool-down, "
                  f"need more than {w.first_pos} (warm-up {res['warmup']})")
        missing.update(dict.fromkeys(WINDOW_KEYS, reason))
        window.update(periods=0, reason=reason)
    else:
        window.update(first_chunk=w.chunk_first, last_chunk=w.chunk_last,
                      periods=w.end - w.first_pos, t_start_ms=w.t0, t_end_ms=w.t1)
        _rate(res, missing, notes, w, fpc)
        _overlap(res, missing, notes, w)
        _latency(res, missing, w)
        _mesh_idle(res, missing, w, stages)
        _window_fill(res, missing, notes, w, stages)
    _sketch_note(notes, w)


def _session_metrics(red: TraceReducer, session: int, fpc: int) -> dict[str, Any]:
    res: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    missing: dict[str, str] = {}
    notes: dict[str, str] = {}
    sess = red.session(session)
    w = sess.stats
    res.update(chunks=w.emits, warmup=red.warmup if red.warmup is not None else w.first_pos,
               bursty=None, bubble={}, hard_cuts=red.hard_cuts, drops=sess.drops)
    if w.emits and np.isfinite(sess.first_input):
        res["ttff_ms"] = float(w.t_first - sess.first_input)
    else:
        missing["ttff_ms"] = "no emit" if not w.emits else "no input marks in the trace"
    window_part(res, missing, notes, w, sess.stages, fpc, red.warmup)
    _queues(res, missing, red, session)
    _deadlines(res, missing, red, sess)
    res["missing"], res["notes"] = missing, notes
    return res


def _sketch_note(notes: dict[str, str], w: WindowStats) -> None:
    if not w.sk.gap.is_exact:
        notes["quantiles"] = (f"medians and percentiles over more than {EXACT_MAX:,} chunks "
                              f"come from a quantile sketch: within {RELATIVE_ERROR:.1%} "
                              "(relative) of the exact ones")


def _queues(res: dict[str, Any], missing: dict[str, str], red: TraceReducer,
            session: int) -> None:
    w = red.session(session).stats
    res["queues"] = {}
    for name, c in sorted(red.counters.items()):
        if name == TOTAL:
            continue
        stats: dict[str, float] = {"max": c.peak}
        mean = counter_mean(w, name, c.first)
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


def counter_mean(w: WindowStats, name: str, first: float) -> float | None:
    """Time-weighted mean of a counter over the window (from its first sample on)."""
    a0, a1 = w.anchor0, w.anchor1
    if a0 is None or a1 is None or w.end - (w.first or 1) < 1:
        return None
    width = a1.x - max(a0.x, first)
    if width <= 0 or name not in a1.counters:
        return None
    i0 = a0.counters.get(name, 0.0) if a0.x >= first else 0.0
    return (a1.counters[name] - i0) / width


def _deadlines(res: dict[str, Any], missing: dict[str, str], red: TraceReducer,
               sess: SessionState) -> None:
    if red.deadline_ms is None:
        missing["deadline_misses"] = "no run.target_fps given"
    elif sess.stats.emits:
        res["deadline_misses"] = sess.misses
    else:
        missing["deadline_misses"] = "no emit"


def reducer_for(meta: dict[str, Any], warmup: int | str | None = None,
                last_chunk: int | dict[int, int] | None = None) -> TraceReducer:
    """A reducer set up from a run's metadata (warm-up, deadlines) and its cool-down."""
    run = meta.get("run", {})
    target = run.get("target_fps")
    fpc = int(run.get("frames_per_chunk", 12))
    return TraceReducer(warmup_of(meta, warmup), last_chunk,
                        fpc * 1000.0 / target if target else None)


def compute_metrics(trace: Trace, warmup: int | str | None = None) -> dict[str, Any]:
    """Summary of a trace: the first session's metrics, plus per-session ones when several.

    ``warmup`` defaults to the run's (trace metadata), else 10; ``"auto"``: MSER-5. The
    window ends at each session's last input (the cool-down: the chunks still in flight
    then); a trace without input marks has no cool-down.
    """
    red = reducer_for(trace.meta, warmup, last_inputs(trace.events))
    red.feed(record_order(trace.events)).finish()
    return summarize(red, trace.meta)


def summarize(red: TraceReducer, meta: dict[str, Any], rel: float | None = None
              ) -> dict[str, Any]:
    """The summary of what ``red`` consumed (a whole trace, or rows as they were
    recorded) once it has finished; ``rel``: the precision target, if any."""
    run = meta.get("run", {})
    fpc = int(run.get("frames_per_chunk", 12))
    sessions = sorted(s for s, st in red.sessions.items() if st.stats.emits) or [0]
    per = {s: _session_metrics(red, s, fpc) for s in sessions}
    out = dict(per[sessions[0]])
    out.update(steady_fields(red.session(sessions[0]).stats, rel))
    if len(sessions) > 1:
        out["sessions"] = {str(s): m for s, m in per.items()}
        fps = [m["fps"] for m in per.values() if m["fps"] is not None]
        out["aggregate_fps"] = float(sum(fps)) if fps else None
        out.update(_pooled_latency(red, sessions))
    out["bubble_run"] = _run_bubbles(red)
    out["memory"] = mem = memory_of(red)
    if not mem:
        out["missing"] = {**out["missing"], "memory": "no bytes_in_flight counter in the trace"}
    out["source"] = str(meta.get("source", "unknown"))
    return out


def steady_fields(w: WindowStats, rel: float | None = None) -> dict[str, Any]:
    """The precision fields every result carries: the period's 95% half-width
    (``period_ci_ms``, None with fewer than 16 batches of gaps), the chunks run, the
    warm-up used and, with a target ``rel``, whether the half-width is within it."""
    iv = w.interval()
    converged = None
    if rel is not None:
        converged = bool(iv.halfwidth is not None and iv.period is not None
                         and iv.halfwidth <= rel * iv.period)
    return {"period_ci_ms": iv.halfwidth, "chunks_run": w.emits, "warmup_used": iv.first,
            "converged": converged}


def _run_bubbles(red: TraceReducer) -> dict[str, float]:
    """Idle share of each stage over the whole run, first input to last emit (a finite
    batch's fill and drain included, e.g. GPipe's (P-1)/(M+P-1))."""
    x = red._marks
    if "run1" not in x or x["run1"] <= x["run0"]:
        return {}
    span = x["run1"] - x["run0"]
    return {s: 1.0 - b.between("run0", "run1") / span for s, b in sorted(red.stages.items())}


def _pooled_latency(red: TraceReducer, sessions: list[int]) -> dict[str, Any]:
    """p50/p95/p99 of every session's steady-state latencies pooled together."""
    pooled = QuantileSketch()
    for s in sessions:
        pooled.merge(red.session(s).stats.sk.latency)
    return {f"aggregate_latency_p{q}_ms": pooled.quantile(q) for q in (50, 95, 99)}
