"""Clock handshakes over torch.distributed, for pipelines whose ranks already share a group.

Call :func:`sync_clocks` on every rank at the start and at the end of the recorded run
(it is a collective: every rank of the group must call it). Rank ``ref`` (0) answers
each other rank's ``rounds`` pings with its recorder's clock; each other rank keeps
the round with the shortest round trip (:func:`pipefill.traces.clock.handshake`) as a
sync point in its trace, which ``pipefill merge`` turns into an offset and a drift.
torch is imported when this is called, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pipefill.traces.clock import SyncPoint

if TYPE_CHECKING:
    from pipefill.probe.recorder import Recorder


def sync_clocks(rec: Recorder, group: Any = None, rounds: int = 8, ref: int = 0,
                device: Any = "cpu") -> SyncPoint | None:
    """One handshake of every rank with rank ``ref`` (global ranks); returns this
    rank's sync point (None on ``ref``). ``device``: where the 8-byte messages live
    (``cpu`` for gloo; a CUDA device for NCCL)."""
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size(group)
    peers = [r for r in range(world) if r != ref]
    return ping_ref(rank, ref, peers, rounds, device, rec.now_ms, rec.sync, group)


def ping_ref(rank: int, ref: int, peers: Iterable[int], rounds: int, device: Any,
             now_ms: Callable[[], float],
             keep: Callable[[Callable[[], float], int], SyncPoint | None],
             group: Any = None, comm: Any = None) -> SyncPoint | None:
    """The ping loop of a handshake (a collective of ``ref`` and ``peers``): ``ref``
    answers each peer's ``rounds`` pings with ``now_ms()``, one peer after the other,
    and returns None; a peer hands its ask-the-reference function to ``keep`` (e.g.
    :func:`pipefill.traces.clock.handshake` or a recorder's ``sync``), which keeps the
    shortest round trip, and returns its sync point. ``comm``: what sends and receives
    (default ``torch.distributed``)."""
    import torch

    if comm is None:
        import torch.distributed as comm
    on = {"group": group} if group is not None else {}
    buf = torch.zeros(1, dtype=torch.float64, device=device)
    if rank == ref:
        for peer in peers:
            for _ in range(rounds):
                comm.recv(buf, peer, **on)
                comm.send(torch.full_like(buf, now_ms()), peer, **on)
        return None

    def ask_ref_ms() -> float:
        comm.send(buf, ref, **on)
        comm.recv(buf, ref, **on)
        return float(buf.item())

    return keep(ask_ref_ms, rounds)
