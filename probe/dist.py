"""Clock handshakes over torch.distributed, for pipelines whose ranks already share a group.

Call :func:`sync_clocks` on every rank at the start and at the end of the recorded run
(it is a collective: every rank of the group must call it). Rank ``ref`` (0) answers
each other rank's ``rounds`` pings with its recorder's clock; each other rank keeps
the round with the shortest round trip (:func:`pipefill.traces.clock.handshake`) as a
sync point in its trace, which ``pipefill merge`` turns into an offset and a drift.
torch is imported when this is called, never at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipefill.traces.clock import SyncPoint

if TYPE_CHECKING:
    from pipefill.probe.recorder import Recorder


def sync_clocks(rec: Recorder, group: Any = None, rounds: int = 8, ref: int = 0,
                device: Any = "cpu") -> SyncPoint | None:
    """One handshake of every rank with rank ``ref`` (global ranks); returns this
    rank's sync point (None on ``ref``). ``device``: where the 8-byte messages live
    (``cpu`` for gloo; a CUDA device for NCCL)."""
    import torch
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size(group)
    buf = torch.zeros(1, dtype=torch.float64, device=device)
    if rank == ref:
        for peer in (r for r in range(world) if r != ref):
            for _ in range(rounds):
                dist.recv(buf, peer, group=group)
                dist.send(torch.full_like(buf, rec.now_ms()), peer, group=group)
        return None

    def ask_ref_ms() -> float:
        dist.send(buf, ref, group=group)
        dist.recv(buf, ref, group=group)
        return float(buf.item())

    return rec.sync(ask_ref_ms, rounds)
