"""Metrics from a hand-built trace: every number below is computed by hand."""

from __future__ import annotations

import pytest

from pipefill.traces.metrics import compute_metrics
from pipefill.traces.recorder import Recorder, Tag


def _trace(periods=(10.0, 10.0, 14.0), target_fps=None, last_input=60.0):
    """stage0: build 2 + decode 4 per chunk, stage1: denoise 8; emits at given gaps; one
    more input, never emitted, at ``last_input`` (None: none): the window ends at the last
    emit before it (the cool-down)."""
    rec = Recorder()
    t_emit = 20.0
    for k in range(len(periods) + 1):
        tag = Tag(0, k, k, 0)
        rec.mark("input", "stage0", tag, 10.0 * k)
        t_emit += periods[k - 1] if k else 0.0
        rec.span("build", "stage0", "compute", tag, t_emit - 20, t_emit - 18)
        rec.span("denoise", "stage1", "compute", tag, t_emit - 16, t_emit - 8)
        rec.span("decode", "stage0", "compute", tag, t_emit - 4, t_emit)
        rec.mark("emit", "stage0", tag, t_emit)
    if last_input is not None:
        rec.mark("input", "stage0", Tag(0, len(periods) + 1, 99, 0), last_input)
    rec.counter("q_in", "stage1", 0.0, 1)
    rec.counter("q_in", "stage1", 25.0, 2)
    meta = {"source": "sim", "run": {"warmup": 1, "frames_per_chunk": 12,
                                     "target_fps": target_fps}}
    return rec.trace(meta)


def test_hand_computed_metrics():
    m = compute_metrics(_trace())
    # emits at 20, 30, 40, 54; window = chunks 1..3, periods 10, 10, 14: mean 34/3
    assert m["period_ms"] == pytest.approx(34 / 3) and m["period_p50_ms"] == 10.0
    assert m["fps"] == pytest.approx(12 * 1000 / (34 / 3))
    # median 10 vs mean 11.33: 12% apart, so the summary says the emits are bursty
    assert m["bursty"] is True and "bursty" in m["notes"]["period_ms"]
    assert m["stage0_ms"] == 6.0 and m["stage1_ms"] == 8.0
    # hidden = 6 + 8 - period = 4, 4, 0 over min(6, 8) = 6 -> median 4/6
    assert m["overlap_score"] == pytest.approx(4 / 6)
    assert m["ttff_ms"] == 20.0
    # latency = emit - input: 30-10, 40-20, 54-30
    assert m["latency_p50_ms"] == 20.0
    # stage1 spans [14,22],[24,32],[38,46]; previous ends 12(k0: [4,12]),22,32 -> gaps 2,2,6
    assert m["mesh_idle_ms"] == 2.0
    # window [20, 54] = 34 ms; stage1 busy [20,22]+8+8 = 18 -> bubble 16/34
    assert m["bubble"]["stage1"] == pytest.approx(16 / 34)
    # stage0 in [20, 54]: build 2+2, decode 4+4+4 = 16; stage1 18: (16 + 18 - 34) / 16 = 0
    assert m["bubble"]["stage0"] == pytest.approx(18 / 34)
    assert m["overlap_window"] == 0.0 and "overlap_window" not in m["notes"]
    assert m["q_in_max"] == 2
    # depth 1 until t=25, then 2: time-weighted over [20, 54] = (5*1 + 29*2) / 34
    assert m["queues"]["q_in"]["mean"] == pytest.approx(63 / 34)
    assert m["missing"]["deadline_misses"] == "no run.target_fps given"
    assert m["window"] == {"warmup": 1, "warmup_method": "fixed", "cooldown": 0,
                           "first_chunk": 1, "last_chunk": 3, "periods": 3,
                           "t_start_ms": 20.0, "t_end_ms": 54.0}


def test_the_window_ends_when_the_last_input_enters():
    # inputs at 0, 10, 20, 30; the last chunk's input mark is at 30 and its first work
    # (build) starts at 34: it entered at 34, so emits 40 and 54 are the drain (cool-down)
    m = compute_metrics(_trace(last_input=None))
    assert m["window"]["cooldown"] == 2 and m["window"]["last_chunk"] == 1
    assert m["period_ms"] == 10.0 and m["chunks"] == 4
    # a last input that never starts any work never entered: no cool-down
    m = compute_metrics(_trace(last_input=40.0))
    assert m["window"]["cooldown"] == 0 and m["period_ms"] == pytest.approx(34 / 3)


def test_deadline_misses_against_target_fps():
    # 12 frames at 1000 fps = 12 ms per chunk: due 20, 32, 44, 56 vs emits 20, 30, 40, 54
    assert compute_metrics(_trace(target_fps=1000.0))["deadline_misses"] == 0
    # at 1500 fps (8 ms): due 20, 28, 36, 44 -> three late
    assert compute_metrics(_trace(target_fps=1500.0))["deadline_misses"] == 3


def test_too_few_chunks_is_missing_not_zero():
    m = compute_metrics(_trace(periods=()))
    assert m["period_ms"] is None and m["overlap_score"] is None
    assert m["missing"]["period_ms"] == ("no steady-state window: 1 chunks emitted before the "
                                         "cool-down, need more than 1 (warm-up 1)")
    assert m["window"]["reason"] == m["missing"]["period_ms"]
    assert m["ttff_ms"] == 20.0
