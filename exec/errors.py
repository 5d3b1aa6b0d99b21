"""Typed errors of the executor: bad run options (input) and failed runs (crash-only)."""

from __future__ import annotations

from pipefill.sim.errors import ScenarioError
from pipefill.traces.schema import Trace


class ExecConfigError(ScenarioError):
    """Bad executor input (``--device cuda`` without CUDA, an unknown kernel family...).

    A :class:`ScenarioError` so the CLI maps it like any bad input: one line naming
    ``field``, exit code 2, no output written.
    """


class ExecError(RuntimeError):
    """A run stopped crash-only: a stage raised, stalled or timed out.

    ``trace`` holds everything recorded until the stop (its metadata has
    ``status = "failed"`` and the ``error``), so the caller can still write it.
    ``abandoned`` names workers still stuck inside a kernel that never returned.
    """

    def __init__(self, message: str, trace: Trace, abandoned: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.trace = trace
        self.abandoned = abandoned


class InjectedFault(RuntimeError):
    """Raised by a kernel on purpose (``--inject``), to exercise the failure path."""


class Aborted(Exception):
    """Internal: another stage failed; this worker stops quietly without adding a report."""
