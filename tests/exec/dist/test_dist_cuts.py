"""Hard cuts and meshes under dist: drain-and-discard, epoch bump and refill across ranks
never emit a stale frame; a mesh of two ranks (tensor-parallel model, broadcast program
results) runs every rank0/mesh policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.traces.io import read_trace
from pipefill.traces.schema import Trace
from pipefill.traces.toml_writer import to_toml
from tests.helpers.dist import dist_cal, run_token

__all__ = ["dist_cal", "run_token"]  # fixtures shared from tests.helpers.dist

runner = CliRunner()
COSTS = {"build": {"mean": 1.0}, "denoise": {"mean": 2.0, "steps": 2},
         "decode": {"mean": 2.0}, "recompute": {"mean": 1.0}, "encode": {"mean": 1.0}}


def _scenario(tmp: Path, policy: dict[str, Any], chunks: int = 6, **run: Any) -> Path:
    raw = {"name": policy["name"], "run": {"chunks": chunks, "warmup": 1, **run},
           "policy": policy, "costs": COSTS}
    path = tmp / f"{policy['name']}.toml"
    path.write_text(to_toml(raw), encoding="utf-8")
    return path


def _replay(scenario: Path, out: Path, *args: str) -> Trace:
    res = runner.invoke(app, ["replay", str(scenario), "--timeout", "10", *args,
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    return read_trace(out)


def _no_stale_emit(trace: Trace, cuts: list[int]) -> list[tuple[int, int, int]]:
    """Emits as (session, chunk, epoch); each carries the epoch in force for its chunk."""
    em = trace.marks("emit").sort_values("start_ms")
    emits = list(zip(em["session"], em["chunk"], em["epoch"], strict=True))
    for _, chunk, epoch in emits:
        assert epoch == sum(c <= chunk for c in cuts), f"stale emit of chunk {chunk}"
    return emits


def _sequence(trace: Trace, stage: str) -> list[tuple]:
    sp = trace.spans
    sp = sp[(sp["stage"] == stage) & (sp["lane"] == "compute")].sort_values("start_ms")
    return list(sp[["name", "chunk", "call_id", "epoch", "step"]].itertuples(index=False,
                                                                           name=None))


def test_a_serial_hard_cut_runs_as_on_threads(tmp_path, run_token, dist_cal):
    sc = _scenario(tmp_path, {"name": "serial", "recompute": "r0", "hard_cuts": [2]})
    dist = _replay(sc, tmp_path / "d.parquet", *dist_cal, "--backend", "dist")
    threads = _replay(sc, tmp_path / "t.parquet", *dist_cal)
    for stage in ("stage0", "stage1"):
        assert _sequence(dist, stage) == _sequence(threads, stage)
    assert _no_stale_emit(dist, [2]) == _no_stale_emit(threads, [2])
    cut = dist.marks("hard_cut")
    assert list(zip(cut["chunk"], cut["epoch"], strict=True)) == [(2, 1)]


def test_a_cut_on_a_tensor_parallel_mesh_drops_stale_work_and_refills(tmp_path, run_token,
                                                                      dist_cal):
    sc = _scenario(tmp_path, {"name": "phase_pp", "recompute": "r0", "d_in": 2,
                              "hard_cuts": [3]}, chunks=7)
    trace = _replay(sc, tmp_path / "d.parquet", *dist_cal, "--backend", "dist", "--mesh-size",
                    "2", "--kernels", "model", "--model-size", "tiny")
    assert trace.meta["dist"]["mesh_collectives"].startswith("tensor-parallel DiT over 2")
    emits = _no_stale_emit(trace, [3])
    assert [c for _, c, e in emits if e == 1] == [3, 4, 5, 6]  # the new epoch, complete
    dropped = set(trace.marks("drop")["chunk"])
    assert dropped == set(range(3)) - {c for _, c, _ in emits}


def test_a_rolling_window_evicts_the_old_epoch_across_ranks(tmp_path, run_token, dist_cal):
    sc = _scenario(tmp_path, {"name": "rolling_window", "window": 2, "hard_cuts": [3]},
                   chunks=7)
    trace = _replay(sc, tmp_path / "d.parquet", *dist_cal, "--backend", "dist")
    emits = _no_stale_emit(trace, [3])
    assert [c for _, c, e in emits if e == 1] == [3, 4, 5, 6]


def test_a_batching_mesh_of_two_serves_every_session_once_in_order(tmp_path, run_token,
                                                                    dist_cal):
    sc = _scenario(tmp_path, {"name": "multi_session", "max_batch": 2, "batch_window_ms": 1.0},
                   chunks=4, sessions=3)
    trace = _replay(sc, tmp_path / "d.parquet", *dist_cal, "--backend", "dist",
                    "--mesh-size", "2")
    emits = _no_stale_emit(trace, [])
    for s in range(3):
        assert [c for ss, c, _ in emits if ss == s] == [0, 1, 2, 3]
    assert trace.meta["dist"]["ranks"] == ["stage0", "stage1 (mesh leader)",
                                           "stage1 (mesh follower)"]

