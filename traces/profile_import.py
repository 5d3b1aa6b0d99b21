"""Import a torch.profiler / Chrome trace-event JSON file as a pipefill trace.

Complete events (``ph: X``), begin/end pairs (``B``/``E``, matched per thread),
instants (``i``/``I``) and counters (``C``) are offered to the map's rules
(:mod:`pipefill.traces.import_map`); the first rule whose pattern matches the whole
event name (and whose category fits) turns it into one row, every other event is
ignored. Times become milliseconds from the earliest mapped event. A map that matches
nothing, a template that names a missing group or arg, or a chunk that is not an
integer is a :class:`TraceError`; the result passes
:func:`pipefill.traces.measured.check_measured`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipefill.traces.import_map import TIME_UNITS, ImportMap, PhaseRule
from pipefill.traces.measured import check_measured
from pipefill.traces.meta import versions
from pipefill.traces.schema import Trace, TraceError, from_rows

#: distinct names listed when a map matches nothing
NAMES_SHOWN = 20
INT_FIELDS = ("session", "chunk", "call_id", "epoch", "step")


@dataclass(frozen=True)
class RawEvent:
    """A profiler event reduced to what rules read; ``ts``/``dur`` in the file's unit."""

    name: str
    cat: str
    pid: Any
    tid: Any
    ts: float
    dur: float
    args: dict[str, Any]


def read_profile(path: str | Path) -> dict[str, Any]:
    """The JSON object of a Chrome trace file (a bare event list is wrapped)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TraceError("profile", f"{p}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TraceError("profile", f"{p.name}: not JSON ({exc})") from None
    if isinstance(data, list):
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise TraceError("profile", f"{p.name}: no traceEvents list (not a Chrome trace)")
    return data


def _num(ev: dict[str, Any], key: str) -> float:
    v = ev.get(key, 0.0)
    if not isinstance(v, int | float) or not math.isfinite(v):
        raise TraceError(f"traceEvents.{key}", f"{ev.get('name')!r}: not a number ({v!r})")
    return float(v)


def raw_events(events: list[Any]) -> list[RawEvent]:
    """X, B/E (paired per pid/tid, innermost first), i/I and C events."""
    out: list[RawEvent] = []
    open_: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for ev in events:
        if not isinstance(ev, dict):
            continue
        ph = ev.get("ph")
        key = (ev.get("pid"), ev.get("tid"))
        if ph == "B":
            open_.setdefault(key, []).append(ev)
            continue
        if ph == "E":
            stack = open_.get(key)
            if stack:
                begin = stack.pop()
                ts = _num(begin, "ts")
                out.append(_raw(begin, ts, _num(ev, "ts") - ts))
            continue
        if ph in ("X", "i", "I", "C"):
            out.append(_raw(ev, _num(ev, "ts"), _num(ev, "dur") if ph == "X" else 0.0))
    return out


def _raw(ev: dict[str, Any], ts: float, dur: float) -> RawEvent:
    args = ev.get("args")
    return RawEvent(str(ev.get("name", "")), str(ev.get("cat", "")), ev.get("pid"),
                    ev.get("tid"), ts, max(dur, 0.0), args if isinstance(args, dict) else {})


def _fmt(template: str, fields: dict[str, Any], where: str) -> str:
    try:
        return template.format_map(fields)
    except (KeyError, IndexError) as exc:
        raise TraceError(where, f"{template!r} names {exc} which the event "
                         f"{fields['name']!r} does not have") from None
    except (ValueError, AttributeError) as exc:
        raise TraceError(where, f"{template!r}: bad template ({exc})") from None


def _to_int(text: str, where: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TraceError(where, f"{text!r} (from event {name!r}) is not an integer") from None


def _to_float(text: str, where: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TraceError(where, f"{text!r} (from event {name!r}) is not a number") from None


def _row(ev: RawEvent, rule: PhaseRule, i: int, groups: dict[str, Any],
         mapping: ImportMap, rank: int) -> tuple[Any, ...]:
    where = f"map.phase[{i}]"
    fields = {**groups, "pid": ev.pid, "tid": ev.tid, "rank": rank, "cat": ev.cat,
              "name": ev.name, "args": ev.args}
    stage = _fmt(rule.stage, fields, f"{where}.stage")
    stage = mapping.stages.get(stage, stage)
    ints = {f: _to_int(_fmt(getattr(rule, f), fields, f"{where}.{f}"), f"{where}.{f}", ev.name)
            for f in INT_FIELDS}
    value = _to_float(_fmt(rule.value, fields, f"{where}.value"), f"{where}.value", ev.name)
    unit = TIME_UNITS[mapping.events.time_unit]
    start = ev.ts * unit
    end = start if rule.kind != "span" else start + ev.dur * unit
    lane = "queue" if rule.kind == "counter" else _fmt(rule.lane, fields, f"{where}.lane")
    return (rule.kind, _fmt(rule.name, fields, f"{where}.name"), stage, lane,
            ints["session"], ints["chunk"], ints["call_id"], ints["epoch"], ints["step"],
            start, end, value)


def map_events(events: list[RawEvent], mapping: ImportMap, rank: int = 0) -> list[tuple[Any, ...]]:
    """Rows of the mapped events (times in ms, not yet rebased)."""
    rules = [(i, r, r.regex()) for i, r in enumerate(mapping.phase)]
    cats = mapping.events.categories
    rows = []
    for ev in events:
        if cats is not None and ev.cat not in cats:
            continue
        for i, rule, rx in rules:
            if rule.category is not None and ev.cat != rule.category:
                continue
            m = rx.fullmatch(ev.name)
            if m is not None:
                rows.append(_row(ev, rule, i, m.groupdict(), mapping, rank))
                break
    return rows


def _no_match(events: list[RawEvent]) -> TraceError:
    names = Counter(ev.name for ev in events)
    shown = ", ".join(repr(n) for n, _ in names.most_common(NAMES_SHOWN))
    more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
    return TraceError("map", f"no event matched any [[phase]] pattern; names seen: "
                      f"{shown or 'none'}{more}")


def import_profile(data: dict[str, Any], mapping: ImportMap, label: str = "profile") -> Trace:
    """A pipefill trace of ``data``'s mapped events (see the module docstring)."""
    info = data.get("distributedInfo")
    rank = int(info.get("rank", 0)) if isinstance(info, dict) else 0
    events = raw_events(data["traceEvents"])
    rows = map_events(events, mapping, rank)
    if not rows:
        raise _no_match(events)
    origin = min(r[9] for r in rows)
    rows = [(*r[:9], r[9] - origin, r[10] - origin, r[11]) for r in rows]
    meta = {"format_version": 1, "source": "import", "backend": "profile",
            "scenario_name": Path(label).stem, "versions": versions(),
            "import": {"file": label, "events": len(events), "mapped": len(rows),
                       "rank": rank, "origin_ms": origin}}
    return check_measured(Trace(from_rows(rows), meta))
