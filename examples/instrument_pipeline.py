"""A real two-stage streaming pipeline instrumented with ``pipefill.probe``.

Stage0 (one thread, "rank0") builds an envelope per chunk (seeded noise latents and a
conditioning vector), sends it to stage1 and VAE-decodes the latents that come back
into 12 pixel frames; stage1 (another thread, "the mesh") runs the DiT denoise steps
with a KV cache of earlier chunks. Two bounded queues link them, as in pipefill's
``phase_pp`` policy: ``d_in`` envelopes may be in flight toward stage1, ``d_out``
results may wait for (or be in) decode; stage0 prefers building when both are
possible (producer first).

Every phase is wrapped in a probe span (and, with ``--profile``, in a
``torch.profiler.record_function`` named ``stage/phase/chunk`` too, so the same run
can be imported with ``pipefill import``). Run it, then::

    pipefill calibrate run.parquet --out mine.toml
    pipefill simulate mine.toml --out predicted.parquet
    pipefill diff predicted.parquet run.parquet
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from pipefill import probe
from pipefill.exec.kernels.dit import KV, DiT
from pipefill.exec.kernels.nn import MODEL_SIZES, ModelSize
from pipefill.exec.kernels.vae import Decoder

#: seconds any wait may block before the run is declared stuck
WAIT_S = 30.0


@dataclass
class Links:
    """Both bounded queues under one condition (stage0 waits on either).

    A D_in slot is held from build until stage1 finishes the chunk's denoise; a D_out
    slot from the start of denoise until stage0 finishes the decode (DESIGN.md).
    """

    d_in: int
    d_out: int
    cv: threading.Condition = field(default_factory=threading.Condition)
    in_held: int = 0
    out_held: int = 0
    envelopes: deque[Any] = field(default_factory=deque)
    results: deque[Any] = field(default_factory=deque)

    def wait(self, ready: Any) -> None:
        if not self.cv.wait_for(ready, timeout=WAIT_S):
            raise TimeoutError("a pipeline stage waited more than 30 s")


class Pipeline:
    """The two stages, their networks and the probe views they record into."""

    def __init__(self, size: ModelSize, steps: int, chunks: int, links: Links,
                 rec: probe.Recorder, profile: bool, seed: int = 0,
                 waits: bool = True) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.size, self.steps, self.chunks, self.links = size, steps, chunks, links
        self.dit = DiT(size, gen).eval()
        self.decoder = Decoder(size, gen).eval()
        self.cond = torch.nn.Linear(size.cond_dim, size.cond_dim)
        self.s0, self.s1 = rec.stage("stage0"), rec.stage("stage1")
        self.profile = profile
        self.waits = waits
        self.cache: list[KV] | None = None
        self.error: BaseException | None = None

    @contextlib.contextmanager
    def phase(self, stage: probe.Stage, name: str, chunk: int, step: int = -1) -> Iterator[None]:
        label = f"{stage.name}/{name}/{chunk}" + (f"/{step}" if step >= 0 else "")
        span = stage.span(name, chunk=chunk, call_id=chunk, step=step)
        # the probe inside the profiler's range: both clocks are read back to back (the
        # other way round, the GIL may pass to the other stage in between)
        if not self.profile:
            with span:
                yield
            return
        with torch.profiler.record_function(label), span:
            yield

    def waiting(self, stage: probe.Stage, on: str) -> contextlib.AbstractContextManager[Any]:
        """Record what ``stage`` waits on (``pipefill explain`` reads it), if asked to."""
        return stage.wait(on) if self.waits and on else contextlib.nullcontext()

    def mark(self, name: str, chunk: int) -> None:
        if not self.profile:
            self.s0.mark(name, chunk=chunk, call_id=chunk)
            return
        with torch.profiler.record_function(f"stage0/{name}/{chunk}"):
            self.s0.mark(name, chunk=chunk, call_id=chunk)

    # -- stage0 --------------------------------------------------------------------------
    def build(self, k: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(1000 + k)
        with self.phase(self.s0, "build", k):
            latents = torch.randn(self.size.latent_shape, generator=gen)
            cond = self.cond(torch.randn(1, self.size.cond_dim, generator=gen))
        return {"chunk": k, "latents": latents, "cond": cond}

    def decode(self, result: dict[str, Any]) -> torch.Tensor:
        with self.phase(self.s0, "decode", result["chunk"]):
            return self.decoder(result["latents"])

    def can_send(self, sent: int) -> bool:
        """Another envelope is due and a D_in slot is free (call under ``links.cv``)."""
        return sent < self.chunks and self.links.in_held < self.links.d_in

    def stage0(self) -> None:
        ln, sent, emitted = self.links, 0, 0
        while emitted < self.chunks:
            with ln.cv:
                full = sent < self.chunks and not self.can_send(sent)
                on = "|".join(w for w, blocked in (("slot:q_in", full),
                                                   ("get:q_out", not ln.results)) if blocked)
                with self.waiting(self.s0, on):
                    ln.wait(lambda n=sent: self.can_send(n) or bool(ln.results))
                produce = self.can_send(sent)
                if produce:
                    ln.in_held += 1
                    self.s1.counter("q_in", ln.in_held)
                else:
                    result = ln.results.popleft()
            if produce:
                self.mark("input", sent)
                env = self.build(sent)
                nbytes = env["latents"].numel() * env["latents"].element_size()
                # the handoff is the transfer here (one process): timed, so calibrate
                # fits the link to it rather than warn that sends are untimed
                with ln.cv, self.s0.transfer("q_in", chunk=sent, call_id=sent, nbytes=nbytes):
                    ln.envelopes.append(env)
                    ln.cv.notify_all()
                sent += 1
                continue
            self.decode(result)
            with ln.cv:
                ln.out_held -= 1
                self.s0.counter("q_out", ln.out_held)
                ln.cv.notify_all()
            self.mark("emit", result["chunk"])
            emitted += 1

    # -- stage1 --------------------------------------------------------------------------
    def denoise(self, env: dict[str, Any]) -> dict[str, Any]:
        k, x, own = env["chunk"], env["latents"], None
        for step in range(self.steps):
            with self.phase(self.s1, "denoise", k, step):
                t = torch.full((1,), 1.0 - step / self.steps)
                velocity, own = self.dit(x, t, env["cond"], self.cache)
                x = x - velocity / self.steps
        keep = self.size.kv_chunks * self.size.tokens
        assert own is not None
        self.cache = [KV(kv.k[:, :, -keep:], kv.v[:, :, -keep:]) if old is None
                      else old.cat(kv, keep)
                      for old, kv in zip(self.cache or [None] * len(own), own, strict=True)]
        return {"chunk": k, "latents": x}

    def stage1(self) -> None:
        ln = self.links
        for _ in range(self.chunks):
            with ln.cv:
                # an envelope, then a D_out slot: once true each stays true (only this
                # thread takes envelopes and slots), so two waits name each in turn
                with self.waiting(self.s1, "get:q_in"):
                    ln.wait(lambda: bool(ln.envelopes))
                with self.waiting(self.s1, "slot:q_out"):
                    ln.wait(lambda: ln.out_held < ln.d_out)
                env = ln.envelopes.popleft()
                ln.out_held += 1
                self.s0.counter("q_out", ln.out_held)
            result = self.denoise(env)
            nbytes = result["latents"].numel() * result["latents"].element_size()
            with ln.cv:
                ln.in_held -= 1
                self.s1.counter("q_in", ln.in_held)
                with self.s1.transfer("q_out", chunk=env["chunk"], call_id=env["chunk"],
                                      nbytes=nbytes):
                    ln.results.append(result)
                ln.cv.notify_all()

    def warm(self, stage: str) -> None:
        """Run this stage's networks once in its own thread: first calls allocate and
        pick kernels (per thread), which belongs to setup, not to chunk 0."""
        size = self.size
        if stage == "stage0":
            self.decoder(torch.zeros(size.latent_shape))
            self.cond(torch.zeros(1, size.cond_dim))
            return
        x, t, c = torch.zeros(size.latent_shape), torch.ones(1), torch.zeros(1, size.cond_dim)
        _, own = self.dit(x, t, c, None)
        self.dit(x, t, c, own)  # with a cache, as every chunk after the first

    def run(self) -> None:
        """Both stages in their own threads; each warms up, then they start together."""
        start = threading.Barrier(2, timeout=WAIT_S)

        def guard(stage: str, fn: Any) -> None:
            try:
                self.warm(stage)
                if self.profile:  # a thread's first range registers it with the profiler
                    with torch.profiler.record_function("thread_start"):
                        pass
                start.wait()
                fn()
            except BaseException as exc:  # re-raised below, in the caller's thread
                self.error = exc
                start.abort()
                with self.links.cv:
                    self.links.cv.notify_all()

        workers = [threading.Thread(target=guard, args=(name, fn), name=name)
                   for name, fn in (("stage0", self.stage0), ("stage1", self.stage1))]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=WAIT_S * 4)
        if self.error is not None:
            raise self.error


def record(chunks: int = 24, warmup: int = 4, d_in: int = 2, d_out: int = 2, steps: int = 2,
           size: str = "tiny", profile_path: str | None = None,
           waits: bool = True) -> probe.Recorder:
    """Run the pipeline once and return the recorder (``profile_path``: also write a
    torch.profiler Chrome trace of the same run there; ``waits``: record what each
    stage waits on, with ``stage.wait``)."""
    rec = probe.Recorder(
        policy={"name": "phase_pp", "d_in": d_in, "d_out": d_out, "recompute": "r1"},
        run={"chunks": chunks, "warmup": warmup, "frames_per_chunk": 12},
        name="instrumented", meta={"device": "cpu"})
    pipe = Pipeline(MODEL_SIZES[size], steps, chunks, Links(d_in, d_out), rec,
                    profile=profile_path is not None, waits=waits)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per stage thread: they run side by side
    try:
        with torch.inference_mode():
            _run(pipe, profile_path)
    finally:
        torch.set_num_threads(threads)
    return rec


def _run(pipe: Pipeline, profile_path: str | None) -> None:
    if profile_path is None:
        pipe.run()
        return
    acts = [torch.profiler.ProfilerActivity.CPU]
    # by default the profiler sees only the thread that started it
    every_thread = torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    with torch.profiler.profile(activities=acts, experimental_config=every_thread) as prof:
        pipe.run()
    prof.export_chrome_trace(profile_path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="run.parquet", help="probe trace to write")
    ap.add_argument("--chunks", type=int, default=24)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--d-in", type=int, default=2)
    ap.add_argument("--d-out", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--size", choices=sorted(MODEL_SIZES), default="tiny")
    ap.add_argument("--profile", default=None, help="also write a torch.profiler trace")
    ap.add_argument("--no-waits", dest="waits", action="store_false",
                    help="do not record what each stage waits on (explain then infers it)")
    args = ap.parse_args(argv)
    rec = record(args.chunks, args.warmup, args.d_in, args.d_out, args.steps, args.size,
                 args.profile, args.waits)
    rec.save(args.out)
    rec.close()


if __name__ == "__main__":
    main()
