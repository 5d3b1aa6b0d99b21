"""What each registered policy is and takes, read from its own schema (for discovery:
``pipefill policies``, ``--policy``'s help and the Python API)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo

from pipefill.sim.policies.base import Policy


@dataclass(frozen=True)
class FieldDoc:
    """One policy field: its scenario key, type, default, allowed range and meaning."""

    name: str
    type: str
    default: Any
    range: str
    description: str

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class PolicyDoc:
    """One policy: its registry name, first docstring line, the rest of the docstring
    (contract and invariants) and its fields in declaration order."""

    name: str
    summary: str
    details: str
    fields: tuple[FieldDoc, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "details": self.details,
                "fields": [f.to_json() for f in self.fields]}


def _type_name(info: FieldInfo) -> str:
    ann = info.annotation
    if get_origin(ann) is Literal:
        return "str"
    plain = isinstance(ann, type) and get_origin(ann) is None
    text = getattr(ann, "__name__", None) if plain else None
    return text or str(ann).replace("typing.", "")


def _range(info: FieldInfo) -> str:
    """``>= 1``, ``> 0``, ``one of ...``: the constraints a value must meet."""
    if get_origin(info.annotation) is Literal:
        return "one of " + ", ".join(map(str, get_args(info.annotation)))
    parts = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(parts)


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.is_required() else info.default


def describe_policy(cls: type[Policy]) -> PolicyDoc:
    doc = inspect.cleandoc(cls.__doc__ or "")
    summary, _, details = doc.partition("\n")
    fields = tuple(FieldDoc(info.alias or name, _type_name(info), _default(info),
                            _range(info), info.description or "")
                   for name, info in cls.model_fields.items())
    return PolicyDoc(cls.name, summary.strip(), details.strip(), fields)
