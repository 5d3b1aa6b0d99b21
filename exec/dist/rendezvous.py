"""Rendezvous of a dist replay: the store, process groups, barriers, clock offset.

The store is torch's TCPStore. Rank0 hosts it on a socket bound to ``master_addr``
(loopback unless an address is given; TCPStore itself would listen on every
interface), or torchrun's agent hosts it. Besides the process-group rendezvous it
carries the run's control plane: a first-writer-wins failure line every rank polls,
and start/end barriers with their own deadlines, so no setup wait depends on a
collective that could hang.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from pipefill.exec.dist.config import RankEnv, RankPlan
from pipefill.exec.dist.errors import RendezvousError
from pipefill.exec.errors import ExecConfigError

FAILURE_KEY = "failure"
#: rounds of ping-pong behind the clock offset estimate (the fastest round wins)
CLOCK_ROUNDS = 8


def bind_listener(addr: str, port: int, field: str) -> socket.socket:
    """A listening socket on ``addr:port`` (port 0: a free one); in use -> exit 2."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((addr, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ExecConfigError(field, f"port {port} on {addr} is in use") from None
        raise ExecConfigError(field, f"cannot listen on {addr}:{port} ({exc.strerror})") \
            from None
    sock.set_inheritable(True)
    return sock


def open_store(env: RankEnv, timeout_s: float) -> Any:
    """This rank's handle on the run's store (rank0 hosts it unless torchrun's agent does)."""
    timeout = timedelta(seconds=timeout_s)
    if env.agent_store or env.rank != 0:
        store = dist.TCPStore(env.master_addr, env.master_port, env.world_size,
                              is_master=False, timeout=timeout)
    else:
        fd = env.listen_fd
        if fd is None:  # launched by hand: bind the given address, never all interfaces
            fd = bind_listener(env.master_addr, env.master_port, "MASTER_PORT").detach()
        store = dist.TCPStore(env.master_addr, env.master_port, env.world_size,
                              is_master=True, timeout=timeout, wait_for_workers=False,
                              master_listen_fd=fd)
    return dist.PrefixStore(f"pipefill/{env.attempt}", store)


@dataclass(frozen=True)
class Groups:
    """Process groups: ``link`` (rank0 + mesh leader), ``cast`` (leader -> followers
    broadcasts) and ``tp`` (tensor-parallel collectives), both over the mesh and None
    when the mesh has one rank; ``world`` only exists to be refused by the TP guard."""

    world: Any
    link: Any
    cast: Any | None
    tp: Any | None


def init_groups(store: Any, plan: RankPlan, backend: str, timeout_s: float) -> Groups:
    dist.init_process_group(backend, store=dist.PrefixStore("pg", store), rank=plan.rank,
                            world_size=plan.world_size, timeout=timedelta(seconds=timeout_s))
    # every rank creates every group, in the same order (torch requires it)
    link = dist.new_group([0, 1])
    cast = dist.new_group(plan.mesh) if len(plan.mesh) > 1 else None
    tp = dist.new_group(plan.mesh) if len(plan.mesh) > 1 else None
    return Groups(dist.group.WORLD, link, cast, tp)


def barrier(store: Any, name: str, world: int, timeout_s: float) -> None:
    """Wait until all ``world`` ranks reached ``name`` (a store counter, own deadline)."""
    store.add(name, 1)
    _wait_for(store, lambda: int(store.add(name, 0)) >= world, name, timeout_s)


def wait_key(store: Any, key: str, timeout_s: float) -> None:
    """Wait until some rank set ``key``."""
    _wait_for(store, lambda: bool(store.check([key])), key, timeout_s)


def _wait_for(store: Any, ready: Any, name: str, timeout_s: float) -> None:
    """Poll ``ready`` until true; a failure another rank published ends the wait."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        line = read_failure(store)
        if line is not None:
            raise RendezvousError(line)
        if time.monotonic() > deadline:
            raise RendezvousError(f"not every rank reached '{name}' within {timeout_s:g} s")
        time.sleep(0.005)


def publish_failure(store: Any, line: str) -> str:
    """Record ``line`` unless a failure is recorded already; return the recorded one."""
    got = store.compare_set(FAILURE_KEY, "", line)
    return got.decode() if isinstance(got, bytes) else str(got)


def read_failure(store: Any) -> str | None:
    if not store.check([FAILURE_KEY]):
        return None
    got = store.get(FAILURE_KEY)
    return got.decode() if isinstance(got, bytes) else str(got)


def clock_offset(group: Any, plan: RankPlan, device: torch.device,
                 now_ms: Any) -> tuple[float, float, float]:
    """(rank0's clock minus this rank's, round-trip ms, the leader's offset) between
    rank0 and the mesh leader (zeros on followers, which ship no rows).

    NTP-style: rank0 stamps t0, the leader answers its time tl, rank0 reads t2 and takes
    the round with the smallest t2 - t0; the estimate is off by at most half of it.
    """
    if plan.rank not in (0, 1):
        return 0.0, 0.0, 0.0
    buf = torch.zeros(1, dtype=torch.float64, device=device)
    best = (float("inf"), 0.0)
    for _ in range(CLOCK_ROUNDS):
        if plan.rank == 0:
            t0 = now_ms()
            dist.send(torch.full_like(buf, t0), 1, group=group)
            dist.recv(buf, 1, group=group)
            t2 = now_ms()
            best = min(best, (t2 - t0, (t0 + t2) / 2 - float(buf.item())))
        else:
            dist.recv(buf, 0, group=group)
            dist.send(torch.full_like(buf, now_ms()), 0, group=group)
    final = torch.tensor([best[1], best[0]], dtype=torch.float64, device=device)
    if plan.rank == 0:
        dist.send(final, 1, group=group)
        return 0.0, best[0], best[1]
    dist.recv(final, 0, group=group)
    offset = float(final[0].item())
    return offset, float(final[1].item()), offset


def close_groups() -> None:
    with contextlib.suppress(Exception):
        dist.destroy_process_group()
