"""Rendezvous of a dist replay: the store, process groups, barriers, clock handshakes.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from pipefill.exec.dist.config import RankEnv, RankPlan
from pipefill.exec.dist.errors import RendezvousError
from pipefill.exec.errors import ExecConfigError
from pipefill.probe.dist import ping_ref
from pipefill.traces.clock import SyncPoint, handshake

FAILURE_KEY = "failure"
#: rounds of ping-pong behind each clock handshake (the fastest round wins)
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
    """This rank's process groups: ``links`` (peer rank -> the two-rank group of each of
    its links, with the transport device of that link), ``cast`` (leader -> followers
    broadcasts) and ``tp`` (tensor-parallel collectives), both over this rank's mesh
    and None outside a mesh of several ranks; ``world`` only exists to be refused by
    the TP guard."""

    world: Any
    links: dict[int, tuple[Any, str]]
    cast: Any | None
    tp: Any | None


def init_groups(store: Any, plan: RankPlan, backend: str, timeout_s: float,
                link_backend: Callable[[int, int], str] | None = None) -> Groups:
    """The world and every group of the layout (``link_backend(a, b)``: the backend of
    the link between ranks a and b; by default the world's)."""
    dist.init_process_group(backend, store=dist.PrefixStore("pg", store), rank=plan.rank,
                            world_size=plan.world_size, timeout=timedelta(seconds=timeout_s))
    # every rank creates every group, in the same order (torch requires it)
    links: dict[int, tuple[Any, str]] = {}
    for ln in plan.layout.links:
        name = backend if link_backend is None else link_backend(*ln.ranks)
        group = dist.new_group(list(ln.ranks), backend=name)
        if plan.rank in ln.ranks:
            links[ln.peer(plan.rank)] = (group, name)
    cast = tp = None
    for g in plan.layout.groups:
        if not g.sharded:
            continue
        mine = (dist.new_group(list(g.ranks)), dist.new_group(list(g.ranks)))
        if plan.rank in g.ranks:
            cast, tp = mine
    return Groups(dist.group.WORLD, links, cast, tp)


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


def sync_clock(plan: RankPlan, device: torch.device, now_ms: Callable[[], float],
               rounds: int = CLOCK_ROUNDS) -> SyncPoint | None:
    """One clock handshake of every other rank with rank0, over the world group.

    A collective: every rank calls it, at the start and at the end of the run. Rank0
    answers each other rank's ``rounds`` pings with its clock, one rank after the other;
    each of them keeps the round with the shortest round trip
    (:func:`pipefill.traces.clock.handshake`, the probe's mechanism) and returns it as
    a :class:`SyncPoint` of its own clock against rank0's (None on rank0). Waits are
    bounded by the process group's timeout.
    """
    return ping_ref(plan.rank, 0, plan.others, rounds, device, now_ms,
                    lambda ask, n: handshake(now_ms, ask, n), comm=dist)


def close_groups() -> None:
    with contextlib.suppress(Exception):
        dist.destroy_process_group()
