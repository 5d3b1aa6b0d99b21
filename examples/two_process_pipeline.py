"""A two-process pipeline recorded with ``pipefill.probe``: one trace per rank, merged.

Rank 0 (this process) builds an envelope per chunk, sends it to rank 1 and decodes the
result that comes back; rank 1 (a child process) denoises each envelope in ``steps``
steps. The two talk over pipes, the way phase_pp with ``recompute = "r1"`` does:

- at most ``d_in`` envelopes are in flight toward rank 1: sent, their denoise not yet
  finished. Rank 1 hands a slot back (``done``) when it finishes a chunk's denoise, so
  the one it is working on counts too (a ``queue.Queue(maxsize=k)`` between two threads
  is ``d_in = k + 1``: k waiting plus the one the consumer holds);
- at most ``d_out`` results wait for or are in decode: rank 1 takes a slot before it
  denoises a chunk and rank 0 hands it back (``free``) when the decode is done;
- rank 0 builds when it can (a slot is free) and decodes otherwise (producer first).

What each rank records: spans of its phases, ``input`` (the chunk's input is taken:
TTFF and latency start there) and ``emit`` marks on rank 0, queue depths as counters,
and every envelope and result send timed over the pipe write (``transfer``: a span on
the ``comm`` lane, so ``calibrate`` fits latency and bandwidth, and takes the message
sizes from its bytes). Rank 1 handshakes its clock with rank 0 at the start and at the
end (``rec.sync``: rank 1 asks, rank 0 answers eight rounds each time), so ``pipefill
merge`` can put it on rank 0's clock, offset and drift. Then::

    pipefill merge runs/rank0.parquet runs/rank1.parquet --out two.parquet
    pipefill calibrate two.parquet --out two.toml
    pipefill simulate two.toml --out two-predicted.parquet
    pipefill diff two-predicted.parquet two.parquet
"""

from __future__ import annotations

import os

# one BLAS thread per rank (before numpy loads; the child re-imports this module)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import multiprocessing as mp
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from pipefill import probe

#: seconds any wait may block before the run is declared stuck
WAIT_S = 30.0
#: clock handshake rounds (the shortest round trip is kept)
ROUNDS = 8
#: latents of one chunk: 16 channels of 64 x 64 (256 KiB in float32)
SHAPE = (16, 64, 64)
#: the weights every phase multiplies by (a fixed, seeded layer)
WEIGHTS = (np.random.default_rng(0).standard_normal((256, 256)) / 16).astype(np.float32)


@dataclass(frozen=True)
class Config:
    """One run: ``chunks`` (``warmup`` of them left out of the metrics), the queue
    depths ``d_in``/``d_out``, denoise ``steps``, and the matrix products of a build, of
    a denoise step and of a decode (their sizes)."""

    chunks: int = 24
    warmup: int = 4
    d_in: int = 2
    d_out: int = 2
    steps: int = 2
    build: int = 10
    denoise: int = 16
    decode: int = 20


def compute(x: np.ndarray, reps: int) -> np.ndarray:
    """``reps`` layers (a 256 x 256 product and a tanh) over the chunk's latents: real
    CPU work, about 0.3 ms a layer on one core."""
    h = x.reshape(-1, WEIGHTS.shape[0])
    for _ in range(reps):
        h = np.tanh(h @ WEIGHTS)
    return h.reshape(SHAPE)


class Inbox:
    """Messages a receiver thread reads off a pipe, for the main thread to wait on.
    A closed pipe (the peer died) is an error, raised by the next :meth:`wait`."""

    def __init__(self, conn: Connection, handle: Callable[[Any], None]) -> None:
        self.cv = threading.Condition()
        self.error: str | None = None
        self._conn, self._handle = conn, handle
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                with self.cv:
                    self.error = "the other rank closed its pipe (did it fail?)"
                    self.cv.notify_all()
                return
            with self.cv:
                self._handle(msg)
                self.cv.notify_all()

    def wait(self, ready: Callable[[], bool], what: str) -> None:
        """Wait (holding ``cv``) until ``ready()``; fail after WAIT_S, naming ``what``."""
        if not self.cv.wait_for(lambda: ready() or self.error is not None, timeout=WAIT_S):
            raise TimeoutError(f"waited {WAIT_S:g} s for {what}")
        if self.error is not None and not ready():
            raise RuntimeError(f"{what}: {self.error}")


def ask_rank0(clock: Connection) -> Callable[[], float]:
    """Rank 1's side of a handshake round: ask rank 0 for its clock (its ``now_ms``)."""
    def ask() -> float:
        clock.send(None)
        if not clock.poll(WAIT_S):
            raise TimeoutError("rank 0 did not answer the clock handshake")
        return float(clock.recv())
    return ask


def answer_rank1(clock: Connection, rec: probe.Recorder) -> None:
    """Rank 0's side: answer each of rank 1's ROUNDS asks with this recorder's clock."""
    for _ in range(ROUNDS):
        if not clock.poll(WAIT_S):
            raise TimeoutError("rank 1 did not start the clock handshake")
        clock.recv()
        clock.send(rec.now_ms())


def rank1(cfg: Config, to_me: Connection, to_rank0: Connection, clock: Connection,
          out: str) -> None:
    """Rank 1: denoise every envelope; hand D_in slots back, take D_out slots."""
    rec = probe.Recorder(name="two_process", rank=1)
    s1 = rec.stage("stage1")
    envelopes: deque[tuple[int, np.ndarray]] = deque()
    state = {"out_held": 0}

    def handle(msg: Any) -> None:
        if msg[0] == "env":
            envelopes.append((msg[1], msg[2]))
        else:  # "free": rank 0 decoded a result
            state["out_held"] -= 1
            s1.counter("q_out", state["out_held"])

    compute(np.ones(SHAPE, np.float32), 2)  # first calls allocate: not chunk 0's
    rec.sync(ask_rank0(clock))  # start: both clocks side by side
    inbox = Inbox(to_me, handle)
    for _ in range(cfg.chunks):
        with inbox.cv:
            inbox.wait(lambda: bool(envelopes) and state["out_held"] < cfg.d_out,
                       "an envelope and a free D_out slot")
            k, x = envelopes.popleft()
            state["out_held"] += 1
            s1.counter("q_out", state["out_held"])
        for step in range(cfg.steps):
            with s1.span("denoise", chunk=k, call_id=k, step=step):
                x = compute(x, cfg.denoise)
        to_rank0.send(("done", k))  # the D_in slot: this chunk's generator work is over
        with s1.transfer("q_out", chunk=k, call_id=k, nbytes=x.nbytes):
            to_rank0.send(("result", k, x))
    rec.sync(ask_rank0(clock))  # end: with the start, the drift
    rec.save(out)


class Rank0:
    """Rank 0: build and send envelopes, decode results, emit frames."""

    def __init__(self, cfg: Config, to_rank1: Connection, from_rank1: Connection,
                 rec: probe.Recorder) -> None:
        self.cfg, self.to_rank1, self.s0 = cfg, to_rank1, rec.stage("stage0")
        self.in_held = 0
        self.results: deque[tuple[int, np.ndarray]] = deque()
        self.inbox = Inbox(from_rank1, self._handle)

    def _handle(self, msg: Any) -> None:
        if msg[0] == "done":
            self.in_held -= 1
            self.s0.counter("q_in", self.in_held)
        else:
            self.results.append((msg[1], msg[2]))

    def run(self) -> None:
        cfg, sent, emitted = self.cfg, 0, 0
        while emitted < cfg.chunks:
            with self.inbox.cv:
                self.inbox.wait(lambda n=sent: self.can_send(n) or bool(self.results),
                                "a free D_in slot or a result")
                produce = self.can_send(sent)
                if produce:
                    self.in_held += 1
                    self.s0.counter("q_in", self.in_held)
                else:
                    k, x = self.results.popleft()
            if produce:
                self.build_and_send(sent)
                sent += 1
                continue
            with self.s0.span("decode", chunk=k, call_id=k):
                compute(x, cfg.decode)
            self.to_rank1.send(("free",))  # the D_out slot
            self.s0.mark("emit", chunk=k, call_id=k)
            emitted += 1

    def can_send(self, sent: int) -> bool:
        """Another envelope is due and a D_in slot is free (call holding ``inbox.cv``)."""
        return sent < self.cfg.chunks and self.in_held < self.cfg.d_in

    def build_and_send(self, k: int) -> None:
        self.s0.mark("input", chunk=k, call_id=k)  # TTFF and latency count from here
        with self.s0.span("build", chunk=k, call_id=k):
            x = compute(np.random.default_rng(k).standard_normal(SHAPE, np.float32),
                        self.cfg.build)
        with self.s0.transfer("q_in", chunk=k, call_id=k, nbytes=x.nbytes):
            self.to_rank1.send(("env", k, x))


def record(cfg: Config, out_dir: Path) -> tuple[Path, Path]:
    """Run both ranks; returns the two trace files (rank 0's, rank 1's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "rank0.parquet", out_dir / "rank1.parquet"
    ctx = mp.get_context("spawn")
    to_rank1_r, to_rank1_w = ctx.Pipe(duplex=False)
    to_rank0_r, to_rank0_w = ctx.Pipe(duplex=False)
    clock0, clock1 = ctx.Pipe()
    child = ctx.Process(target=rank1, args=(cfg, to_rank1_r, to_rank0_w, clock1,
                                            str(paths[1])), name="rank1")
    child.start()
    rec = probe.Recorder(
        policy={"name": "phase_pp", "d_in": cfg.d_in, "d_out": cfg.d_out, "recompute": "r1"},
        run={"chunks": cfg.chunks, "warmup": cfg.warmup, "frames_per_chunk": 12},
        name="two_process", rank=0, meta={"device": "cpu"})
    try:
        compute(np.ones(SHAPE, np.float32), 2)
        answer_rank1(clock0, rec)  # start
        Rank0(cfg, to_rank1_w, to_rank0_r, rec).run()
        answer_rank1(clock0, rec)  # end
        rec.save(paths[0])
    finally:
        child.join(timeout=WAIT_S)
        if child.is_alive():
            child.kill()
    if child.exitcode != 0:
        raise RuntimeError(f"rank 1 failed (exit code {child.exitcode})")
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default="runs", help="where rank0/rank1.parquet go")
    ap.add_argument("--chunks", type=int, default=Config.chunks)
    ap.add_argument("--warmup", type=int, default=Config.warmup)
    ap.add_argument("--d-in", type=int, default=Config.d_in)
    ap.add_argument("--d-out", type=int, default=Config.d_out)
    args = ap.parse_args(argv)
    cfg = Config(args.chunks, args.warmup, args.d_in, args.d_out)
    for path in record(cfg, Path(args.out_dir)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
