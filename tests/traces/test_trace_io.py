"""Trace storage: round trips, metadata, atomic writes, malformed input."""

from __future__ import annotations

import pandas as pd
import pytest

from pipefill.sim.engine.core import simulate
from pipefill.traces.io import atomic_path, read_table, read_trace, write_trace
from pipefill.traces.schema import COLUMNS, TraceError
from tests.helpers.scenarios import make_scenario

BASE = {"build": 1.0, "denoise": 10.0, "decode": 5.0}


@pytest.fixture(scope="module")
def trace():
    return simulate(make_scenario({"name": "phase_pp", "hard_cuts": [4]}, BASE, chunks=8))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip_keeps_events_and_metadata(tmp_path, trace, suffix):
    path = write_trace(trace, tmp_path / f"t{suffix}")
    back = read_trace(path)
    pd.testing.assert_frame_equal(back.events, trace.events)
    assert back.meta == trace.meta
    assert back.meta["source"] == "sim" and back.meta["policy"]["name"] == "phase_pp"
    assert list(back.events.columns) == list(COLUMNS)


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_missing_column_is_named(tmp_path, trace):
    bad = tmp_path / "bad.csv"
    trace.events.drop(columns=["epoch"]).to_csv(bad, index=False)
    with pytest.raises(TraceError) as info:
        read_trace(bad)
    assert info.value.field == "epoch"


def test_bad_values_are_named(tmp_path, trace):
    ev = trace.events.copy()
    ev.loc[0, "kind"] = "blob"
    ev.to_csv(tmp_path / "k.csv", index=False)
    with pytest.raises(TraceError, match=r"^kind: 'blob'"):
        read_trace(tmp_path / "k.csv")
    ev = trace.events.copy()
    ev["end_ms"] = ev["start_ms"] - 1
    ev.to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(TraceError, match=r"^end_ms:"):
        read_trace(tmp_path / "e.csv")


def test_truncated_and_unknown_files(tmp_path, trace):
    path = write_trace(trace, tmp_path / "t.parquet")
    data = path.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match=r"^path: cut\.parquet: unreadable"):
        read_trace(tmp_path / "cut.parquet")
    with pytest.raises(TraceError, match="unknown extension"):
        read_table(tmp_path / "t.txt")
    with pytest.raises(TraceError, match="no such file"):
        read_table(tmp_path / "absent.parquet")
