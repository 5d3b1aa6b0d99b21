"""Transport primitives on torch.distributed: a lockstep peer link and a mesh broadcast.

:class:`PeerLink` exchanges exactly one frame each way per round with one peer over a
two-rank group: prefixes first, then bodies, then tensors, each step as one batch of
isend/irecv (NCCL needs a send and a receive on one communicator grouped, or both
ranks would wait on their own receive). Gloo cannot poll a pending receive without
closing the pair on timeout, so a link never leaves a receive posted between rounds:
a rank with nothing to say sends a ``noop``, which also proves the peer is alive.
:class:`MeshCast` broadcasts frames from the mesh leader to its followers.

Every wait is bounded by the process group's timeout. On CUDA the caller runs these
on the comms thread's own stream; tensors are staged through the host for gloo.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from pipefill.exec.dist.wire import (
    DTYPES,
    PREFIX_LEN,
    Frame,
    Header,
    TensorSpec,
    WireError,
    parse_body,
    parse_prefix,
    seal,
)


def _run(ops: list[Any]) -> None:
    """Issue one batch of point-to-point ops and wait for all of them."""
    if not ops:
        return
    for work in dist.batch_isend_irecv(ops):
        work.wait()


def _empty(spec: TensorSpec, device: torch.device) -> torch.Tensor:
    return torch.empty(spec.shape, dtype=DTYPES[spec.dtype], device=device)


def _bytes_tensor(raw: bytes, device: torch.device) -> torch.Tensor:
    if not raw:
        return torch.empty(0, dtype=torch.uint8, device=device)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(device)


def _wire(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A tensor as transport needs it: on the transport device, contiguous."""
    return t.to(device).contiguous()


class PeerLink:
    """One frame each way per :meth:`exchange`, with ``peer`` over ``group``.

    ``device``: where transported tensors live (CUDA for NCCL, CPU for gloo).
    Contract: both ranks call ``exchange`` the same number of times; a frame that fails
    to parse raises :class:`WireError` (the stream cannot be trusted after that).
    """

    def __init__(self, group: Any, peer: int, device: torch.device) -> None:
        self.group, self.peer, self.device = group, peer, device

    def _op(self, send: bool, t: torch.Tensor) -> Any:
        return dist.P2POp(dist.isend if send else dist.irecv, t, self.peer, self.group)

    def exchange(self, out: Frame) -> Frame:
        out, raw = seal(out)
        mine = torch.tensor(out.header.ints(), dtype=torch.int64, device=self.device)
        theirs = torch.empty(PREFIX_LEN, dtype=torch.int64, device=self.device)
        _run([self._op(True, mine), self._op(False, theirs)])
        header = parse_prefix([int(v) for v in theirs.cpu().tolist()])
        body_in = torch.empty(header.body_len, dtype=torch.uint8, device=self.device)
        ops = [self._op(True, _bytes_tensor(raw, self.device))] if raw else []
        _run(ops + ([self._op(False, body_in)] if header.body_len else []))
        body, specs = parse_body(header, body_in.cpu().numpy().tobytes())
        sending = [_wire(t, self.device) for t in out.tensors if t.numel()]
        received = [_empty(s, self.device) for s in specs]
        _run([self._op(True, t) for t in sending]
             + [self._op(False, t) for t in received if t.numel()])
        return Frame(header, body, tuple(received))


class MeshCast:
    """Frames from the mesh leader (global rank ``src``) to every follower in ``group``.

    The leader calls :meth:`send`, each follower :meth:`recv`, the same number of times.
    """

    def __init__(self, group: Any, src: int, device: torch.device) -> None:
        self.group, self.src, self.device = group, src, device

    def _bcast(self, t: torch.Tensor) -> None:
        if t.numel():
            dist.broadcast(t, self.src, group=self.group)

    def send(self, frame: Frame) -> None:
        frame, raw = seal(frame)
        self._bcast(torch.tensor(frame.header.ints(), dtype=torch.int64, device=self.device))
        self._bcast(_bytes_tensor(raw, self.device))
        for t in frame.tensors:
            self._bcast(_wire(t, self.device))

    def recv(self) -> Frame:
        prefix = torch.empty(PREFIX_LEN, dtype=torch.int64, device=self.device)
        self._bcast(prefix)
        header = parse_prefix([int(v) for v in prefix.cpu().tolist()])
        body_in = torch.empty(header.body_len, dtype=torch.uint8, device=self.device)
        self._bcast(body_in)
        body, specs = parse_body(header, body_in.cpu().numpy().tobytes())
        tensors = tuple(_empty(s, self.device) for s in specs)
        for t in tensors:
            self._bcast(t)
        return Frame(header, body, tensors)


def noop(seq: int) -> Frame:
    return Frame(Header("noop", seq))


__all__ = ["MeshCast", "PeerLink", "WireError", "noop"]
