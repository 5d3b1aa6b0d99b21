"""Small network pieces for the model kernels, initialised from a passed-in generator.

``torch.nn.Linear``/``Conv2d`` draw their initial weights from the global RNG; these
take a ``torch.Generator`` instead, so building a model never touches global state
and the same seed always gives the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelSize:
    """Size of the model kernels' networks (one entry of :data:`MODEL_SIZES`).

    Latents are ``(1, latent_channels, latent_frames, *latent_hw)``; the DiT patchifies
    them with ``patch`` into ``dim``-wide tokens and runs ``depth`` adaLN-Zero blocks
    of ``heads`` heads; the KV cache holds the last ``kv_chunks`` chunks of tokens. The
    VAE maps each latent frame to 4 pixel frames at 8x the spatial size with
    ``vae_channels`` base channels.
    """

    dim: int
    depth: int
    heads: int
    latent_channels: int
    latent_frames: int
    latent_hw: tuple[int, int]
    patch: int
    vae_channels: int
    cond_dim: int
    kv_chunks: int = 2

    @property
    def latent_shape(self) -> tuple[int, int, int, int, int]:
        return (1, self.latent_channels, self.latent_frames, *self.latent_hw)

    @property
    def tokens(self) -> int:
        h, w = self.latent_hw
        return self.latent_frames * (h // self.patch) * (w // self.patch)


#: ``--model-size`` -> sizes; ``tiny`` for tests, ``small`` for CPU demos, ``base`` for GPUs
MODEL_SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(dim=32, depth=2, heads=2, latent_channels=4, latent_frames=3,
                      latent_hw=(8, 8), patch=2, vae_channels=8, cond_dim=16),
    "small": ModelSize(dim=128, depth=4, heads=4, latent_channels=16, latent_frames=3,
                       latent_hw=(16, 16), patch=2, vae_channels=16, cond_dim=64),
    "base": ModelSize(dim=768, depth=12, heads=12, latent_channels=16, latent_frames=3,
                      latent_hw=(30, 52), patch=2, vae_channels=64, cond_dim=256),
}


class Linear(nn.Module):
    """``y = x W^T + b`` with W ~ N(0, std^2) (std defaults to 1/sqrt(din)) or zeros."""

    def __init__(self, din: int, dout: int, gen: torch.Generator, std: float | None = None,
                 zero: bool = False) -> None:
        super().__init__()
        scale = din ** -0.5 if std is None else std
        w = torch.zeros(dout, din) if zero else torch.randn(dout, din, generator=gen) * scale
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(dout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class Conv2d(nn.Module):
    """A 3x3 (or k x k) convolution with generator-initialised weights, same padding."""

    def __init__(self, cin: int, cout: int, gen: torch.Generator, k: int = 3,
                 stride: int = 1) -> None:
        super().__init__()
        w = torch.randn(cout, cin, k, k, generator=gen) * (cin * k * k) ** -0.5
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.stride, self.pad = stride, k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.pad)


def frozen(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Move to device/dtype, evaluation mode, no gradients: inference-only weights."""
    module = module.to(device=device, dtype=dtype).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
