"""Tensor parallelism inside the mesh: guarded collectives, a sharded DiT, a mesh sync.

Every collective a kernel issues goes through :class:`Collectives`, which only lets
it run on the mesh's own group. A collective aimed at another group (the world, which
rank0 never joins for TP) would wait for ranks that never come; the guard refuses it
at once with :class:`pipefill.exec.dist.errors.WrongGroupError` instead.

:class:`TPDiT` shards each adaLN-Zero block Megatron-style over the mesh: attention
heads and MLP hidden units are split by rank, the output projections are row-parallel
and one all-reduce per sub-layer (two per block) sums the partial results, so every
mesh rank ends the forward with the same activations. Each rank keeps the KV cache of
its own heads. :class:`MeshSync` gives kernels without a sharded model (calibrated
kernels) one small all-reduce per call, so the mesh ranks still run in lockstep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from pipefill.exec.dist.errors import MeshCollectiveError, WrongGroupError, error_line
from pipefill.exec.kernels.dit import KV, Block, DiT
from pipefill.sim.program.actions import Compute


class AllReduce(Protocol):
    def all_reduce(self, t: torch.Tensor) -> torch.Tensor: ...


class Collectives:
    """The mesh's collectives (sum all-reduce on ``group``), guarded.

    ``reduce(t, group)`` performs the all-reduce; ``groups`` names every group of the
    run so a refusal can say which one was aimed at. ``misroute()`` makes the next
    collective target ``wrong`` instead (the wrong-group fault). ``wait_ms`` adds up the
    wall time of the all-reduces: inside a compute span it is time the rank waited for
    its peers, not computed (the parallelism record leaves it out of the CPU share).
    """

    def __init__(self, group: Any, reduce: Callable[[torch.Tensor, Any], None],
                 groups: dict[str, Any], wrong: Any = None) -> None:
        self.group, self.reduce, self.groups, self.wrong = group, reduce, groups, wrong
        self._misroute = False
        #: wall ms spent inside all-reduces (mostly waiting for the other mesh ranks)
        self.wait_ms = 0.0

    def misroute(self) -> None:
        self._misroute = True

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        group = self.group
        if self._misroute:
            self._misroute, group = False, self.wrong
        if group is not self.group:
            name = next((n for n, g in self.groups.items() if g is group), "unknown")
            raise WrongGroupError(f"all_reduce aimed at the {name} group; tensor-parallel "
                                  "collectives may only run on the mesh group")
        t0 = time.perf_counter()
        try:
            self.reduce(t, group)
        except RuntimeError as exc:
            raise MeshCollectiveError(f"all_reduce on the mesh group failed, a mesh rank is "
                                      f"gone or stuck ({error_line(exc)})") from None
        self.wait_ms += (time.perf_counter() - t0) * 1e3
        return t


class TPBlock(nn.Module):
    """Rank ``rank``'s shard of one :class:`Block` (heads and hidden units by rank)."""

    def __init__(self, block: Block, rank: int, size: int, coll: AllReduce) -> None:
        super().__init__()
        dim, heads = block.dim, block.heads
        if heads % size:
            raise ValueError(f"{heads} heads do not split over {size} mesh ranks")
        self.dim, self.local_heads, self.coll = dim, heads // size, coll
        hd = dim // heads
        cols = slice(rank * self.local_heads * hd, (rank + 1) * self.local_heads * hd)
        wq, wk, wv = block.qkv.weight.chunk(3, dim=0)
        bq, bk, bv = block.qkv.bias.chunk(3)
        self.qkv_w = torch.cat([wq[cols], wk[cols], wv[cols]])
        self.qkv_b = torch.cat([bq[cols], bk[cols], bv[cols]])
        self.proj_w, self.proj_b = block.proj.weight[:, cols], block.proj.bias
        hidden = block.fc1.weight.shape[0] // size
        rows = slice(rank * hidden, (rank + 1) * hidden)
        self.fc1_w, self.fc1_b = block.fc1.weight[rows], block.fc1.bias[rows]
        self.fc2_w, self.fc2_b = block.fc2.weight[:, rows], block.fc2.bias
        self.ada = block.ada

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.local_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, c: torch.Tensor,
                past: KV | None) -> tuple[torch.Tensor, KV]:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c)).unsqueeze(1).chunk(
            6, dim=-1)
        h = F.layer_norm(x, (self.dim,)) * (1 + scale1) + shift1
        q, k, v = (self._heads(t) for t in F.linear(h, self.qkv_w, self.qkv_b).chunk(3, -1))
        own = KV(k, v)
        keys = torch.cat([past.k, k], dim=2) if past is not None else k
        vals = torch.cat([past.v, v], dim=2) if past is not None else v
        att = F.scaled_dot_product_attention(q, keys, vals).transpose(1, 2)
        part = F.linear(att.reshape(*x.shape[:2], -1), self.proj_w)
        x = x + gate1 * (self.coll.all_reduce(part) + self.proj_b)
        h = F.layer_norm(x, (self.dim,)) * (1 + scale2) + shift2
        part = F.linear(F.gelu(F.linear(h, self.fc1_w, self.fc1_b)), self.fc2_w)
        x = x + gate2 * (self.coll.all_reduce(part) + self.fc2_b)
        return x, own


class TPDiT(nn.Module):
    """A :class:`DiT` whose blocks are sharded over the mesh; same forward contract."""

    def __init__(self, dit: nn.Module, rank: int, size: int, coll: AllReduce) -> None:
        super().__init__()
        if not isinstance(dit, DiT):
            raise TypeError(f"can only shard a DiT, not {type(dit).__name__}")
        self.dit, self.size = dit, dit.size
        self.blocks = nn.ModuleList(TPBlock(b, rank, size, coll) for b in dit.blocks
                                    if isinstance(b, Block))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                cache: list[KV] | None) -> tuple[torch.Tensor, list[KV]]:
        out: tuple[torch.Tensor, list[KV]] = self.dit(x, t, cond, cache, blocks=self.blocks)
        return out


class MeshSync:
    """Kernels plus one all-reduce per call on the mesh group (lockstep without a model)."""

    def __init__(self, inner: Any, coll: Collectives, device: torch.device) -> None:
        self.inner, self.coll = inner, coll
        self.probe = torch.zeros(1, device=device)

    def run(self, action: Compute) -> Any:
        out = self.inner.run(action)
        self.coll.all_reduce(self.probe)
        return out
