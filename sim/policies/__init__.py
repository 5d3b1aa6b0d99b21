"""Policy registry: name -> class. CLI choices and error messages come from here."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pipefill.sim.errors import ScenarioError, error_from_validation
from pipefill.sim.policies.base import Policy
from pipefill.sim.policies.catalog import PolicyDoc, describe_policy
from pipefill.sim.policies.layer_pp import LayerPP
from pipefill.sim.policies.multi_session import MultiSession
from pipefill.sim.policies.phase_pp import PhasePP
from pipefill.sim.policies.rolling_window import RollingWindow
from pipefill.sim.policies.serial import Serial
from pipefill.sim.policies.stream_batch import StreamBatch

POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (
    Serial, PhasePP, StreamBatch, LayerPP, MultiSession, RollingWindow)}


def make_policy(raw: dict[str, Any]) -> Policy:
    """Validate a ``[policy]`` table into a policy object; errors name ``policy.<field>``."""
    if not isinstance(raw, dict):
        raise ScenarioError("policy", "must be a table with a name")
    fields = dict(raw)
    name = fields.pop("name", None)
    allowed = ", ".join(POLICIES)
    if name is None:
        raise ScenarioError("policy.name", f"missing (allowed: {allowed})")
    cls = POLICIES.get(str(name))
    if cls is None:
        raise ScenarioError("policy.name", f"unknown policy {name!r} (allowed: {allowed})")
    names = [f.alias or n for n, f in cls.model_fields.items()]  # scenario keys
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise ScenarioError(f"policy.{unknown[0]}", f"not a field of {name} "
                            f"(allowed: {', '.join(names)})")
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        raise error_from_validation(exc, "policy") from None


def policy_docs(name: str | None = None) -> list[PolicyDoc]:
    """Every registered policy's description (or one's: an unknown ``name`` is a
    ScenarioError on ``policy.name`` listing the allowed names)."""
    if name is not None and name not in POLICIES:
        raise ScenarioError("policy.name", f"unknown policy {name!r} "
                            f"(allowed: {', '.join(POLICIES)})")
    return [describe_policy(cls) for n, cls in POLICIES.items() if name in (None, n)]


__all__ = ["POLICIES", "Policy", "PolicyDoc", "make_policy", "policy_docs"]
