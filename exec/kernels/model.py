"""Model kernels: real networks per phase, real tensors through the programs' payloads.

``build`` makes an :class:`Envelope` (seeded noise latents, conditioning, and for r0a
the packed context); ``recompute`` rebuilds the stage's KV cache from the context
(r0a: the front end's re-encoded frames; r0: the stage's own last latents); each ``denoise``
step runs the DiT over the chunk attending to the cache (the last step's keys/values
join the cache); ``decode``/``anchor_decode`` run the VAE decoder on all / the last
latent frame; ``encode`` re-encodes frames into context latents. Phases outside
:data:`MODEL_PHASES`, batched calls and calls on a slice of the model fall back to
the calibrated workload priced by the cost model, so a new policy still runs (those
durations are then modelled, not measured).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipefill.exec.kernels.dit import KV, DiT
from pipefill.exec.kernels.nn import Linear, ModelSize, frozen
from pipefill.exec.kernels.sliced import Activations, run_slice
from pipefill.exec.kernels.vae import Decoder, Encoder
from pipefill.exec.threads.runtime import Runtime
from pipefill.sim.program.actions import INFER, Compute, Message
from pipefill.traces.recorder import Tag


@dataclass(frozen=True)
class Envelope:
    """What flows between model kernels: latents, conditioning and optional context."""

    latents: torch.Tensor
    cond: torch.Tensor
    context: torch.Tensor | None = None


class ModelBundle:
    """The networks, built once from ``seed`` and shared read-only by every stage."""

    def __init__(self, size: ModelSize, runtime: Runtime, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        dev, dt = runtime.device, runtime.model_dtype
        self.size, self.device, self.dtype = size, dev, dt
        self.dit = frozen(DiT(size, gen), dev, dt)
        self.decoder = frozen(Decoder(size, gen), dev, dt)
        self.encoder = frozen(Encoder(size, gen), dev, dt)
        cd = size.cond_dim
        self.cond_net = frozen(nn.Sequential(Linear(cd, cd, gen), nn.SiLU(), Linear(cd, cd, gen)),
                               dev, dt)

    def parameters(self) -> int:
        nets = (self.dit, self.decoder, self.encoder, self.cond_net)
        return sum(p.numel() for net in nets for p in net.parameters())


@dataclass
class _Session:
    """Generator state of one session on one stage: KV cache and last clean latents."""

    cache: list[KV] | None = None
    last: torch.Tensor | None = None


class ModelKernels:
    """One stage's model kernels: shared networks, stage-local caches and generator.

    Contract: ``run(action)`` returns the phase's output tensor(s) and never reads
    another stage's state; noise for chunk k depends only on (seed, session, k).
    """

    def __init__(self, bundle: ModelBundle, steps: int, seed: int,
                 fallback: Callable[[], Any]) -> None:
        self.b, self.steps, self.seed = bundle, steps, seed
        self.gen = torch.Generator(device=bundle.device)
        self.sessions: dict[int, _Session] = {}
        self._fallback_factory = fallback
        self._fallback: Any = None

    def prepare(self) -> None:
        """Warm the networks up in the calling (worker) thread: cuBLAS/cuDNN handles and
        workspaces are per thread and stream, so a warm-up elsewhere leaves chunk 0
        paying for them."""
        warm_up(self.b)

    def run(self, action: Compute) -> Any:
        if action.blocks is not None and action.phase == "denoise":
            return run_slice(self, action)  # a block-split stage's slice, batch and all
        kernel = MODEL_PHASES.get(action.phase)
        # a batched call or a slice of the model is not what these networks compute:
        # it runs the calibrated workload the cost model prices for it instead
        whole = len(action.items) == 1 and action.share == 1.0
        if kernel is not None and whole:
            return kernel(self, action)
        if self._fallback is None:
            self._fallback = self._fallback_factory()
        return self._fallback.run(action)

    # -- helpers ----------------------------------------------------------------------
    def _session(self, session: int) -> _Session:
        return self.sessions.setdefault(session, _Session())

    def _noise(self, action: Compute, shape: tuple[int, ...]) -> torch.Tensor:
        return self.noise(action.tag, shape)

    def noise(self, tag: Tag, shape: tuple[int, ...]) -> torch.Tensor:
        """Seeded noise of ``tag``'s chunk (the same on every stage and rank)."""
        self.gen.manual_seed(self.seed * 1_000_003 + tag.session * 100_003 + tag.chunk)
        x = torch.randn(shape, generator=self.gen, device=self.b.device)
        return x.to(self.b.dtype)

    def _envelope(self, action: Compute) -> Envelope:
        """The envelope in a kernel's inputs; a fresh one if a policy passed none."""
        obj = action.inputs.payload if isinstance(action.inputs, Message) else action.inputs
        if isinstance(obj, Envelope):
            return obj
        if isinstance(obj, Activations):  # a block-split stage's output: this chunk's row
            obj = obj.rows()[action.tag.chunk][1]
        latents = obj if isinstance(obj, torch.Tensor) else None
        if latents is None:
            latents = self._noise(action, self.b.size.latent_shape)
        cond = self.b.cond_net(self._noise(action, (1, self.b.size.cond_dim)))
        return Envelope(self.as_latents(latents), cond)

    def as_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Fit any latents or pixel frames to the DiT's latent grid (context packing)."""
        size = self.b.size
        shape = size.latent_shape
        if tuple(x.shape) == shape:
            return x
        x = F.adaptive_avg_pool3d(x.float(), shape[2:])
        reps = -(-shape[1] // x.shape[1])
        return x.repeat(1, reps, 1, 1, 1)[:, : shape[1]].to(self.b.dtype)

    def _time(self, value: float) -> torch.Tensor:
        return torch.full((1,), value, device=self.b.device, dtype=self.b.dtype)

    def _window(self, cache: list[KV] | None, own: list[KV]) -> list[KV]:
        keep = self.b.size.kv_chunks * self.b.size.tokens
        if cache is None:
            return [KV(kv.k[:, :, -keep:], kv.v[:, :, -keep:]) for kv in own]
        return [old.cat(new, keep) for old, new in zip(cache, own, strict=True)]

    # -- phases -------------------------------------------------------------------------
    def build(self, action: Compute) -> Envelope:
        size = self.b.size
        noise = self._noise(action, size.latent_shape)
        cond = self.b.cond_net(self._noise(action, (1, size.cond_dim)))
        ctx = action.inputs
        context = self.as_latents(ctx) if isinstance(ctx, torch.Tensor) else None
        return Envelope(noise, cond, context)

    def recompute(self, action: Compute) -> Envelope:
        env = self._envelope(action)
        st = self._session(action.tag.session)
        ctx = env.context if env.context is not None else st.last
        ctx = env.latents if ctx is None else ctx
        _, own = self.b.dit(self.as_latents(ctx), self._time(0.0), env.cond, None)
        st.cache = self._window(None, own)
        return env

    def denoise(self, action: Compute) -> Envelope:
        env = self._envelope(action)
        st = self._session(action.tag.session)
        step = max(action.tag.step, 0)
        if step == 0 and isinstance(action.inputs, Message) and action.inputs.init_cache:
            st.cache, st.last = None, None
        t = self._time(1.0 - step / self.steps)
        velocity, own = self.b.dit(env.latents, t, env.cond, st.cache)
        latents = env.latents - velocity / self.steps
        if step == self.steps - 1:
            st.cache, st.last = self._window(st.cache, own), latents
        return Envelope(latents, env.cond)

    def decode(self, action: Compute) -> torch.Tensor:
        return self.b.decoder(self._envelope(action).latents)

    def anchor_decode(self, action: Compute) -> torch.Tensor:
        return self.b.decoder(self._envelope(action).latents[:, :, -1:])

    def encode(self, action: Compute) -> torch.Tensor:
        frames = action.inputs
        if not isinstance(frames, torch.Tensor):
            frames = self.b.decoder(self._envelope(action).latents)
        return self.b.encoder(frames)


def warm_up(bundle: ModelBundle) -> None:
    """Run every network once on a scratch stage state: first calls allocate and pick
    kernels, which belongs to setup, not to chunk 0's spans."""
    k = ModelKernels(bundle, 1, 0, fallback=lambda: None)
    tag = Tag(0, 0, -1, 0, 0)
    env = k.build(Compute("build", tag))
    env = k.denoise(Compute("denoise", tag, inputs=Message(INFER, tag, init_cache=True,
                                                           payload=env)))
    frames = k.decode(Compute("decode", tag, inputs=env))
    k.anchor_decode(Compute("anchor_decode", tag, inputs=env))
    ctx = k.encode(Compute("encode", tag, inputs=frames))
    k.recompute(Compute("recompute", tag, inputs=k.build(Compute("build", tag, inputs=ctx))))


#: phase -> model kernel; phases not listed use the calibrated fallback
MODEL_PHASES: dict[str, Callable[[ModelKernels, Compute], Any]] = {
    "build": ModelKernels.build,
    "recompute": ModelKernels.recompute,
    "denoise": ModelKernels.denoise,
    "decode": ModelKernels.decode,
    "anchor_decode": ModelKernels.anchor_decode,
    "encode": ModelKernels.encode,
}
