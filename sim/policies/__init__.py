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


def _values(table: Any) -> dict[str, Any]:
    """A ``[policy]`` table's resolved fields (given or default) by scenario key; the
    given fields alone when it does not validate (its own error comes later)."""
    try:
        return make_policy(table).model_dump(mode="json", by_alias=True)
    except ScenarioError:
        return {k: v for k, v in dict(table).items() if k != "name"}


def _carry(old: Any, name: Any) -> tuple[dict[str, Any], list[str]]:
    """(kept, refused) of a switch from ``[policy]`` table ``old`` to policy ``name``:
    the fields both policies have whose old value (given or default) differs from the
    new policy's default, split by whether the new policy accepts that value."""
    new_cls = POLICIES.get(str(name))
    old_cls = POLICIES.get(str(old.get("name"))) if isinstance(old, dict) else None
    if new_cls is None or old_cls is None:
        return {}, []
    defaults = new_cls().model_dump(mode="json", by_alias=True)
    values = _values(old)
    kept: dict[str, Any] = {}
    refused: list[str] = []
    for key in defaults:
        if key not in values or key not in _keys(old_cls) or values[key] == defaults[key]:
            continue
        try:
            new_cls.model_validate({key: values[key]})
            kept[key] = values[key]
        except ValidationError:
            refused.append(f"{key} = {values[key]}")
    return kept, refused


def shared_fields(old: Any, name: Any) -> dict[str, Any]:
    """The fields a switch from ``[policy]`` table ``old`` to policy ``name`` keeps: every
    field both policies have, at the old policy's value where it differs from the new
    one's default and the new one accepts it (``recompute = "r0a"`` from phase_pp to
    serial), so "serial vs phase_pp" changes the policy and nothing else."""
    return _carry(old, name)[0]


def switch_note(old: Any, new: Policy) -> str | None:
    """What a switch from ``[policy]`` table ``old`` to policy ``new`` kept, could not
    keep and left out; None when ``old`` names the same policy (or none)."""
    if not isinstance(old, dict) or old.get("name") in (None, new.name):
        return None
    kept, refused = _carry(old, new.name)
    now = new.model_dump(mode="json", by_alias=True)
    kept_now = [f"{k} = {now[k]}" for k in kept if now.get(k) == kept[k]]
    parts = [f"policy {old['name']} -> {new.name}"]
    if kept_now:
        parts.append(f"kept {', '.join(kept_now)}")
    if refused:
        parts.append(f"{', '.join(refused)} not kept ({new.name} does not allow it; its "
                     "default applies)")
    dropped = [k for k in _values(old) if k not in now]
    if dropped:
        parts.append(f"{new.name} has no {', '.join(dropped)}")
    return "; ".join(parts)


def _keys(cls: type[Policy]) -> set[str]:
    return {f.alias or n for n, f in cls.model_fields.items()}


def policy_fields(name: Any) -> set[str] | None:
    """The ``[policy]`` keys policy ``name`` takes (None for an unknown name)."""
    cls = POLICIES.get(str(name))
    return None if cls is None else _keys(cls)


def policy_docs(name: str | None = None) -> list[PolicyDoc]:
    """Every registered policy's description (or one's: an unknown ``name`` is a
    ScenarioError on ``policy.name`` listing the allowed names)."""
    if name is not None and name not in POLICIES:
        raise ScenarioError("policy.name", f"unknown policy {name!r} "
                            f"(allowed: {', '.join(POLICIES)})")
    return [describe_policy(cls) for n, cls in POLICIES.items() if name in (None, n)]


__all__ = ["POLICIES", "Policy", "PolicyDoc", "make_policy", "policy_docs", "policy_fields",
           "shared_fields", "switch_note"]
