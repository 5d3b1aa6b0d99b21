"""A sweep's grid as points, planned in microseconds each, and grouped into tasks.

Building and hashing a whole scenario per point costs about a millisecond, which a grid
of 50,000 points cannot pay before its first task. So a grid is planned by *section*
(``run``, ``policy``, ``costs``, ``transport``, ``placement`` with ``devices``,
``dispatch``): each distinct value of a section (the product of the axes that set it) is
validated and resolved once, every axis value on its own too (a bad value fails before
any work, naming its field), and a point is then a few lookups: its key combines its
sections' hashes (:func:`pipefill.sim.sweep.store.point_key` of the resolved scenario
gives the same), its fast-path structure is cached by the sections the structure
depends on. A point carries the grid's raw tables (shared, not copied) and its own
overrides, applied where it runs. A value that is only bad together with another
section's (a policy that needs a phase the costs lack) shows as that point's error row.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipefill.sim.engine.choice import choose
from pipefill.sim.errors import ScenarioError
from pipefill.sim.fast.plan import structure_key
from pipefill.sim.scenario.load import apply_overrides, build_scenario, parse_value
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.sweep.executors import chunked, task_size
from pipefill.sim.sweep.store import SECTIONS, combine_key, section_hashes
from pipefill.traces.toml_writer import toml_value

#: raw tables -> the section a ``--grid`` field sets
SECTION_OF = {"devices": "placement", "name": "run"}


@dataclass(frozen=True)
class Axis:
    """One grid axis: a dotted field and the values it takes."""

    field: str
    values: tuple[Any, ...]


def split_values(text: str) -> list[str]:
    """Split ``1,2,[3,4],"a,b"`` on top-level commas."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def parse_axis(spec: str) -> Axis:
    key, sep, values = spec.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ScenarioError("--grid", f"{spec!r} is not of the form table.field=v1,v2,...")
    return Axis(key.strip(), tuple(parse_value(v) for v in split_values(values)))


def check_axes(axes: list[Axis]) -> None:
    """Refuse an axis given twice (the last would silently win in every point)."""
    seen: set[str] = set()
    for axis in axes:
        if axis.field in seen:
            raise ScenarioError("--grid", f"{axis.field} is given twice: put all its values "
                                f"in one --grid ({axis.field}=v1,v2,...)")
        seen.add(axis.field)


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: its axis values, the grid's raw tables (shared by every point)
    and ``sets``, the overrides that make this point (base ``--set`` first), ``key``,
    the hash of its resolved scenario and engine (and precision)."""

    axes: dict[str, Any]
    raw: dict[str, Any]
    sets: tuple[str, ...]
    name: str
    key: str
    engine: str = "auto"
    #: the fast path's structure the point is re-timed with (None: it runs on SimPy)
    group: str | None = None
    #: relative cost on SimPy (chunks x sessions), to start the heaviest first
    weight: int = 0
    #: relative half-width the point runs to (None: run.chunks)
    precision: float | None = None

    def scenario(self) -> Scenario:
        return build_scenario(apply_overrides(self.raw, list(self.sets)), name=self.name)


def _set(field: str, value: Any) -> str:
    return f"{field}={toml_value(value)}"


class _Section:
    """One section's variants: for each combination of its axes' value indices, the
    section's hash and the scenario it was resolved in."""

    def __init__(self, name: str, axes: list[int]) -> None:
        self.name, self.axes = name, axes
        self.hash: dict[tuple[int, ...], str] = {}
        self.sc: dict[tuple[int, ...], Scenario] = {}


class _Planner:
    def __init__(self, raw: dict[str, Any], base: list[str], axes: list[Axis], name: str,
                 engine: str, precision: float | None) -> None:
        self.raw, self.base, self.axes, self.name = raw, base, axes, name
        self.engine, self.precision = engine, precision
        self.base_sc = self.build([])
        by: dict[str, list[int]] = {}
        for i, a in enumerate(axes):
            by.setdefault(SECTION_OF.get(a.field.split(".")[0], a.field.split(".")[0]),
                          []).append(i)
        self.sections = [_Section(s, by.get(s, [])) for s in SECTIONS]
        self.groups: dict[tuple[Any, ...], str | None] = {}
        self.shapes: dict[tuple[str, tuple[int, ...]], Any] = {}

    def build(self, sets: list[str]) -> Scenario:
        return build_scenario(apply_overrides(self.raw, [*self.base, *sets]), name=self.name)

    def check_values(self) -> None:
        """Every axis value alone over the base (a bad one fails here, before any work)."""
        for a in self.axes:
            for v in a.values:
                self.build([_set(a.field, v)])

    def variant(self, sec: _Section, idx: tuple[int, ...]) -> tuple[str, Scenario]:
        if idx not in sec.hash:
            if not sec.axes:
                sc = self.base_sc
            else:
                sc = self.build([_set(self.axes[i].field, self.axes[i].values[j])
                                 for i, j in zip(sec.axes, idx, strict=True)])
            sec.hash[idx], sec.sc[idx] = section_hashes(sc)[sec.name], sc
        return sec.hash[idx], sec.sc[idx]

    def group(self, parts: dict[str, Scenario], ids: tuple[Any, ...]) -> str | None:
        """The point's fast-path structure (None: SimPy), cached by section variants."""
        got = self.groups.get(ids, ...)
        if got is not ...:
            return got  # type: ignore[return-value]
        sc = self.base_sc.model_copy(update={
            "run": parts["run"].run, "policy": parts["policy"].policy,
            "costs": parts["costs"].costs, "transport": parts["transport"].transport,
            "placement": parts["placement"].placement, "dispatch": parts["dispatch"].dispatch})
        prec = None if self.precision is None else _precision(self.precision)
        grp = structure_key(sc) if choose(sc, self.engine, precision=prec) == "fast" else None
        self.groups[ids] = grp
        return grp

    def shape(self, sec: str, idx: tuple[int, ...], sc: Scenario) -> Any:
        """What of a section variant a fast-path structure depends on (cached)."""
        got = self.shapes.get((sec, idx))
        if got is None:
            got = self.shapes[(sec, idx)] = _shape(sec, idx, sc)
        return got

    def points(self) -> Iterator[SweepPoint]:
        fields = [a.field for a in self.axes]
        cells = [[_cell(v) for v in a.values] for a in self.axes]
        sets = [[_set(a.field, v) for v in a.values] for a in self.axes]
        for combo in itertools.product(*(range(len(a.values)) for a in self.axes)):
            hashes, parts, ids = [], {}, []
            for sec in self.sections:
                idx = tuple(combo[i] for i in sec.axes)
                h, sc = self.variant(sec, idx)
                hashes.append(h)
                parts[sec.name] = sc
                ids.append(self.shape(sec.name, idx, sc))
            pol = parts["policy"].policy
            if pol.structure_reads_costs():
                ids.append(hashes[SECTIONS.index("costs")])
            run = parts["run"].run
            yield SweepPoint(dict(zip(fields, (cells[i][j] for i, j in enumerate(combo)),
                                      strict=True)),
                             self.raw, (*self.base, *(sets[i][j] for i, j in enumerate(combo))),
                             self.name, combine_key(hashes, self.precision), self.engine,
                             self.group(parts, tuple(ids)), run.chunks * run.sessions,
                             self.precision)


def _shape(sec: str, idx: tuple[int, ...], sc: Scenario) -> Any:
    """A section variant as far as structures and engine choice go: the run without its
    seed, warm-up and deadline; the transport's sizes; the costs' phases and steps; the
    other sections as themselves."""
    if sec == "run":
        return repr(sc.run.model_dump(exclude={"seed", "warmup", "target_fps"}))
    if sec == "transport":
        t = sc.transport
        return (t.envelope_size, t.result_size, t.context_bytes)
    if sec == "costs":
        return (tuple(sorted(sc.costs)), sc.steps)
    return (sec, idx)


def _precision(rel: float) -> Any:
    from pipefill.sim.precision import Precision

    return Precision(rel)


def plan_points(raw: dict[str, Any], base_sets: list[str], axes: list[Axis],
                name: str = "sweep", engine: str = "auto",
                precision: float | None = None) -> list[SweepPoint]:
    """Every grid point in grid order (see the module doc): bad input, or ``engine =
    "fast"`` on a choice-dependent point, fails before any work."""
    check_axes(axes)
    planner = _Planner(raw, list(base_sets), axes, name, engine, precision)
    planner.check_values()
    return list(planner.points())


#: most points in one fast-path task (they are re-timed side by side)
FAST_TASK_MAX = 256


def plan_tasks(todo: list[SweepPoint], workers: int,
               per_task: int | None = None) -> list[list[SweepPoint]]:
    """Tasks in the order they are handed out. With ``per_task``: consecutive points,
    as given. Otherwise the SimPy points first, heaviest first, in tasks sized to spread
    them over the workers (:func:`task_size`), then one task per fast-path structure
    (its plan compiled once, its points re-timed together; at most FAST_TASK_MAX), so
    the long tasks start early and the short ones fill the gaps."""
    if per_task is not None:
        return chunked(todo, task_size(len(todo), workers, per_task))
    slow = sorted((p for p in todo if p.group is None), key=lambda p: -p.weight)
    groups: dict[str, list[SweepPoint]] = {}
    for p in todo:
        if p.group is not None:
            groups.setdefault(p.group, []).append(p)
    tasks = chunked(slow, task_size(len(slow), workers)) if slow else []
    for members in groups.values():
        tasks += chunked(members, FAST_TASK_MAX)
    return tasks


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) else str(value)
