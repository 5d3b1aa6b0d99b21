"""Streamed runs: online metrics and a streamed trace file equal the in-memory ones.

The reference is the same run held whole: ``compute_metrics(simulate(sc))`` and the
trace table. Small blocks make every run cross many block boundaries (batched calls and
windows split between blocks).
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipefill.sim.engine.core import StallError, simulate
from pipefill.sim.engine.stream import simulate_summary
from pipefill.sim.scenario.load import apply_overrides, build_scenario, load_raw
from pipefill.traces.io import read_trace
from pipefill.traces.metrics import compute_metrics, summarize
from pipefill.traces.recorder import Recorder
from pipefill.traces.reduce import TraceReducer, record_order
from tests.helpers.broken_policies import Deadlock, scenario_with

CASES = {
    "default": [],
    "coupled": ["policy.recompute_lag=0", 'policy.anchor="anchor_only"', "policy.hard_cuts=[9]"],
    "multi_session": ["run.sessions=3", 'policy={name="multi_session",max_batch=2}'],
    "stream_batch": ['policy={name="stream_batch",stages=2,balance=true}'],
    "layer_pp": ['policy={name="layer_pp",stages=3,items=4}'],
    "realtime": ['run.source="realtime"', "run.fps_in=90.0", "run.target_fps=80.0"],
}


def _scenario(case: str, chunks: int = 40):
    raw, name = load_raw(None)
    return build_scenario(apply_overrides(raw, [*CASES[case], f"run.chunks={chunks}",
                                                "run.warmup=5"]), name=name)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_streamed_run_equals_the_whole_trace(case, suffix, tmp_path):
    sc = _scenario(case)
    trace = simulate(sc)
    out = tmp_path / f"t{suffix}"
    run = simulate_summary(sc, out, block_rows=37)
    assert run.metrics == compute_metrics(trace)
    assert run.rows == len(trace.events)
    back = read_trace(out)
    pd.testing.assert_frame_equal(back.events, trace.events, check_exact=False, rtol=0,
                                  atol=1e-9)
    assert back.meta == trace.meta


def test_reducer_fed_in_any_blocks_gives_the_same_summary():
    trace = simulate(_scenario("multi_session"))
    rows = list(record_order(trace.events))
    whole = TraceReducer(5).feed(rows).finish()
    for size in (1, 2, 5, 64):
        red = TraceReducer(5)
        for i in range(0, len(rows), size):
            red.feed(rows[i:i + size])
        red.finish()
        assert red.stages.keys() == whole.stages.keys()
        for stage, busy in whole.stages.items():
            assert red.stages[stage].total == busy.total
        assert summarize(red, trace.meta) == summarize(whole, trace.meta)


def test_a_batched_call_is_shared_by_its_items_across_sessions():
    # max_batch=2 over 3 sessions: a stage1 call over items of two sessions charges each
    # item its share, whichever session it belongs to
    trace = simulate(_scenario("multi_session"))
    m = compute_metrics(trace)
    sp = trace.spans
    gen = sp[(sp["stage"] == "stage1") & (sp["lane"] == "compute")].copy()
    items = gen.groupby(["name", "start_ms", "end_ms"])["chunk"].transform("size")
    assert (items == 2).any()
    gen["share"] = (gen["end_ms"] - gen["start_ms"]) / items
    own = gen[gen["session"] == 0].groupby("chunk")["share"].sum()
    window = range(m["window"]["first_chunk"], m["window"]["last_chunk"] + 1)
    assert m["stage1_ms"] == pytest.approx(own.reindex(window).median(), abs=1e-9)


def test_a_stalled_run_leaves_no_file(tmp_path):
    out = tmp_path / "stalled.parquet"
    with pytest.raises(StallError):
        simulate_summary(scenario_with(Deadlock(), {"build": 1, "denoise": 1, "decode": 1}),
                         out)
    assert list(tmp_path.iterdir()) == []


def test_a_streaming_recorder_has_no_trace():
    got: list = []
    rec = Recorder(sink=got.extend, block_rows=2)
    rec.counter("q", "s", 0.0, 1)
    rec.counter("q", "s", 1.0, 2)
    rec.counter("q", "s", 2.0, 3)
    assert len(got) == 2 and len(rec) == 3
    rec.flush()
    assert [r[-1] for r in got] == [1.0, 2.0, 3.0]
    with pytest.raises(RuntimeError, match="sink"):
        rec.trace({})


def test_counter_samples_recorded_together_stream_in_blocks_in_order():
    from pipefill.traces.recorder import Recorder

    blocks: list[list] = []
    rec = Recorder(sink=blocks.append, block_rows=3)
    rec.counters(1.0, (("q_in", "stage1", 1), ("bytes_in_flight", "all", 10)))
    assert blocks == []
    rec.counters(2.0, (("q_in", "stage1", 2), ("bytes_in_flight", "all", 20)))
    assert [len(b) for b in blocks] == [4]  # the block filled: handed on at once
    rec.flush()
    assert [(r[1], r[9], r[11]) for r in blocks[0]] == [
        ("q_in", 1.0, 1.0), ("bytes_in_flight", 1.0, 10.0),
        ("q_in", 2.0, 2.0), ("bytes_in_flight", 2.0, 20.0)]
    assert len(rec) == 4
