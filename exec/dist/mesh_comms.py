"""Comms inside a tensor-parallel mesh: the leader's broadcasts and the followers' receipt.

A mesh follower runs the same program as its group's leader, but only the leader talks
to the world: every program result that depends on the world (Get, Poll, Flush) is
broadcast by the leader's :class:`CastChannel` on the mesh's own group, and each
follower's :class:`FollowChannel` hands them to its
:class:`pipefill.exec.dist.state.FollowerState` in order. An idle leader sends a
``noop`` every ``keepalive_s`` so a follower's receive never runs into the process
group's timeout; it ends the broadcast with ``bye`` once its programs are done (every
result is in the box by then) or ``fail`` on an abort.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from pipefill.exec.dist.comms_thread import (
    MESSAGES,
    Channel,
    DeviceHandoff,
    Handler,
    Hooks,
    Outbox,
)
from pipefill.exec.dist.link import MeshCast, noop
from pipefill.exec.dist.state import FollowerState, dropped_from_body, view_from_body
from pipefill.exec.dist.trace import DrainRecorder
from pipefill.exec.dist.wire import Checker, Frame, Header, WireError, frame_message
from pipefill.exec.threads.state import QueuedMessage

CHANNEL = "a mesh follower (mesh broadcast)"


class CastChannel(Channel):
    """The leader's broadcast of its program's results to the mesh followers.

    ``queues``: the queues whose Get results it may carry (those its stage consumes)."""

    def __init__(self, hooks: Hooks, rec: DrainRecorder, handoff: DeviceHandoff,
                 cast: MeshCast, aborted: threading.Event, queues: frozenset[str],
                 poll_s: float, keepalive_s: float) -> None:
        super().__init__(hooks, rec, handoff, aborted, "pipefill-mesh-cast", CHANNEL)
        self.cast, self.poll_s, self.keepalive_s = cast, poll_s, keepalive_s
        self.box = Outbox()
        self.check = Checker(queues)
        self.seq = 0
        self.last = time.monotonic()

    def _loop(self) -> None:
        while not self.stop:
            if self.aborted.is_set():
                self._send(self._fail_frame(), None)
                return
            done = self.hooks.finished()  # before take: every result is boxed by then
            item = self.box.take(0.0 if done else self.poll_s)
            if item is not None:
                self._send(*item)
            elif done:
                self._send(Frame(Header("bye", -1)), None)
                return
            elif time.monotonic() - self.last > self.keepalive_s:
                self._send(noop(-1), None)

    def _send(self, frame: Frame, ready: Any) -> None:
        self.handoff.before_send(ready)
        frame = Frame(replace(frame.header, seq=self.seq), frame.body, frame.tensors)
        self.check.check(frame)
        self.seq += 1
        self.last_out = frame.header if frame.action in MESSAGES else self.last_out
        self.cast.send(frame)
        self.last = time.monotonic()


class FollowChannel(Channel):
    """A follower's receipt of its leader's broadcasts (``leader``: its rank)."""

    def __init__(self, hooks: Hooks, rec: DrainRecorder, handoff: DeviceHandoff,
                 cast: MeshCast, aborted: threading.Event, queues: frozenset[str],
                 leader: int) -> None:
        super().__init__(hooks, rec, handoff, aborted, "pipefill-mesh-follow",
                         f"rank{leader} (mesh leader)")
        self.cast = cast
        self.check = Checker(queues)

    def _loop(self) -> None:
        while not self.stop:
            self.receive(self.cast.recv())

    def receive(self, frame: Frame) -> None:
        self.check.check(frame)
        self.last_in = frame.header if frame.action in MESSAGES else self.last_in
        frame, ready = self.handoff.after_receive(frame)
        try:
            FOLLOWER_HANDLERS[frame.action](self, frame, ready)
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"bad {frame.action} body ({type(exc).__name__}: {exc})",
                            frame.header) from None

    def _state(self) -> FollowerState:
        assert isinstance(self.hooks.state, FollowerState)
        return self.hooks.state

    def _on_got(self, frame: Frame, ready: Any) -> None:
        queue, msg, _ = frame_message(frame)
        self._state().push("get", queue, QueuedMessage(msg, ready))

    def _on_view(self, frame: Frame, ready: Any) -> None:
        self._state().push("view", "", view_from_body(frame.body))

    def _on_dropped(self, frame: Frame, ready: Any) -> None:
        self._state().push("flush", str(frame.body["queue"]), dropped_from_body(frame.body))

    def _on_bye(self, frame: Frame, ready: Any) -> None:
        self.stop = True


#: frame action -> handler, on mesh followers (the leader's broadcasts)
FOLLOWER_HANDLERS: dict[str, Handler] = {
    "infer": FollowChannel._on_got, "shutdown": FollowChannel._on_got,
    "view": FollowChannel._on_view, "dropped": FollowChannel._on_dropped,
    "fail": Channel._on_fail, "bye": FollowChannel._on_bye, "noop": Channel._on_noop,
}
