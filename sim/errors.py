"""Typed errors of the simulator's inputs and runs (a leaf module: it imports nothing of ours).

Scenario validation lives in :mod:`pipefill.sim.scenario.load` and policy validation in
:mod:`pipefill.sim.policies`; both raise :class:`ScenarioError`, defined here so neither
has to import the other to do so.
"""

from __future__ import annotations

from pydantic import ValidationError


class ScenarioError(ValueError):
    """Bad scenario input; ``field`` is the dotted path (``policy.d_in``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class StallError(RuntimeError):
    """A schedule cannot make progress (deadlock or livelock); the message says where."""


def error_from_validation(exc: ValidationError, prefix: str = "") -> ScenarioError:
    """The first pydantic error as a :class:`ScenarioError` naming ``prefix.<field>``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
    field = ".".join(p for p in (prefix, loc) if p) or prefix or "scenario"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
        msg += f" (got {err['input']!r})"
    return ScenarioError(field, msg)
