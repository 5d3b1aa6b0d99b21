"""probe.sync_clocks over a real gloo group: two processes, merged on rank 0's clock."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from pipefill import probe
from pipefill.traces.io import read_trace
from pipefill.traces.merge import merge_ranks

BARRIERS = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2, timeout=timedelta(seconds=60))
    if rank == 1:
        time.sleep(0.2)  # rank 1's recorder starts 200 ms later: its clock is offset
    rec = probe.Recorder(rank=rank)
    probe.sync_clocks(rec)
    for k in range(BARRIERS):
        dist.barrier()  # both ranks mark the same instant (up to the barrier's skew)
        rec.stage(f"stage{rank}").mark("emit", chunk=k)
        time.sleep(0.02)
    probe.sync_clocks(rec)
    rec.save(Path(out) / f"rank{rank}.parquet")
    dist.destroy_process_group()


def test_two_processes_merge_onto_rank0s_clock(tmp_path):
    mp.start_processes(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    r1 = read_trace(tmp_path / "rank1.parquet")
    assert len(r1.meta["probe"]["sync"]) == 2
    merged = merge_ranks([read_trace(tmp_path / f"rank{r}.parquet") for r in (0, 1)])
    ev = merged.events
    t0 = ev[ev["stage"] == "stage0"]["start_ms"].to_numpy()
    t1 = ev[ev["stage"] == "stage1"]["start_ms"].to_numpy()
    raw = r1.events["start_ms"].to_numpy()
    # unaligned, rank 1's marks are ~200 ms early on rank 0's clock; aligned, within a few ms
    assert abs(raw - t0).min() > 100
    assert abs(t1 - t0).max() < 20.0
