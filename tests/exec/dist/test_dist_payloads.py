"""Real payloads between block-split stages: with model kernels each stage runs its slice
of the DiT, the activations (items x tokens x dim, the model's dtype) cross the links,
the trace's send spans carry the bytes sent, and `calibrate` fits the transport from
them."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.exec.kernels.model import ModelBundle, ModelKernels
from pipefill.exec.kernels.nn import MODEL_SIZES
from pipefill.exec.kernels.sliced import Activations, block_range
from pipefill.exec.threads.runtime import CpuRuntime
from pipefill.sim.program.actions import INFER, Compute, Message
from pipefill.traces.io import read_trace
from pipefill.traces.recorder import Tag
from tests.helpers.dist import FAST, dist_cal, run_token

__all__ = ["dist_cal", "run_token"]  # fixtures shared from tests.helpers.dist

runner = CliRunner()
TINY = MODEL_SIZES["tiny"]
STEPS = 2


def _kernels() -> ModelKernels:
    return ModelKernels(ModelBundle(TINY, CpuRuntime(("a",), 1), 0), STEPS, 0,
                        fallback=lambda: None)


def _whole_step(k: ModelKernels, tag: Tag, latents: torch.Tensor) -> torch.Tensor:
    """The reference: one denoise step of the whole DiT (no cache) on one item."""
    t = torch.full((1,), 1.0 - tag.step / STEPS)
    cond = k.b.cond_net(k.noise(tag, (1, TINY.cond_dim)))
    velocity, _ = k.b.dit(latents, t, cond, None)
    return latents - velocity / STEPS


@torch.inference_mode()
def test_slices_run_on_successive_stages_compose_to_the_whole_models_step():
    k = _kernels()
    tags = (Tag(0, 5, 5, 0, 0), Tag(0, 2, 2, 0, 1))  # a Stream Batch tick: two noise levels
    looped = Activations(None, torch.randn((1, *TINY.latent_shape[1:])),
                         torch.tensor([2]))
    first = k.run(Compute("denoise", tags[0], inputs=(None, Message(INFER, tags[1],
                                                                    payload=looped)),
                          batch=tags, share=0.5, blocks=(0.0, 0.5)))
    assert first.hidden is not None
    assert tuple(first.hidden.shape) == (2, TINY.tokens, TINY.dim)  # items x tokens x dim
    assert first.chunks.tolist() == [5, 2]
    second = k.run(Compute("denoise", tags[0], inputs=Message(INFER, tags[0], payload=first),
                           batch=tags, share=0.5, blocks=(0.5, 1.0)))
    assert second.hidden is None and tuple(second.latents.shape) == (2, *TINY.latent_shape[1:])
    fresh = k.noise(tags[0], TINY.latent_shape)
    for row, (tag, start) in enumerate([(tags[0], fresh), (tags[1], looped.latents)]):
        want = _whole_step(k, tag, start)
        assert torch.allclose(second.latents[row:row + 1], want, atol=1e-5)
    # the last stage decodes the finished chunk's own row
    frames = k.run(Compute("decode", Tag(0, 2, 2, 0), inputs=second))
    assert torch.equal(frames, k.b.decoder(second.latents[1:2]))


def test_block_fractions_map_to_whole_blocks_of_any_depth():
    assert [block_range(b, 4) for b in [(0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1)]] == [
        (0, 1), (1, 3), (3, 4)]
    assert block_range((0.5, 0.75), 2) == (1, 2)


@pytest.mark.parametrize("policy", [
    ["--set", "policy.name=layer_pp", "--set", "policy.stages=2", "--set", "policy.blocks=4",
     "--set", "policy.items=2"],
])
def test_activations_cross_ranks_with_their_bytes_and_calibrate_fits_them(
        tmp_path, run_token, dist_cal, policy):
    out, toml = tmp_path / "m.parquet", tmp_path / "cal.toml"
    res = runner.invoke(app, ["replay", *FAST, *policy, *dist_cal, "--set", "run.chunks=4",
                              "--kernels", "model", "--model-size", "tiny", "--backend",
                              "dist", "--timeout", "20", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    trace = read_trace(out)
    sends = trace.spans[trace.spans["name"] == "send"]
    item = 4 * (TINY.tokens * TINY.dim + TINY.latent_channels * TINY.latent_frames
                * TINY.latent_hw[0] * TINY.latent_hw[1]) + 8  # float32 on the CPU, int64 id
    per_stage = sends.groupby("stage")["value"].apply(set).to_dict()
    assert per_stage == {"stage0": {float(item)}, "stage1": {0.0}}  # activations; flush tokens
    assert (sends["stage"] == "stage0").sum() == 4
    res = runner.invoke(app, ["calibrate", str(out), "--out", str(toml), "--json"])
    assert res.exit_code == 0, res.output
    fitted = json.loads(res.stdout)["transport"]
    assert fitted["latency_ms"] >= 0 and fitted["bandwidth_gbps"] > 0
    assert fitted != trace.meta["transport"]
    assert runner.invoke(app, ["simulate", str(toml)]).exit_code == 0
