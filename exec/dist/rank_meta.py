"""What rank0 writes about a dist run (``meta``), and the transport backend of each link.

Links between ranks with GPUs of their own run NCCL point-to-point; a link between two
ranks that share a GPU keeps the world's backend (gloo through the host, unless NCCL
may share the GPU, see :func:`pipefill.exec.dist.config.nccl_can_place`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from pipefill.exec.dist.config import DistOptions, ranks_here
from pipefill.exec.dist.faults import DistFault
from pipefill.exec.dist.layout import RankLayout
from pipefill.exec.dist.rank_kernels import mesh_collectives_text
from pipefill.exec.lifecycle import exec_meta
from pipefill.exec.threads.replay import ReplayOptions
from pipefill.sim.scenario.load import Scenario


def gpu_of(rank: int, local_world: int, gpus: int) -> tuple[int, int]:
    """(node, GPU) of a rank: ranks fill the nodes ``local_world`` at a time, in order,
    and take a node's GPUs round-robin (the launcher's LOCAL_RANK % GPUs)."""
    return rank // local_world, (rank % local_world) % max(1, gpus)


def link_backend_of(opts: ReplayOptions, dopts: DistOptions, world_backend: str,
                    world: int) -> Callable[[int, int], str]:
    """The backend of the link between ranks a and b: NCCL where both have a GPU of
    their own (``--dist-backend auto`` on CUDA), else the world's."""
    own = (opts.device == "cuda" and dopts.dist_backend == "auto"
           and world_backend != "nccl" and dist.is_nccl_available())
    if not own:
        return lambda a, b: world_backend
    gpus, local = torch.cuda.device_count(), ranks_here(world)

    def backend(a: int, b: int) -> str:
        return "nccl" if gpu_of(a, local, gpus) != gpu_of(b, local, gpus) else world_backend

    return backend


def rank_meta(sc: Scenario, opts: ReplayOptions, dopts: DistOptions, layout: RankLayout,
              backend: str, device: str, *, error: str | None, fault: DistFault | None,
              family: dict[str, Any], trust: dict[str, Any], usage: dict[str, Any],
              clock_note: str | None) -> dict[str, Any]:
    """The trace metadata rank0 writes (``dist``: the layout, ranks, usage, clock)."""
    dist_meta = {"world_size": layout.world, "mesh_size": dopts.mesh_size,
                 "backend": backend, "master_addr": dopts.master_addr,
                 "usage": usage, "clock_note": clock_note, "poll_ms": dopts.poll_ms,
                 "mesh_collectives": mesh_collectives_text(opts.kernels, dopts.mesh_size)
                 if any(g.sharded for g in layout.groups) else None,
                 "ranks": layout.rank_names(), "layout": layout.as_meta()}
    return exec_meta(sc, opts, backend="dist", device=f"{device}; {layout.world} ranks over "
                     f"{backend}", error=error,
                     fault=None if fault is None else fault.describe(), kernels=family,
                     parallelism=trust, transport_mode="dist", dist=dist_meta)
