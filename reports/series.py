"""Per-chunk series behind the report's figures, by the metric definitions of DESIGN.md.

:func:`chunk_series` is the per-chunk view of what :func:`pipefill.traces.metrics.compute_metrics`
summarises: the mean of ``period_ms`` over the window rows is the trace's ``period_ms``
(the throughput; their median is ``period_p50_ms``), the median of the defined
``overlap`` values its ``overlap_score``, and so on (the tests hold the two to each other).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipefill.traces.metrics import per_chunk_busy
from pipefill.traces.schema import Trace

#: the two stages the overlap metric is defined on (DESIGN: stage0_k, stage1_k)
OVERLAP_STAGES = ("stage0", "stage1")


def window_of(trace: Trace) -> dict:  # type: ignore[type-arg]
    """The metrics' steady-state window of the trace (warm-up, periods, cool-down)."""
    from pipefill.traces.metrics import compute_metrics

    return dict(compute_metrics(trace).get("window", {}))


def warmup_of(trace: Trace) -> int:
    """The warm-up the metrics use (MSER-5's when the run's is ``"auto"``)."""
    wu = trace.meta.get("run", {}).get("warmup", 10)
    return int(window_of(trace).get("warmup", 0)) if wu == "auto" else int(wu)


def first_session(trace: Trace) -> int:
    sessions = sorted(int(s) for s in trace.marks("emit")["session"].unique())
    return sessions[0] if sessions else 0


def busy_per_chunk(trace: Trace, stage: str, session: int) -> pd.Series:
    """Compute-lane busy time of ``stage`` per chunk (ms), as the metrics count it."""
    sp = trace.spans
    return per_chunk_busy(sp[sp["session"] == session], stage)


def chunk_series(trace: Trace) -> pd.DataFrame:
    """One row per emitted chunk of the first session, in emission order.

    Columns: ``chunk``, ``epoch``, ``t_emit_ms``, ``period_ms`` (NaN for the first emit),
    ``stage0_ms``, ``stage1_ms``, ``hidden_ms``, ``overlap`` (NaN where undefined),
    ``latency_ms`` (NaN without an input mark) and ``in_window`` (after the warm-up and
    before the cool-down: the metrics' window).
    """
    session = first_session(trace)
    em = trace.marks("emit")
    em = em[em["session"] == session].sort_values("start_ms", kind="stable")
    chunks = em["chunk"].to_numpy()
    t_emit = em["start_ms"].to_numpy()
    out = pd.DataFrame({"chunk": chunks, "epoch": em["epoch"].to_numpy(), "t_emit_ms": t_emit})
    out["period_ms"] = np.append(np.nan, np.diff(t_emit)) if len(t_emit) else []
    for stage in OVERLAP_STAGES:
        busy = busy_per_chunk(trace, stage, session)
        out[f"{stage}_ms"] = busy.reindex(chunks, fill_value=0.0).to_numpy()
    s0, s1 = out["stage0_ms"], out["stage1_ms"]
    out["hidden_ms"] = np.maximum(0.0, s0 + s1 - out["period_ms"])
    low = np.minimum(s0, s1)
    out["overlap"] = (out["hidden_ms"] / low).where(low > 0)
    inputs = trace.marks("input")
    t_in = inputs[inputs["session"] == session].groupby("chunk")["start_ms"].min()
    out["latency_ms"] = t_emit - t_in.reindex(chunks).to_numpy()
    win = window_of(trace)
    end = len(out) - int(win.get("cooldown", 0))
    first = end - int(win.get("periods", 0)) if win.get("periods") else len(out)
    pos = np.arange(len(out))
    out["in_window"] = (pos >= first) & (pos < end)
    return out


def cut_chunks(trace: Trace) -> list[int]:
    """Chunks that start a new epoch (from the hard_cut marks)."""
    return sorted(int(c) for c in trace.marks("hard_cut")["chunk"])


def cut_times(trace: Trace) -> list[float]:
    return sorted(float(t) for t in trace.marks("hard_cut")["start_ms"])


def dropped(trace: Trace) -> pd.DataFrame:
    return trace.marks("drop")[["stage", "chunk", "epoch", "call_id", "start_ms"]]
