"""Hand-derived schedules: exact emit times, periods and drops for small deterministic cases.

Unless said otherwise: build = 1, denoise = 10 (one step), decode = 5 ms and transport
takes no time, so every derivation below only has compute on it.
"""

from __future__ import annotations

import pytest

from pipefill.sim.engine.core import simulate
from pipefill.traces.metrics import compute_metrics
from tests.helpers.scenarios import make_scenario

BASE = {"build": 1.0, "denoise": 10.0, "decode": 5.0}


def emits(trace) -> list[tuple[int, float]]:
    em = trace.marks("emit")
    return list(zip(em["chunk"].tolist(), em["start_ms"].tolist(), strict=True))


def test_serial_is_the_sum_of_its_phases():
    # chunk k: build [16k, 16k+1], denoise [16k+1, 16k+11], decode [16k+11, 16k+16]
    trace = simulate(make_scenario({"name": "serial"}, BASE, chunks=4))
    assert emits(trace) == [(0, 16.0), (1, 32.0), (2, 48.0), (3, 64.0)]
    m = compute_metrics(trace, warmup=1)
    assert m["period_ms"] == 16.0
    assert m["ttff_ms"] == 16.0
    assert m["overlap_score"] == 0.0  # hidden = 6 + 10 - 16 = 0


def test_phase_pp_double_buffered_is_stage1_bound():
    # t=0 build0 [0,1] -> stage1 denoise0 [1,11]; stage0 pre-stages build1 [1,2] (D_in=2),
    # then q_in is full. t=11: result0 back, slot free: producer_first builds 2 [11,12],
    # decodes 0 [12,17] -> emit 17. t=21: result1, build3 [21,22], decode1 [22,27] -> 27 ...
    # The tail has nothing left to build: decode3 [41,46], decode4 [51,56].
    pol = {"name": "phase_pp", "d_in": 2, "d_out": 2, "stage0_order": "producer_first"}
    trace = simulate(make_scenario(pol, BASE, chunks=5))
    assert emits(trace) == [(0, 17.0), (1, 27.0), (2, 37.0), (3, 46.0), (4, 56.0)]
    m = compute_metrics(trace, warmup=1)
    # the last input enters at build4 [31,32]: emits 37, 46, 56 are the drain (the
    # cool-down, gaps 10, 9, 10); the window 17..27 is the steady 10 ms
    assert m["period_ms"] == 10.0 and m["period_p50_ms"] == 10.0
    assert m["window"]["cooldown"] == 3
    # window [17, 27]: stage1 busy 4 (denoise1) + 6 (denoise2) = 10, stage0 build3 1 +
    # decode1 5 = 6: (10 + 6 - 10) / (10 + 6 - 10) = 1, all of stage0's work hidden
    assert m["overlap_window"] == pytest.approx(1.0)
    assert m["stage0_ms"] == 6.0 and m["stage1_ms"] == 10.0
    # hidden = 6 + 10 - 10 = 6 = min(6, 10): stage0 fully hidden under stage1
    assert m["overlap_score"] == 1.0
    # window [17, 27] (10 ms): stage1 never idles (the drain, where it does, is left
    # out); stage0 idles 4 of 10 ms. Over the whole run [0, 56] the drain shows:
    # stage1 busy 50 of 56, stage0 1+1+1+5+1+5+1+5+5+5 = 30
    assert m["bubble"]["stage1"] == 0.0
    assert m["bubble"]["stage0"] == pytest.approx(4 / 10)
    assert m["bubble_run"]["stage1"] == pytest.approx(6 / 56)
    assert m["bubble_run"]["stage0"] == pytest.approx(26 / 56)
    assert m["q_in_max"] == 2 and m["q_out_max"] == 2


def test_single_buffers_with_consumer_first_serialize():
    # D_in=1: build k+1 waits for the end of denoise k; consumer_first then decodes k
    # before building k+1, so stage1 idles through decode + build: the serial sum again.
    pol = {"name": "phase_pp", "d_in": 1, "d_out": 1, "stage0_order": "consumer_first"}
    trace = simulate(make_scenario(pol, BASE, chunks=3))
    assert emits(trace) == [(0, 16.0), (1, 32.0), (2, 48.0)]


def test_r0a_lag0_couples_decode_into_the_loop():
    # recompute=2, encode=3. Envelope k+1 needs decode(k) + encode(k):
    # decode0 [11,16] emit 16, encode0 [16,19], build1 [19,20], recompute1 [20,22],
    # denoise1 [22,32], decode1 [32,37] emit 37, ... period = 5+3+1+2+10 = 21.
    pol = {"name": "phase_pp", "recompute": "r0a", "recompute_lag": 0}
    costs = {**BASE, "recompute": 2.0, "encode": 3.0}
    trace = simulate(make_scenario(pol, costs, chunks=4))
    assert emits(trace) == [(0, 16.0), (1, 37.0), (2, 58.0), (3, 79.0)]
    spans = trace.spans
    rec = spans[spans["name"] == "recompute"]
    assert rec["chunk"].tolist() == [1, 2, 3]  # chunk 0 starts from an init-cache envelope


def test_r0a_lag1_restores_overlap():
    # With lag 1 the longest cycle spans two chunks: decode[k] -> encode[k] -> build[k+2]
    # -> recompute+denoise[k+2] -> decode[k+2] = (5+3+1+12)/2 = 10.5 per chunk, below
    # stage1's own 12 ms (recompute 2 + denoise 10): the period is stage1's 12.
    pol = {"name": "phase_pp", "recompute": "r0a", "recompute_lag": 1}
    costs = {**BASE, "recompute": 2.0, "encode": 3.0}
    m = compute_metrics(simulate(make_scenario(pol, costs, chunks=20)), warmup=5)
    assert m["period_ms"] == 12.0


def test_anchor_only_shortens_the_coupled_cycle():
    # lag 0 with anchor_only: stage0 needs only anchor_decode(k)=1 + encode(k)=3 before
    # build k+1; the full decode (5) moves off the critical path, so the cycle is
    # anchor 1 + encode 3 + build 1 + recompute 2 + denoise 10 = 17 (vs 21 with full).
    pol = {"name": "phase_pp", "recompute": "r0a", "recompute_lag": 0, "anchor": "anchor_only"}
    costs = {**BASE, "recompute": 2.0, "encode": 3.0, "anchor_decode": 1.0}
    trace = simulate(make_scenario(pol, costs, chunks=20))
    # emits 21 + 17k up to chunk 18; the last chunk has no successor to prepare, so it
    # emits 12 ms after chunk 18 (its denoise ends 7 ms after the decode of 18, + 5 decode)
    assert emits(trace)[18:] == [(18, 327.0), (19, 339.0)]
    m = compute_metrics(trace, warmup=5)
    assert m["period_p50_ms"] == 17.0
    # the window ends before the cool-down (the last chunk's 12 ms drain): 17 ms exactly
    assert m["period_ms"] == pytest.approx(17.0, abs=1e-12)


def test_hard_cut_drops_in_flight_chunks_and_refills():
    # As in the double-buffered case up to t=21: decode0 [12,17] emits chunk 0; at 21
    # result1 returns, stage1 starts chunk 2 [21,31], stage0 builds 3 [21,22]. At 22
    # stage0 reaches chunk 4, a cut: envelope 3 (queued, unrun) and result 1 (arrived)
    # are flushed. Chunk 4 opens epoch 1: build4 [22,23]. At 31 chunk 2 returns from
    # stage1; producer_first builds 5 [31,32] first, then drops result 2 at 32.
    # denoise4 [31,41], decode4 [41,46]; denoise5 [41,51], decode5 [51,56].
    pol = {"name": "phase_pp", "hard_cuts": [4]}
    trace = simulate(make_scenario(pol, BASE, chunks=6))
    assert emits(trace) == [(0, 17.0), (4, 46.0), (5, 56.0)]
    assert trace.marks("emit")["epoch"].tolist() == [0, 1, 1]
    drops = trace.marks("drop")
    assert list(zip(drops["chunk"], drops["start_ms"], strict=True)) == [
        (3, 22.0), (1, 22.0), (2, 32.0)]
    cut = trace.marks("hard_cut")
    assert cut["start_ms"].tolist() == [22.0] and cut["epoch"].tolist() == [1]


def test_realtime_source_paces_the_pipeline():
    # 12 frames per chunk at 120 fps: input k is complete at 100 (k+1) ms, far slower
    # than the pipeline, so each chunk is emitted 17 ms after its input (1 + 10 + 5 + 1
    # wait-free); the period is the input period.
    sc = make_scenario({"name": "phase_pp"}, BASE, chunks=6, source="realtime", fps_in=120.0)
    trace = simulate(sc)
    assert [t for _, t in emits(trace)] == [116.0, 216.0, 316.0, 416.0, 516.0, 616.0]
    m = compute_metrics(trace, warmup=1)
    assert m["period_ms"] == 100.0
    assert m["latency_p50_ms"] == 16.0
    assert m["ttff_ms"] == 16.0


def test_denoise_steps_repeat_on_stage1():
    costs = {**BASE, "denoise": {"mean": 4.0, "steps": 3}}
    trace = simulate(make_scenario({"name": "serial"}, costs, chunks=2))
    steps = trace.spans[trace.spans["name"] == "denoise"]["step"].tolist()
    assert steps == [0, 1, 2, 0, 1, 2]
    assert emits(trace) == [(0, 18.0), (1, 36.0)]  # 1 + 3*4 + 5


def test_transport_spans_sit_on_the_comm_lane():
    tr = {"latency_ms": 0.5, "bandwidth_gbps": 1.0, "envelope_bytes": 1_000_000,
          "result_bytes": 500_000}
    # envelope 0.5 + 1 ms, result 0.5 + 0.5 ms: serial sum 16 + 1.5 + 1 = 18.5
    trace = simulate(make_scenario({"name": "serial"}, BASE, chunks=2, transport=tr))
    sends = trace.spans[trace.spans["name"] == "send"]
    assert set(sends["lane"]) == {"comm"}
    # the last message is the shutdown control call (no payload bytes: latency only)
    durations = (sends["end_ms"] - sends["start_ms"]).round(9).tolist()
    assert durations == [1.5, 1.0, 1.5, 1.0, 0.5]
    assert emits(trace) == [(0, 18.5), (1, 37.0)]
