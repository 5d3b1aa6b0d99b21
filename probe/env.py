"""Switching the probe on from a launcher: ``probe.from_env()``.

Environment variables (all optional; without ``PIPEFILL_PROBE`` the probe is off and
:func:`from_env` returns a :class:`NullRecorder` whose calls do nothing):

- ``PIPEFILL_PROBE``: the trace file to write at exit; ``{rank}`` is replaced by the rank.
- ``PIPEFILL_PROBE_RANK`` (else ``RANK``, as torchrun sets it): this process's rank.
- ``PIPEFILL_PROBE_LIMIT``: rows held in memory before spilling to disk.
- ``PIPEFILL_PROBE_POLICY``: the policy table as JSON (``{"name": "phase_pp", ...}``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from pipefill.probe.recorder import Recorder
from pipefill.probe.rows import DEFAULT_LIMIT

ENV_PATH, ENV_RANK, ENV_LIMIT, ENV_POLICY = (
    "PIPEFILL_PROBE", "PIPEFILL_PROBE_RANK", "PIPEFILL_PROBE_LIMIT", "PIPEFILL_PROBE_POLICY")


class ProbeEnvError(ValueError):
    """A probe environment variable has a bad value; the message names it."""


class _NullSpan:
    __slots__ = ()

    def __enter__(self) -> _NullSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NULL_SPAN = _NullSpan()


class NullStage:
    """A stage whose events go nowhere (the probe is off)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def span(self, phase: str, **tags: Any) -> _NullSpan:
        return _NULL_SPAN

    def mark(self, name: str, **tags: Any) -> None:
        return None

    def counter(self, name: str, value: float) -> None:
        return None

    def send(self, queue: str, **tags: Any) -> None:
        return None

    def transfer(self, queue: str, **tags: Any) -> _NullSpan:
        return _NULL_SPAN


class NullRecorder:
    """The probe switched off: the same calls as :class:`Recorder`, recording nothing."""

    enabled = False
    path: str | None = None

    def stage(self, name: str) -> NullStage:
        return NullStage(name)

    def now_ms(self) -> float:
        return 0.0

    def sync(self, ask_ref_ms: Any, rounds: int = 8) -> None:
        return None

    def __len__(self) -> int:
        return 0


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ProbeEnvError(f"{key}: not an integer ({raw!r})") from None


def _policy(env: Mapping[str, str]) -> dict[str, Any] | None:
    raw = env.get(ENV_POLICY)
    if not raw:
        return None
    try:
        policy = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProbeEnvError(f"{ENV_POLICY}: not JSON ({exc.msg})") from None
    if not isinstance(policy, dict):
        raise ProbeEnvError(f"{ENV_POLICY}: must be a JSON object with a name")
    return policy


def from_env(env: Mapping[str, str] | None = None, save_at_exit: bool = True,
             **kwargs: Any) -> Recorder | NullRecorder:
    """A recorder configured by the environment (see the module docstring), saving
    itself at interpreter exit; a :class:`NullRecorder` when ``PIPEFILL_PROBE`` is unset.
    ``kwargs`` go to :class:`Recorder` (the environment wins for rank, limit, policy)."""
    env = os.environ if env is None else env
    path = env.get(ENV_PATH)
    if not path:
        return NullRecorder()
    rank = _int(env, ENV_RANK, _int(env, "RANK", 0))
    limit = _int(env, ENV_LIMIT, DEFAULT_LIMIT)
    if limit < 1:
        raise ProbeEnvError(f"{ENV_LIMIT}: must be >= 1 (got {limit})")
    kwargs.update(rank=rank, limit=limit)
    policy = _policy(env)
    if policy is not None:
        kwargs["policy"] = policy
    target = path.replace("{rank}", str(rank))
    _check_path(target)
    rec = Recorder(**kwargs)
    rec.path = target
    if save_at_exit:
        atexit.register(_save_quietly, rec)
    return rec


def _check_path(path: str) -> None:
    """Fail now, not at exit after the whole run, when ``path`` could not be written (an
    unknown extension, a missing or read-only directory). Loads the trace writers too:
    they register exit hooks of their own when first imported, which is refused during
    interpreter shutdown."""
    from pipefill.traces.io import TABLE_SUFFIXES, check_writable
    from pipefill.traces.schema import TraceError

    try:
        check_writable(path, ENV_PATH, TABLE_SUFFIXES)
    except TraceError as exc:
        raise ProbeEnvError(str(exc)) from None


def _save_quietly(rec: Recorder) -> None:
    """At exit: write the trace; the probe must never turn a clean exit into a crash."""
    try:
        if rec.path is not None:
            rec.save(rec.path)
    except Exception as exc:
        logging.getLogger("pipefill.probe").error("could not save %s: %s", rec.path, exc)
    finally:
        rec.close()
