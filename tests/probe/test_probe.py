"""pipefill.probe: exact rows on a fake clock, threads, spilling, CUDA timing, from_env."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from itertools import count

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill import probe
from pipefill.probe.cuda import CudaTimer
from pipefill.probe.rows import ROW_COLUMNS, RowStore
from pipefill.traces.io import read_trace
from pipefill.traces.metrics import compute_metrics
from pipefill.traces.schema import COLUMNS

NAN = float("nan")


def ms_clock(step_ms: float = 1.0):
    """A fake ns clock: 0 at the recorder's construction, then +step_ms per reading."""
    ticks = count()
    return lambda: int(next(ticks) * step_ms * 1_000_000)


def test_row_columns_are_the_trace_schema():
    assert list(ROW_COLUMNS) == list(COLUMNS)


def test_rows_are_exact_on_a_fake_clock():
    rec = probe.Recorder(policy={"name": "phase_pp", "d_in": 2}, clock=ms_clock())
    s0, s1 = rec.stage("stage0"), rec.stage("stage1")
    with s0.span("build", chunk=3, call_id=7, epoch=1):  # reads 1 ms and 2 ms
        pass
    s1.counter("q_in", 2)                                 # 3 ms
    s0.send("q_in", chunk=3, nbytes=4096, duration_ms=0.5)  # 4 ms
    with s1.span("denoise", chunk=3, step=1):              # 5, 6
        pass
    s0.mark("emit", chunk=3)                                # 7
    ev = rec.trace().events
    rows = [tuple(r) for r in ev[["kind", "name", "stage", "lane", "chunk", "call_id", "epoch",
                                  "step", "start_ms", "end_ms"]].itertuples(index=False)]
    assert rows == [
        ("span", "build", "stage0", "compute", 3, 7, 1, -1, 1.0, 2.0),
        ("counter", "q_in", "stage1", "queue", -1, -1, 0, -1, 3.0, 3.0),
        ("span", "send", "stage0", "comm", 3, -1, 0, -1, 4.0, 4.5),
        ("span", "denoise", "stage1", "compute", 3, -1, 0, 1, 5.0, 6.0),
        ("mark", "emit", "stage0", "compute", 3, -1, 0, -1, 7.0, 7.0),
    ]
    assert ev["value"].iloc[1] == 2.0 and ev["value"].iloc[2] == 4096.0
    assert np.isnan(ev["value"].iloc[0])


def test_save_round_trips_with_metadata(tmp_path):
    rec = probe.Recorder(policy={"name": "serial"}, run={"chunks": 3}, name="mine", rank=2,
                         clock=ms_clock())
    s0 = rec.stage("stage0")
    for k in range(3):
        with s0.span("decode", chunk=k):
            pass
        s0.mark("emit", chunk=k)
    path = rec.save(tmp_path / "run.parquet")
    tr = read_trace(path)
    assert tr.source == "probe" and tr.meta["policy"] == {"name": "serial"}
    assert tr.meta["probe"]["rank"] == 2 and tr.meta["scenario_name"] == "mine"
    assert tr.meta["run"] == {"chunks": 3}
    # emits at 3, 6, 9 ms: every gap is 3 ms
    m = compute_metrics(tr, warmup=0)
    assert m["period_ms"] == pytest.approx(3.0) and m["chunks"] == 3


def test_threads_lose_no_events():
    rec = probe.Recorder()
    stages = [rec.stage(f"stage{i}") for i in range(4)]

    def work(st: probe.Stage) -> None:
        for k in range(500):
            with st.span("denoise", chunk=k):
                pass

    threads = [threading.Thread(target=work, args=(s,)) for s in stages]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    ev = rec.trace().events
    assert len(ev) == 2000
    for s in stages:
        chunks = ev[ev["stage"] == s.name].sort_values("start_ms")["chunk"].tolist()
        assert chunks == list(range(500))  # each thread's spans, in its own order


@settings(max_examples=25, deadline=None, derandomize=True)
@given(limit=st.integers(1, 20), n=st.integers(0, 80))
def test_row_store_spills_past_its_limit_and_keeps_order(limit, n, tmp_path_factory):
    store = RowStore(limit, spill_dir=str(tmp_path_factory.mktemp("spill")))
    for i in range(n):
        store.append(("mark", "emit", "s", "compute", 0, i, -1, 0, -1, float(i), float(i), 0.0))
        assert len(store._held) <= limit
    assert [r[5] for r in store.rows()] == list(range(n)) and len(store) == n
    spilled = list(store._spills)
    store.close()
    assert all(not __import__("os").path.exists(p) for p in spilled)


def test_a_spill_is_arrow_and_a_planted_pickle_never_runs(tmp_path):
    # issue 22: the spill used pickle, so a spill file someone else could write would run
    # their code in this process when read back
    store = RowStore(2, spill_dir=str(tmp_path))
    rows = [("span", "build", "stage0", "compute", 0, i, i, 0, -1, 1.5 * i, 2.0 * i, NAN)
            for i in range(3)]
    for row in rows:
        store.append(row)
    (spill,) = store._spills
    with open(spill, "rb") as fh:
        assert fh.read(6) == b"ARROW1"  # an Arrow IPC file
    back = store.rows()
    assert [r[:10] for r in back] == [r[:10] for r in rows] and all(r[11] != r[11] for r in back)
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(ran), "w"))

    with open(spill, "wb") as planted:
        pickle.dump([Payload()], planted)
    with pytest.raises(pa.ArrowInvalid):  # not an Arrow file: nothing is run
        store.rows()
    assert not ran.exists()
    store.close()


def test_recorder_spills_and_saves_everything(tmp_path):
    rec = probe.Recorder(limit=10, spill_dir=str(tmp_path), clock=ms_clock())
    s0 = rec.stage("stage0")
    for k in range(35):
        s0.mark("emit", chunk=k)
    tr = rec.trace()
    assert tr.events["chunk"].tolist() == list(range(35))
    assert tr.meta["probe"]["spilled_rows"] == 33  # spilled at 11, 22, 33 rows
    rec.close()


class FakeEvent:
    """A CUDA event stand-in: ``record`` stamps the stream's GPU time; done after query."""

    def __init__(self, log: list[str]) -> None:
        self.log, self.t, self.done = log, None, False

    def record(self, stream):
        self.t = stream.gpu_ms
        self.log.append("record")

    def query(self):
        self.log.append("query")
        return self.done

    def synchronize(self):
        self.log.append("synchronize")
        self.done = True

    def elapsed_time(self, other):
        return other.t - self.t


class FakeStream:
    gpu_ms = 100.0  # GPU clock reading, unrelated to the host clock


def test_cuda_spans_resolve_lazily_on_the_host_clock():
    log: list[str] = []
    store = RowStore()
    host = iter([10.0, 10.0] + [50.0] * 10)
    syncs: list[int] = []
    timer = CudaTimer(lambda: next(host), store, events=lambda: FakeEvent(log),
                      sync=lambda: syncs.append(1))
    stream = FakeStream()
    start = timer.start(stream)               # reference at gpu 100 = host 10
    stream.gpu_ms = 103.0
    timer.finish(start, stream, ("decode", "stage0", "compute", 0, 5, -1, 0, -1, float("nan")))
    assert syncs == [1] and log.count("synchronize") == 1  # the reference's only
    assert len(store) == 0 and timer.pending == 1          # nothing resolved on the hot path
    assert timer.poll() == 0                                # end event not done: no wait
    assert timer.flush() == 1
    row = store.rows()[0]
    assert row[:6] == ("span", "decode", "stage0", "compute", 0, 5)
    assert row[9:11] == (10.0, 13.0)


def test_cuda_span_through_the_stage_api(monkeypatch):
    rec = probe.Recorder(clock=ms_clock())
    log: list[str] = []
    timer = CudaTimer(rec.now_ms, rec._store, events=lambda: FakeEvent(log), sync=lambda: None)
    monkeypatch.setattr(rec, "_timer", timer)
    stream = FakeStream()
    with rec.stage("stage1").span("denoise", chunk=1, stream=stream):
        stream.gpu_ms += 2.5
    ev = rec.trace().events
    assert ev["name"].tolist() == ["denoise"]
    assert ev["end_ms"].iloc[0] - ev["start_ms"].iloc[0] == pytest.approx(2.5)


def test_from_env_is_off_without_the_variable():
    rec = probe.from_env({})
    assert isinstance(rec, probe.NullRecorder) and not rec.enabled
    with rec.stage("stage0").span("decode", chunk=0):
        pass
    rec.stage("stage0").mark("emit", chunk=0)
    assert len(rec) == 0


def test_from_env_configures_a_recorder():
    env = {"PIPEFILL_PROBE": "/tmp/run-{rank}.parquet", "RANK": "3",
           "PIPEFILL_PROBE_LIMIT": "50", "PIPEFILL_PROBE_POLICY": '{"name": "serial"}'}
    rec = probe.from_env(env, save_at_exit=False)
    assert isinstance(rec, probe.Recorder)
    assert rec.path == "/tmp/run-3.parquet" and rec.rank == 3
    assert rec._store.limit == 50 and rec.meta["policy"] == {"name": "serial"}


@pytest.mark.parametrize(("env", "field"), [
    ({"PIPEFILL_PROBE_RANK": "x"}, "PIPEFILL_PROBE_RANK"),
    ({"PIPEFILL_PROBE_LIMIT": "0"}, "PIPEFILL_PROBE_LIMIT"),
    ({"PIPEFILL_PROBE_POLICY": "[1]"}, "PIPEFILL_PROBE_POLICY"),
    ({"PIPEFILL_PROBE_POLICY": "{"}, "PIPEFILL_PROBE_POLICY"),
])
def test_from_env_names_a_bad_variable(env, field):
    with pytest.raises(probe.ProbeEnvError, match=f"^{field}: "):
        probe.from_env({"PIPEFILL_PROBE": "x.parquet", **env}, save_at_exit=False)


def test_from_env_saves_at_exit(tmp_path):
    out = tmp_path / "r{rank}.parquet"
    code = ("from pipefill import probe\n"
            "rec = probe.from_env()\n"
            "rec.stage('stage0').mark('emit', chunk=0)\n")
    env = {"PIPEFILL_PROBE": str(out), "PIPEFILL_PROBE_RANK": "1", "PATH": ""}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    tr = read_trace(tmp_path / "r1.parquet")
    assert tr.meta["probe"]["rank"] == 1 and tr.marks("emit")["chunk"].tolist() == [0]


def test_importing_the_probe_loads_nothing_heavy():
    code = ("import sys; import pipefill.probe\n"
            "print(sorted(m for m in ('pandas', 'pyarrow', 'torch', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
