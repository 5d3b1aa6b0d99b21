"""Configuration of a dist replay: options, the rank environment and this rank's plan.

The rank layout itself comes from the policy (:mod:`pipefill.exec.dist.layout`). Every
check here raises :class:`ExecConfigError` (exit 2, nothing started).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipefill.exec.dist.layout import RankGroup, RankLayout, derive_layout
from pipefill.exec.errors import ExecConfigError
from pipefill.sim.scenario.model import Scenario

#: --dist-backend -> the torch.distributed backend it selects, per device
DIST_BACKENDS: dict[str, dict[str, str]] = {
    "auto": {"cpu": "gloo", "cuda": "nccl"},
    "gloo": {"cpu": "gloo", "cuda": "gloo"},
    "nccl": {"cuda": "nccl"},
}
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class DistOptions:
    """How to run a dist replay (on top of :class:`pipefill.exec.threads.replay.ReplayOptions`).

    ``mesh_size``: ranks of each tensor-parallel stage's mesh; ``world_size``: the
    size the user expects (checked against the layout; None = derived);
    ``master_addr``/``master_port``: rendezvous (loopback and a free port by default);
    ``dist_backend``: auto (gloo on CPU, NCCL on CUDA), gloo or nccl; ``poll_ms``: how
    long an idle comms thread waits for work before it sends a keep-alive ``noop``.
    """

    mesh_size: int = 1
    world_size: int | None = None
    master_addr: str = LOOPBACK
    master_port: int | None = None
    dist_backend: str = "auto"
    poll_ms: float = 1.0

    def layout(self, sc: Scenario) -> RankLayout:
        """The policy's rank layout with this mesh size (raises on a layout error)."""
        return derive_layout(sc, self.mesh_size)

    def backend_for(self, device: str, world: int) -> str:
        """The torch.distributed backend for ``device``; raises on NCCL without CUDA."""
        choices = DIST_BACKENDS.get(self.dist_backend)
        if choices is None:
            raise ExecConfigError("--dist-backend", f"unknown backend {self.dist_backend!r} "
                                  f"(allowed: {', '.join(DIST_BACKENDS)})")
        name = choices.get(device)
        if name is None:
            raise ExecConfigError("--dist-backend", f"{self.dist_backend} needs --device cuda "
                                  f"(on {device} use gloo)")
        if name == "nccl" and not (dist.is_nccl_available() and torch.cuda.is_available()):
            raise ExecConfigError("--dist-backend", "nccl asked for but this torch build "
                                  "has no NCCL or sees no CUDA device (use gloo)")
        here = ranks_here(world)
        if name == "nccl" and not nccl_can_place(here):
            if self.dist_backend == "auto":
                return "gloo"  # auto: ranks sharing a GPU go through gloo instead
            raise ExecConfigError("--dist-backend", nccl_placement_message(here))
        return name

    def check(self, sc: Scenario, device: str) -> RankLayout:
        """Every option against the policy's layout; returns the layout."""
        layout = self.layout(sc)
        if self.world_size is not None and self.world_size != layout.world:
            raise ExecConfigError("--world-size", world_message(layout, self.world_size,
                                                                self.mesh_size))
        if self.master_port is not None and not 0 < self.master_port < 65536:
            raise ExecConfigError("--master-port", f"must be in 1..65535 "
                                  f"(got {self.master_port})")
        if not self.poll_ms > 0:
            raise ExecConfigError("--poll-ms", f"must be > 0 (got {self.poll_ms})")
        self.backend_for(device, layout.world)
        return layout


def ranks_here(world: int) -> int:
    """Ranks on this machine (torchrun's LOCAL_WORLD_SIZE, else the whole world)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


#: the first NCCL that lets several ranks share one GPU (NCCL_MULTI_RANK_GPU_ENABLE)
NCCL_SHARED_GPU = (2, 30, 0)


def nccl_can_place(ranks: int) -> bool:
    """NCCL before 2.30 refuses two ranks on one GPU ('invalid usage' at setup)."""
    return ranks <= torch.cuda.device_count() or torch.cuda.nccl.version() >= NCCL_SHARED_GPU


def nccl_placement_message(ranks: int) -> str:
    version = ".".join(map(str, torch.cuda.nccl.version()))
    return (f"nccl needs one GPU per rank before NCCL 2.30: {ranks} ranks on "
            f"{torch.cuda.device_count()} GPU(s) with NCCL {version} (use --dist-backend "
            "gloo, or auto, which picks gloo here)")


def world_message(layout: RankLayout, world: int, mesh: int) -> str:
    return (f"{world} ranks, but policy {layout.policy} (--mesh-size {mesh}) runs "
            f"{layout.describe()} = {layout.world} ranks")


@dataclass(frozen=True)
class RankEnv:
    """Where this process sits: from torchrun's variables or the pipefill launcher's.

    ``agent_store``: torchrun's agent hosts the rendezvous store (all ranks are
    clients); ``listen_fd``: a socket the launcher already bound for rank0's store.
    """

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    agent_store: bool = False
    listen_fd: int | None = None
    attempt: int = 0

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> RankEnv | None:
        """The rank environment, or None when this process was not launched as a rank."""
        env = os.environ if env is None else env
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return None
        fd = env.get("PIPEFILL_STORE_FD")
        return cls(rank=_int(env, "RANK"), world_size=_int(env, "WORLD_SIZE"),
                   local_rank=_int(env, "LOCAL_RANK", "0"),
                   master_addr=env.get("MASTER_ADDR", LOOPBACK),
                   master_port=_int(env, "MASTER_PORT"),
                   agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE") == "True",
                   listen_fd=None if fd is None else int(fd),
                   attempt=_int(env, "TORCHELASTIC_RESTART_COUNT", "0"))

    def check(self, layout: RankLayout, opts: DistOptions) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ExecConfigError("RANK", f"{self.rank} is not in 0..{self.world_size - 1}")
        if self.world_size != layout.world:
            raise ExecConfigError("WORLD_SIZE", world_message(layout, self.world_size,
                                                              opts.mesh_size))


def _int(env: Mapping[str, str], key: str, default: str | None = None) -> int:
    raw = env.get(key, default)
    try:
        return int(str(raw))
    except ValueError:
        raise ExecConfigError(key, f"must be an integer (got {raw!r})") from None


@dataclass(frozen=True)
class RankPlan:
    """This rank's part of the layout: its group (stage), and whether it leads it.

    The leader of a group runs the stage's programs against the world and talks on the
    group's links; a mesh follower replays the leader's program results.
    """

    rank: int
    layout: RankLayout

    @property
    def world_size(self) -> int:
        return self.layout.world

    @property
    def group(self) -> RankGroup:
        return self.layout.group_of(self.rank)

    @property
    def stage(self) -> str:
        return self.group.stage

    @property
    def leader(self) -> bool:
        return self.rank == self.group.leader

    @property
    def follower(self) -> bool:
        return not self.leader

    @property
    def others(self) -> list[int]:
        """Every rank but rank0 (the clock reference and trace writer)."""
        return list(range(1, self.world_size))

    def describe(self) -> str:
        return self.layout.rank_names()[self.rank]
