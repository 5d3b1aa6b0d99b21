"""Host-side overhead of pipefill.probe per event, and its memory per held row.

    .venv/bin/python bench/bench_probe.py [--n 200000] [--threads 2]

Prints microseconds per CPU span (``with stage.span(...)``), mark, counter and send,
the same for the switched-off probe (``from_env`` without ``PIPEFILL_PROBE``), per CPU
span with several threads recording at once, and per CUDA span (host side: two event
records and a queue append) when a GPU is present. Each figure is the median of 5
rounds minus the cost of the empty loop. Memory: bytes per held row (tracemalloc).
Figures depend on the machine; nothing here asserts a speed (targets: <= 5 us per CPU
span, <= 10 us per CUDA span).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipefill import probe

ROUNDS = 5


def per_call_us(body: Callable[[int], None], n: int) -> float:
    """Median over rounds of (time of ``body(n)`` - time of an empty loop) / n, in us."""
    def empty(m: int) -> None:
        for _ in range(m):
            pass

    def once(fn: Callable[[int], None]) -> float:
        t0 = time.perf_counter()
        fn(n)
        return time.perf_counter() - t0

    rounds = [(once(body) - once(empty)) / n * 1e6 for _ in range(ROUNDS)]
    return statistics.median(rounds)


def cpu_figures(n: int) -> dict[str, float]:
    st = probe.Recorder(limit=10 * n).stage("stage0")
    off = probe.from_env({}).stage("stage0")

    def spans(m: int, s: probe.Stage = st) -> None:
        for k in range(m):
            with s.span("decode", chunk=k):
                pass

    def marks(m: int) -> None:
        for k in range(m):
            st.mark("emit", chunk=k)

    def counters(m: int) -> None:
        for k in range(m):
            st.counter("q_in", k)

    def sends(m: int) -> None:
        for k in range(m):
            st.send("q_in", chunk=k, nbytes=4096)

    def off_spans(m: int) -> None:
        for k in range(m):
            with off.span("decode", chunk=k):
                pass

    return {"cpu span": per_call_us(spans, n), "mark": per_call_us(marks, n),
            "counter": per_call_us(counters, n), "send": per_call_us(sends, n),
            "span, probe off": per_call_us(off_spans, n)}


def threaded_us(n: int, threads: int) -> float:
    """Wall time per span while ``threads`` threads record ``n`` spans each, at once."""
    rec = probe.Recorder(limit=10 * n * threads)

    def work(name: str) -> None:
        s = rec.stage(name)
        for k in range(n):
            with s.span("denoise", chunk=k):
                pass

    workers = [threading.Thread(target=work, args=(f"stage{i}",)) for i in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=600)
    return (time.perf_counter() - t0) / (n * threads) * 1e6


def cuda_us(n: int) -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    rec = probe.Recorder(limit=10 * n)
    s = rec.stage("stage1")
    stream = torch.cuda.Stream()
    with s.span("warm", chunk=0, stream=stream):  # the one reference synchronize
        pass

    def spans(m: int) -> None:
        for k in range(m):
            with s.span("denoise", chunk=k, stream=stream):
                pass

    us = per_call_us(spans, n)
    rec.trace()  # resolves every pending pair
    return us


def bytes_per_row(n: int) -> float:
    tracemalloc.start()
    rec = probe.Recorder(limit=10 * n)
    s = rec.stage("stage0")
    before = tracemalloc.get_traced_memory()[0]
    for k in range(n):
        with s.span("decode", chunk=k, step=k % 4):
            pass
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n


def main() -> None:
    ap = argparse.ArgumentParser(description="probe overhead per event")
    ap.add_argument("--n", type=int, default=200_000, help="events per round")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for name, us in cpu_figures(args.n).items():
        print(f"{name:<18} {us:6.2f} us")
    print(f"{'span, ' + str(args.threads) + ' threads':<18} "
          f"{threaded_us(args.n // args.threads, args.threads):6.2f} us (wall per span)")
    cu = cuda_us(min(args.n, 20_000))
    print(f"{'cuda span (host)':<18} " + ("no GPU" if cu is None else f"{cu:6.2f} us"))
    print(f"{'memory':<18} {bytes_per_row(min(args.n, 100_000)):6.0f} bytes per held row")


if __name__ == "__main__":
    main()
