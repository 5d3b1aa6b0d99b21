"""A slice of the DiT over a batch of items: what a block-split stage runs with model kernels.

A call with ``Compute.blocks`` runs the model's blocks ``[start, end)`` (fractions of
its depth, rounded to whole blocks) over every item of the call at once, each at its own
denoise step. The first slice patchifies and embeds the items' latents; later slices
take the hidden states the previous stage sent (``items x tokens x dim`` in the model's
dtype: the activations that cross a link); the slice ending at the model's last block
projects back and takes the denoise step, so its output carries the new latents only.
Each item's conditioning (its timestep and its prompt embedding, both derived from the
item's identity) is recomputed on every stage rather than sent.

Simplifications, on purpose: a slice attends within its own chunk (no KV cache across
chunks, which a block-split stage would keep for its own blocks), and every item's
latents ride along with the hidden states so the last slice can take the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from pipefill.exec.kernels.dit import timestep_embedding
from pipefill.sim.program.actions import Compute, Message

if TYPE_CHECKING:
    from pipefill.exec.kernels.model import ModelKernels


@dataclass(frozen=True)
class Activations:
    """What a block-split stage hands the next: per row (item) its hidden states
    (``items x tokens x dim``; None after the model's last block), its latents
    (``items x C x T x H x W``) and its chunk (int64), so a receiver picks rows by chunk."""

    hidden: torch.Tensor | None
    latents: torch.Tensor
    chunks: torch.Tensor

    def rows(self) -> dict[int, tuple[torch.Tensor | None, torch.Tensor]]:
        """chunk -> (hidden row, latents row), each keeping its batch dimension."""
        out = {}
        for i, chunk in enumerate(self.chunks.tolist()):
            hidden = None if self.hidden is None else self.hidden[i:i + 1]
            out[int(chunk)] = (hidden, self.latents[i:i + 1])
        return out


def _payloads(inputs: Any) -> list[Any]:
    """The payloads in a call's inputs: a message's, each of a tuple's, or the object."""
    if isinstance(inputs, tuple | list):
        return [p for x in inputs for p in _payloads(x)]
    if isinstance(inputs, Message):
        return [inputs.payload]
    return [inputs]


def block_range(blocks: tuple[float, float], depth: int) -> tuple[int, int]:
    """The model's blocks of the fraction ``[start, end)`` (whole blocks, maybe none)."""
    return round(blocks[0] * depth), round(blocks[1] * depth)


def run_slice(k: ModelKernels, action: Compute) -> Activations:
    """Run ``action``'s slice of the DiT over its items (module docstring)."""
    assert action.blocks is not None
    dit: Any = k.b.dit
    base: Any = getattr(dit, "dit", dit)  # a tensor-parallel wrapper keeps the embeddings
    lo, hi = block_range(action.blocks, base.size.depth)
    rows = _gather(k, action)
    latents = torch.cat([rows[t.chunk][1] for t in action.items])
    have = [rows[t.chunk][0] for t in action.items]
    if lo == 0 or any(h is None for h in have):
        hidden = base.embed(base.patchify(latents)) + base.pos
    else:
        hidden = torch.cat([h for h in have if h is not None])
    c = _conditioning(k, action, base)
    for block in list(dit.blocks)[lo:hi]:
        hidden, _ = block(hidden, c, None)
    chunks = torch.tensor([t.chunk for t in action.items], dtype=torch.int64,
                          device=latents.device)
    if hi < base.size.depth:
        return Activations(hidden, latents, chunks)
    velocity = base.unpatchify(base.out(hidden), latents.shape)
    return Activations(None, latents - velocity / max(1, k.steps), chunks)


def _gather(k: ModelKernels, action: Compute
            ) -> dict[int, tuple[torch.Tensor | None, torch.Tensor]]:
    """Every item's (hidden, latents): from the activations received, else from a
    fresh input (an encoded chunk), else the chunk's seeded noise."""
    rows: dict[int, tuple[torch.Tensor | None, torch.Tensor]] = {}
    fresh = None
    for p in _payloads(action.inputs):
        if isinstance(p, Activations):
            rows.update(p.rows())
        elif p is not None:
            fresh = p
    for tag in action.items:
        if tag.chunk in rows:
            continue
        obj = getattr(fresh, "latents", fresh)
        x = obj if isinstance(obj, torch.Tensor) else k.noise(tag, k.b.size.latent_shape)
        rows[tag.chunk] = (None, k.as_latents(x))
    return rows


def _conditioning(k: ModelKernels, action: Compute, base: Any) -> torch.Tensor:
    """Per item: its timestep's embedding plus its prompt's, ``items x dim``."""
    steps = max(1, k.steps)
    t = torch.tensor([max(0.0, 1.0 - max(tag.step, 0) / steps) for tag in action.items],
                     device=k.b.device, dtype=k.b.dtype)
    cond = torch.cat([k.b.cond_net(k.noise(tag, (1, k.b.size.cond_dim)))
                      for tag in action.items])
    out: torch.Tensor = base.t_mlp(timestep_embedding(t, base.size.dim)) + base.c_proj(cond)
    return out
