"""Model kernels: adaLN-Zero blocks, the KV cache, the VAE, seeded weights, and a replay in
which real tensors flow through the programs' payloads."""

from __future__ import annotations

import pytest
import torch

from pipefill.exec.kernels import model as model_kernels
from pipefill.exec.kernels.dit import KV, Block, DiT
from pipefill.exec.kernels.model import Envelope, ModelBundle, ModelKernels
from pipefill.exec.kernels.nn import MODEL_SIZES
from pipefill.exec.kernels.vae import Decoder, Encoder
from pipefill.exec.threads.replay import ReplayOptions, replay
from pipefill.exec.threads.runtime import CpuRuntime
from pipefill.sim.engine.core import simulate
from pipefill.sim.program.actions import INFER, Compute, Message
from pipefill.traces.recorder import Tag
from tests.helpers.replay import check_hard_cuts
from tests.helpers.scenarios import make_scenario

TINY = MODEL_SIZES["tiny"]
STAGES = ("stage0", "stage1")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _kernels(steps: int = 2, seed: int = 0) -> ModelKernels:
    bundle = ModelBundle(TINY, CpuRuntime(STAGES, 1), seed)
    return ModelKernels(bundle, steps, seed, fallback=lambda: None)


@torch.inference_mode()
def test_adaln_zero_block_starts_as_the_identity():
    block = Block(32, 2, _gen(), zero=True)
    x, c = torch.randn(1, 10, 32, generator=_gen(1)), torch.randn(1, 32, generator=_gen(2))
    out, kv = block(x, c, None)
    assert torch.equal(out, x)
    assert kv.k.shape == kv.v.shape == (1, 2, 10, 16)


@torch.inference_mode()
def test_dit_keeps_the_latent_shape_and_its_output_depends_on_the_cache():
    dit = DiT(TINY, _gen())
    x = torch.randn(TINY.latent_shape, generator=_gen(1))
    t, cond = torch.ones(1), torch.randn(1, TINY.cond_dim, generator=_gen(2))
    out, own = dit(x, t, cond, None)
    assert out.shape == x.shape and len(own) == TINY.depth
    assert own[0].k.shape == (1, TINY.heads, TINY.tokens, TINY.dim // TINY.heads)
    _, other = dit(torch.randn(TINY.latent_shape, generator=_gen(3)), t, cond, None)
    cached, own_again = dit(x, t, cond, other)
    assert not torch.allclose(out, cached)
    assert torch.allclose(own_again[0].k, own[0].k)  # the first block's keys are its own


def test_same_seed_same_weights_and_no_global_rng_use():
    state = torch.random.get_rng_state()
    a, b = DiT(TINY, _gen(5)), DiT(TINY, _gen(5))
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@torch.inference_mode()
def test_vae_maps_latent_frames_to_4_pixel_frames_at_8x_and_back():
    z = torch.randn(TINY.latent_shape, generator=_gen())
    frames = Decoder(TINY, _gen(1))(z)
    c, t, h, w = TINY.latent_shape[1:]
    assert frames.shape == (1, 3, 4 * t, 8 * h, 8 * w)
    assert frames.abs().max() <= 1.0
    assert Encoder(TINY, _gen(2))(frames).shape == z.shape
    assert Encoder(TINY, _gen(2))(frames[:, :, :5]).shape == (1, c, 2, h, w)


def _compute(phase: str, chunk: int, inputs, step: int = -1) -> Compute:
    return Compute(phase, Tag(0, chunk, chunk, 0, step), inputs=inputs)


@torch.inference_mode()
def test_kv_cache_lifecycle_init_cache_recompute_and_window():
    k = _kernels(steps=2)
    tokens, window = TINY.tokens, TINY.kv_chunks * TINY.tokens

    def chunk(c: int, init: bool) -> Envelope:
        env = k.build(_compute("build", c, None))
        msg = Message(INFER, Tag(0, c, c, 0), init_cache=init, payload=env)
        for s in range(2):
            env = k.denoise(_compute("denoise", c, msg, step=s))
            msg = Message(INFER, msg.tag, init_cache=init, payload=env)
        return env

    def cached() -> int:
        cache = k.sessions[0].cache
        assert cache is not None and len(cache) == TINY.depth
        return cache[0].k.shape[2]

    chunk(0, init=True)
    assert cached() == tokens
    for c in (1, 2, 3):
        chunk(c, init=False)
    assert cached() == window  # bounded by the window
    chunk(4, init=True)  # a new epoch forgets the old cache
    assert cached() == tokens
    frames = k.decode(_compute("decode", 4, Message(INFER, Tag(), payload=chunk(5, False))))
    ctx = k.encode(_compute("encode", 5, frames))
    env = k.build(_compute("build", 6, ctx))
    assert env.context is not None and env.context.shape == TINY.latent_shape
    k.recompute(_compute("recompute", 6, Message(INFER, Tag(), payload=env)))
    assert cached() == tokens  # rebuilt from the context alone


@torch.inference_mode()
def test_build_noise_depends_only_on_seed_session_and_chunk():
    a, b = _kernels(seed=3), _kernels(seed=3)
    first = a.build(_compute("build", 7, None)).latents
    b.build(_compute("build", 2, None))
    assert torch.equal(first, b.build(_compute("build", 7, None)).latents)
    assert not torch.equal(first, a.build(_compute("build", 8, None)).latents)


def test_calls_the_networks_do_not_compute_use_the_fallback(monkeypatch):
    monkeypatch.delitem(model_kernels.MODEL_PHASES, "encode")
    calls = []

    class Fallback:
        def run(self, action):
            calls.append(action.phase)
            return "fallback"

    bundle = ModelBundle(TINY, CpuRuntime(STAGES, 1), 0)
    k = ModelKernels(bundle, 1, 0, fallback=Fallback)
    assert k.run(_compute("encode", 0, None)) == "fallback"
    assert k.run(_compute("build", 0, None)) is not None and calls == ["encode"]
    pair = (Tag(0, 1, 1, 0, 0), Tag(1, 1, 2, 0, 0))
    assert k.run(Compute("denoise", pair[0], batch=pair)) == "fallback"  # a batched call
    assert k.run(Compute("denoise", pair[0], share=0.5)) == "fallback"  # a model slice
    assert calls == ["encode", "denoise", "denoise"]


@pytest.mark.parametrize("policy", [
    {"name": "phase_pp", "recompute": "r0a", "anchor": "anchor_only", "hard_cuts": [3]},
    {"name": "phase_pp", "recompute": "r0", "d_in": 1},
    {"name": "serial", "recompute": "r0a"},
], ids=["r0a-anchor-cut", "r0", "serial-r0a"])
def test_replay_with_model_kernels_runs_every_phase_for_real(policy, tmp_path):
    costs = {"build": 1.0, "denoise": {"mean": 2.0, "steps": 2}, "recompute": 1.0,
             "decode": 2.0, "anchor_decode": 1.0, "encode": 1.0}
    sc = make_scenario(policy, costs, chunks=6)
    opts = ReplayOptions(kernels="model", model_size="tiny", calibration_path=tmp_path / "c.json")
    trace = replay(sc, opts)
    pred = simulate(sc)
    # which chunks a hard cut drops depends on real durations; the contract does not
    check_hard_cuts(trace, 6, policy.get("hard_cuts", []))
    assert set(trace.spans["name"]) >= set(pred.spans["name"]) - {"anchor_decode"}
    assert trace.meta["kernels"]["kernels"] == "model"
    assert trace.meta["transport_mode"] == "handoff"
    assert not (tmp_path / "c.json").exists()  # no phase needed the calibrated fallback


def test_kv_concatenation_keeps_the_window():
    a = KV(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2))
    b = KV(torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2))
    c = a.cat(b, keep=5)
    assert c.k.shape[2] == 5 and c.k[0, 0, :, 0].tolist() == [0, 0, 1, 1, 1]
