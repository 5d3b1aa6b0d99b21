"""Per-envelope transport time vs size on gloo loopback (the dist backend's wire path).

Two processes rendezvous on a loopback port and exchange envelopes through the same
code the dist replay uses: ``message_frame`` (encode), ``Checker`` (validate before
sending and after receipt), ``PeerLink.exchange`` (one lockstep round: prefix, JSON
body, tensors) and ``frame_message`` (decode). One-way time is measured from the
sender starting the round to the receiver holding the validated message, the
receiver's clock mapped onto the sender's by the replay's own offset estimate.

    .venv/bin/python bench/bench_transport.py [--reps 20] [--max-mb 64]

Prints one row per size (median and p90 one-way ms, effective GB/s) and the latency
and bandwidth of a line through the medians (relative-error fit), the two numbers of a
scenario's ``[transport]`` table.
Figures depend on the machine; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipefill.exec.dist.config import RankPlan
from pipefill.exec.dist.layout import RankGroup, RankLayout
from pipefill.exec.dist.link import PeerLink, noop
from pipefill.exec.dist.rendezvous import sync_clock
from pipefill.exec.dist.wire import Checker, Frame, Header, frame_message, message_frame
from pipefill.sim.program.actions import INFER, Message
from pipefill.traces.recorder import Tag

WARMUP = 3


def sizes(max_mb: int) -> list[int]:
    out, n = [], 4 << 10
    while n <= max_mb << 20:
        out.append(n)
        n *= 4
    return out


def now_ms() -> float:
    return time.perf_counter() * 1e3


def worker(rank: int, port: int, reps: int, max_mb: int) -> None:
    torch.set_num_threads(1)  # as on the comms thread: no OpenMP pool spinning beside gloo
    store = dist.TCPStore("127.0.0.1", port, 2, is_master=False,
                          timeout=timedelta(seconds=30))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2,
                            timeout=timedelta(seconds=30))
    group = dist.new_group([0, 1])
    link = PeerLink(group, 1 - rank, torch.device("cpu"))
    pair = RankLayout("bench", (RankGroup("sender", (0,)), RankGroup("receiver", (1,))), ())
    point = sync_clock(RankPlan(rank, pair), torch.device("cpu"), now_ms)
    offset = 0.0 if point is None else point.ref_ms - point.local_ms
    times, seq = exchange_all(link, rank, reps, max_mb, offset)
    if rank == 1:
        assert point is not None
        link.exchange(Frame(Header("bye", seq), {"arrived": times, "rtt": point.rtt_ms}))
        return
    reply = link.exchange(Frame(Header("bye", seq)))
    report(times, reply.body["arrived"], reps, max_mb, float(reply.body["rtt"]))
    dist.destroy_process_group()


def exchange_all(link: PeerLink, rank: int, reps: int, max_mb: int,
                 offset: float) -> tuple[list[float], int]:
    """Rank0 sends every envelope (returns send starts); rank1 receives, validates and
    decodes each (returns arrival times in rank0's clock). Also the next seq number."""
    out_check, in_check = Checker(frozenset({"q_in"})), Checker(frozenset({"q_in"}))
    gen = torch.Generator().manual_seed(0)
    seq, times = 0, []
    for size in sizes(max_mb):
        payload = torch.randn(size // 4, generator=gen)
        for _ in range(reps + WARMUP):
            if rank == 0:
                msg = Message(INFER, Tag(0, seq, seq, 0), size, payload=payload)
                frame = message_frame("q_in", msg, seq, now_ms(), None)
                out_check.check(frame)
                times.append(now_ms())
                link.exchange(frame)
            else:
                got = link.exchange(noop(seq))
                in_check.check(got)
                frame_message(got)
                times.append(now_ms() + offset)
            seq += 1
    return times, seq


def report(started: list[float], arrived: list[float], reps: int, max_mb: int,
           rtt: float) -> None:
    print(f"gloo loopback, torch {torch.__version__}, clock offset RTT {rtt * 1e3:.0f} us")
    print(f"{'bytes':>12} {'n':>4} {'median ms':>10} {'p90 ms':>8} {'GB/s':>7}")
    medians, i = [], 0
    for size in sizes(max_mb):
        one_way = [a - s for s, a in zip(started[i:i + reps + WARMUP],
                                         arrived[i:i + reps + WARMUP], strict=True)][WARMUP:]
        i += reps + WARMUP
        med = statistics.median(one_way)
        medians.append(med)
        p90 = float(np.percentile(one_way, 90))
        print(f"{size:>12} {len(one_way):>4} {med:>10.3f} {p90:>8.3f} {size / med / 1e6:>7.2f}")
    # relative-error fit of the medians: small messages pin the latency, large the bandwidth
    y = np.array(medians)
    slope, intercept = np.polyfit(np.array(sizes(max_mb), dtype=float), y, 1, w=1.0 / y)
    print(json.dumps({"latency_ms": round(float(intercept), 4),
                      "bandwidth_gbps": round(1.0 / (float(slope) * 1e6), 3)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--max-mb", type=int, default=64)
    ap.add_argument("--rank", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank is not None:
        worker(args.rank, args.port, args.reps, args.max_mb)
        return
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, 2, is_master=True, wait_for_workers=False,
                          master_listen_fd=sock.detach(), timeout=timedelta(seconds=30))
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, __file__, "--reps", str(args.reps), "--max-mb", str(args.max_mb),
           "--port", str(port), "--rank"]
    procs = [subprocess.Popen([*cmd, str(r)], env=env, start_new_session=True)
             for r in (0, 1)]
    try:
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        del store


if __name__ == "__main__":
    main()
