"""Typed errors of the dist backend and the one-line error_line of a transport error.

Wire-format errors (:class:`pipefill.exec.dist.wire.WireError`) carry the frame's header; the
ones here are about the world around the frames: a collective aimed at the wrong
group, a mesh collective that failed, a rendezvous that never completed.
"""

from __future__ import annotations

import re

#: a C++ source location torch/gloo prefix their messages with
_LOCATION = re.compile(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*")


class WrongGroupError(RuntimeError):
    """A collective was aimed at a process group other than the mesh's."""


class MeshCollectiveError(RuntimeError):
    """A mesh collective failed (a mesh rank died or stopped answering)."""


class RendezvousError(RuntimeError):
    """Setup could not complete (a peer never came, or the store went away)."""


def error_line(exc: BaseException) -> str:
    """``Type: first line`` without source locations or gloo's boilerplate advice."""
    text = str(exc).strip().splitlines()
    first = _LOCATION.sub("", text[0] if text else "")
    return f"{type(exc).__name__}: {first.split(' This is typically')[0]}"[:300]
