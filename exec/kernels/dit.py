"""A small causal video DiT: adaLN-Zero transformer blocks attending to a KV cache.

Latents of one chunk are patchified into tokens; every block attends from the chunk's
tokens to the cached keys/values of earlier chunks plus its own (block-causal
streaming, as in CausVid-style generators). ``forward`` returns the predicted
velocity and the chunk's per-block keys/values, which the caller may append to its
cache (``denoise``) or install as the cache (``recompute``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipefill.exec.kernels.nn import Linear, ModelSize


@dataclass(frozen=True)
class KV:
    """Keys and values of one block, ``(batch, heads, tokens, head_dim)`` each."""

    k: torch.Tensor
    v: torch.Tensor

    def cat(self, other: KV, keep: int) -> KV:
        """Append ``other``'s tokens, keeping the last ``keep`` tokens (the window)."""
        k = torch.cat([self.k, other.k], dim=2)[:, :, -keep:]
        v = torch.cat([self.v, other.v], dim=2)[:, :, -keep:]
        return KV(k, v)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Block(nn.Module):
    """adaLN-Zero DiT block: the conditioning regresses shift, scale and gate of both
    sub-layers. With ``zero=True`` (the DiT initialisation) the gates are zero, so a
    fresh block is the identity map."""

    def __init__(self, dim: int, heads: int, gen: torch.Generator, zero: bool) -> None:
        super().__init__()
        self.dim, self.heads = dim, heads
        self.ada = Linear(dim, 6 * dim, gen, std=0.02, zero=zero)
        self.qkv = Linear(dim, 3 * dim, gen)
        self.proj = Linear(dim, dim, gen)
        self.fc1 = Linear(dim, 4 * dim, gen)
        self.fc2 = Linear(4 * dim, dim, gen)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.dim // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, c: torch.Tensor,
                past: KV | None) -> tuple[torch.Tensor, KV]:
        mods = self.ada(F.silu(c)).unsqueeze(1).chunk(6, dim=-1)
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        h = _modulate(F.layer_norm(x, (self.dim,)), shift1, scale1)
        q, k, v = (self._heads(t) for t in self.qkv(h).chunk(3, dim=-1))
        own = KV(k, v)
        keys = torch.cat([past.k, k], dim=2) if past is not None else k
        vals = torch.cat([past.v, v], dim=2) if past is not None else v
        att = F.scaled_dot_product_attention(q, keys, vals)
        x = x + gate1 * self.proj(att.transpose(1, 2).reshape(x.shape))
        h = _modulate(F.layer_norm(x, (self.dim,)), shift2, scale2)
        x = x + gate2 * self.fc2(F.gelu(self.fc1(h)))
        return x, own


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of diffusion time t in [0, 1], shape ``(batch, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = 1000.0 * t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(t.dtype)


class DiT(nn.Module):
    """Patchify, embed time and conditioning, ``depth`` blocks with a KV cache, unpatchify.

    Invariant: ``forward(x, ...)`` returns a tensor of ``x``'s shape and one :class:`KV`
    per block for the chunk's own tokens.
    """

    def __init__(self, size: ModelSize, gen: torch.Generator, zero: bool = False) -> None:
        super().__init__()
        self.size = size
        c, p, d = size.latent_channels, size.patch, size.dim
        self.embed = Linear(c * p * p, d, gen)
        self.pos = nn.Parameter(torch.randn(1, size.tokens, d, generator=gen) * 0.02)
        self.t_mlp = nn.Sequential(Linear(d, d, gen), nn.SiLU(), Linear(d, d, gen))
        self.c_proj = Linear(size.cond_dim, d, gen)
        self.blocks = nn.ModuleList(Block(d, size.heads, gen, zero) for _ in range(size.depth))
        self.out = Linear(d, c * p * p, gen, std=0.02, zero=zero)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        p = self.size.patch
        x = x.view(b, c, t, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6)
        return x.reshape(b, t * (h // p) * (w // p), c * p * p)

    def unpatchify(self, tokens: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        b, c, t, h, w = shape
        p = self.size.patch
        x = tokens.view(b, t, h // p, w // p, c, p, p).permute(0, 4, 1, 2, 5, 3, 6)
        return x.reshape(shape)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                cache: list[KV] | None,
                blocks: nn.ModuleList | None = None) -> tuple[torch.Tensor, list[KV]]:
        """``blocks``: run these instead of the model's own (a tensor-parallel shard)."""
        tokens = self.embed(self.patchify(x)) + self.pos
        c = self.t_mlp(timestep_embedding(t, self.size.dim)) + self.c_proj(cond)
        own: list[KV] = []
        for i, block in enumerate(self.blocks if blocks is None else blocks):
            tokens, kv = block(tokens, c, cache[i] if cache else None)
            own.append(kv)
        return self.unpatchify(self.out(tokens), x.shape), own
