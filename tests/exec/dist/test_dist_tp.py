"""Tensor parallelism of the mesh: the sharded DiT computes what the whole DiT computes,
and the collective guard refuses a collective aimed at any group but the mesh's."""

from __future__ import annotations

import threading

import pytest
import torch

from pipefill.exec.dist import tp
from pipefill.exec.dist.errors import MeshCollectiveError, WrongGroupError
from pipefill.exec.dist.tp import Collectives, TPDiT
from pipefill.exec.kernels.dit import DiT
from pipefill.exec.kernels.nn import MODEL_SIZES


class _ThreadMesh:
    """A sum all-reduce across ``n`` threads (stands in for the mesh's process group)."""

    def __init__(self, n: int) -> None:
        self.barrier = threading.Barrier(n, timeout=20)
        self.parts: list[torch.Tensor | None] = [None] * n

    def member(self, rank: int) -> _Member:
        return _Member(self, rank)


class _Member:
    def __init__(self, mesh: _ThreadMesh, rank: int) -> None:
        self.mesh, self.rank = mesh, rank

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        self.mesh.parts[self.rank] = t.clone()
        self.mesh.barrier.wait()
        total = torch.stack([p for p in self.mesh.parts if p is not None]).sum(0)
        self.mesh.barrier.wait()
        return t.copy_(total)


def _inputs(size, gen):
    x = torch.randn(size.latent_shape, generator=gen)
    return x, torch.full((1,), 0.5), torch.randn(1, size.cond_dim, generator=gen)


def test_the_sharded_dit_matches_the_whole_dit_with_and_without_a_cache():
    ranks = 2
    size = MODEL_SIZES["tiny"]
    gen = torch.Generator().manual_seed(3)
    dit = DiT(size, gen).eval()
    x, t, cond = _inputs(size, gen)
    with torch.inference_mode():
        ref0, kv0 = dit(x, t, cond, None)
        ref1, _ = dit(ref0, t, cond, kv0)
    mesh = _ThreadMesh(ranks)
    results: dict[int, tuple] = {}

    def shard(rank: int) -> None:
        tp = TPDiT(dit, rank, ranks, mesh.member(rank))
        with torch.inference_mode():
            out0, own = tp(x, t, cond, None)
            out1, _ = tp(out0, t, cond, own)
        results[rank] = (out0, own, out1)

    threads = [threading.Thread(target=shard, args=(r,)) for r in range(ranks)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    heads = size.heads // ranks
    for rank, (out0, own, out1) in results.items():
        assert torch.allclose(out0, ref0, atol=1e-5) and torch.allclose(out1, ref1, atol=1e-5)
        # each rank caches keys/values of its own heads only
        mine = slice(rank * heads, (rank + 1) * heads)
        assert torch.allclose(own[0].k, kv0[0].k[:, mine], atol=1e-5)
    assert sorted(results) == list(range(ranks))


def test_a_collective_aimed_at_another_group_is_refused_before_it_is_issued():
    mesh, world = object(), object()
    issued: list[object] = []
    coll = Collectives(mesh, lambda t, g: issued.append(g), {"mesh": mesh, "world": world},
                       wrong=world)
    coll.all_reduce(torch.zeros(1))
    coll.misroute()
    with pytest.raises(WrongGroupError, match="aimed at the world group"):
        coll.all_reduce(torch.zeros(1))
    coll.all_reduce(torch.zeros(1))  # the misroute was one call only
    assert issued == [mesh, mesh]


def test_a_failed_mesh_collective_says_so_without_gloo_noise():
    def broken(t, g):
        raise RuntimeError("[/x/gloo/pair.cc:537] Read error: Connection reset by peer. "
                           "This is typically caused by a remote worker hanging.")

    coll = Collectives(object(), broken, {})
    with pytest.raises(MeshCollectiveError, match=r"a mesh rank is gone or stuck "
                                                  r"\(RuntimeError: Read error: Connection "
                                                  r"reset by peer\.\)$"):
        coll.all_reduce(torch.zeros(1))


def test_heads_must_split_evenly_over_the_mesh():
    dit = DiT(MODEL_SIZES["tiny"], torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="2 heads do not split over 3 mesh ranks"):
        TPDiT(dit, 0, 3, _ThreadMesh(3).member(0))


def test_collectives_add_up_the_wall_time_they_waited(monkeypatch):
    ticks = iter([1.0, 1.25, 2.0, 2.0625])  # seconds read before and after each reduce
    monkeypatch.setattr(tp.time, "perf_counter", lambda: next(ticks))
    mesh = object()
    coll = Collectives(mesh, lambda t, g: None, {"mesh": mesh})
    coll.all_reduce(torch.zeros(1))
    coll.all_reduce(torch.zeros(1))
    assert coll.wait_ms == 312.5
