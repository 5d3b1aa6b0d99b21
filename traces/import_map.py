"""The map that turns profiler events into trace rows (``pipefill import --map MAP.toml``).

```toml
[events]
categories = ["user_annotation"]   # only events of these ``cat``s (default: any)
time_unit = "us"                   # unit of ts/dur: us (Chrome default), ns or ms

[stages]                           # optional: a formatted stage value -> stage name
"4242" = "stage0"

[[phase]]                          # rules are tried in order; the first match wins
pattern = 'stage(?P<s>\\d)/(?P<phase>\\w+)/(?P<chunk>\\d+)'  # re.fullmatch on the name
name = "{phase}"                   # phase (span) or mark name
stage = "stage{s}"                 # or "{tid}", "{pid}", "stage{rank}", "{args[stage]}"
chunk = "{chunk}"                  # or "{args[chunk]}"
kind = "span"                      # span, mark (at the event's start) or counter
```

Every text field of a rule is a ``str.format`` template over the pattern's named
groups and ``pid``, ``tid``, ``rank`` (the trace's ``distributedInfo.rank``, else 0),
``cat``, ``name`` and ``args`` (the event's args, ``{args[key]}``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipefill.traces.schema import TraceError
from pipefill.traces.toml_writer import read_toml

#: time unit -> milliseconds per unit
TIME_UNITS: dict[str, float] = {"us": 1e-3, "ns": 1e-6, "ms": 1.0}


class PhaseRule(BaseModel):
    """One ``[[phase]]`` rule: which events it takes and how they become rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(description="regular expression matched against the whole name")
    name: str = Field("{phase}", description="phase or mark name (template)")
    stage: str = Field(description="stage name (template; then looked up in [stages])")
    chunk: str = Field("-1", description="chunk index (template)")
    kind: Literal["span", "mark", "counter"] = Field("span", description="row kind")
    lane: str = Field("compute", description="lane of the row (template)")
    session: str = Field("0", description="session (template)")
    epoch: str = Field("0", description="cache epoch (template)")
    call_id: str = Field("-1", description="call id (template)")
    step: str = Field("-1", description="denoise step (template)")
    value: str = Field("nan", description="counter value or span payload (template)")
    category: str | None = Field(None, description="only events of this cat")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from None
        return v

    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


class EventsTable(BaseModel):
    """The ``[events]`` table: which events are considered at all."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    categories: list[str] | None = Field(None, description="keep only these categories")
    time_unit: Literal["us", "ns", "ms"] = Field("us", description="unit of ts and dur")


class ImportMap(BaseModel):
    """A whole map file: ``[events]``, ``[stages]`` and the ``[[phase]]`` rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: EventsTable = Field(default_factory=EventsTable)
    stages: dict[str, str] = Field(default_factory=dict, description="stage aliases")
    phase: list[PhaseRule] = Field(min_length=1, description="rules, first match wins")


def _field_of(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc: list[str] = []
    for part in err["loc"]:
        if isinstance(part, int) and loc:
            loc[-1] += f"[{part}]"
        else:
            loc.append(str(part))
    return "map." + ".".join(loc), str(err["msg"]).removeprefix("Value error, ")


def parse_map(raw: dict[str, Any]) -> ImportMap:
    try:
        return ImportMap.model_validate(raw)
    except ValidationError as exc:
        field, msg = _field_of(exc)
        raise TraceError(field, msg) from None


def load_map(path: str | Path) -> ImportMap:
    """Read and validate a map file; :class:`TraceError` names the bad field."""
    return parse_map(read_toml(path, "map", TraceError))
