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
section's (a policy that needs a phase the costs lack) shows as that point's error row;
the values of a long axis (more than :data:`WHOLE_CHECK_MAX`) are checked on their own
section only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipefill.sim.engine.choice import choose
from pipefill.sim.errors import ScenarioError
from pipefill.sim.fast.plan import structure_key
from pipefill.sim.policies import policy_fields
from pipefill.sim.scenario.load import apply_overrides, build_scenario, check_window, parse_value
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.sweep.executors import chunked, task_size
from pipefill.sim.sweep.sections import SECTIONS, dump, resolve, section_of
from pipefill.sim.sweep.store import combine_hashed, combine_prefix, section_hash
from pipefill.traces.toml_writer import toml_value


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


def grid_points(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, grid order (as dicts field -> value)."""
    return [dict(zip([a.field for a in axes], combo, strict=True))
            for combo in itertools.product(*(a.values for a in axes))]


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
    section's value and hash."""

    def __init__(self, name: str, axes: list[int]) -> None:
        self.name, self.axes = name, axes
        self.hash: dict[tuple[int, ...], str] = {}
        self.value: dict[tuple[int, ...], Any] = {}


#: an axis with up to this many values has each checked in a whole scenario (longer
#: ones, number ranges: on their own section)
WHOLE_CHECK_MAX = 100


class _Planner:
    def __init__(self, raw: dict[str, Any], base: list[str], axes: list[Axis], name: str,
                 engine: str, precision: float | None) -> None:
        self.raw, self.base, self.axes, self.name = raw, base, axes, name
        self.engine, self.precision = engine, precision
        self.base_sc = self.build([])
        by: dict[str, list[int]] = {}
        for i, a in enumerate(axes):
            by.setdefault(section_of(a.field), []).append(i)
        for sec in sorted(set(by) - set(SECTIONS)):  # an unknown table: its one-line error
            self.build([_set(axes[by[sec][0]].field, axes[by[sec][0]].values[0])])
        self.sections = [_Section(s, by.get(s, [])) for s in SECTIONS]
        self.applies = _applicability(axes)
        self.groups: dict[tuple[Any, ...], str | None] = {}
        self.shapes: dict[tuple[str, tuple[int, ...]], Any] = {}

    def build(self, sets: list[str]) -> Scenario:
        return build_scenario(apply_overrides(self.raw, [*self.base, *sets]), name=self.name)

    def check_values(self) -> None:
        """Every value of a short axis over the base as a whole scenario (a bad one fails
        here, before any work); a long axis's values are checked on their own section,
        and so are policy fields when the grid switches policies (each field is checked
        with the policies that have it)."""
        for a in self.axes:
            if len(a.values) <= WHOLE_CHECK_MAX and (self.applies is None
                                                    or _policy_key(a.field) is None):
                for v in a.values:
                    self.build([_set(a.field, v)])
        check_window(self.base_sc.run)

    def variant(self, sec: _Section, idx: tuple[int, ...]) -> tuple[str, Any]:
        if idx not in sec.hash:
            if not sec.axes:
                value = getattr(self.base_sc, sec.name)
            else:
                sets = [_set(self.axes[i].field, self.axes[i].values[j])
                        for i, j in zip(sec.axes, idx, strict=True)
                        if self._applies(sec, idx, i)]
                value = resolve(sec.name, self.raw, [*self.base, *sets])
                if sec.name == "run":
                    check_window(value)
            sec.hash[idx], sec.value[idx] = section_hash(dump(sec.name, value)), value
        return sec.hash[idx], sec.value[idx]

    def _applies(self, sec: _Section, idx: tuple[int, ...], axis: int) -> bool:
        """Whether axis ``axis`` applies to the policy this policy variant switches to."""
        if self.applies is None or sec.name != "policy":
            return True
        name_axis, table = self.applies
        return bool(table[idx[sec.axes.index(name_axis)], axis])

    def group(self, parts: dict[str, Any], ids: Any) -> str | None:
        """The point's fast-path structure (None: SimPy), cached by section shapes."""
        got = self.groups.get(ids, ...)
        if got is not ...:
            return got  # type: ignore[return-value]
        sc = self.base_sc.model_copy(update=parts)
        prec = None if self.precision is None else _precision(self.precision)
        # --engine fast on a choice-dependent point is refused here, before any work
        fast = choose(sc, self.engine, precision=prec) == "fast"
        grp = structure_key(sc) if fast else None
        self.groups[ids] = grp
        return grp

    def shape(self, sec: str, idx: tuple[int, ...], value: Any) -> Any:
        """What of a section variant a fast-path structure depends on (cached)."""
        got = self.shapes.get((sec, idx))
        if got is None:
            got = self.shapes[(sec, idx)] = _shape(sec, idx, value)
        return got

    def points(self) -> list[SweepPoint]:
        """Every point, grid order: each section's variants resolved once (vectorised over
        the points), then per point only its key, its cells and its overrides."""
        sizes = [len(a.values) for a in self.axes]
        combos = np.indices(sizes).reshape(len(sizes), -1).T if sizes else np.zeros((1, 0), int)
        combos, na = self._not_applicable(combos)
        hashes, shape_ids = [], []
        values: dict[str, list[Any]] = {}
        for sec in self.sections:
            lin, uniq = _variants(combos, sec.axes, sizes)
            got = [self.variant(sec, tuple(int(v) for v in combos[first, sec.axes]))
                   for first in uniq]
            hashes.append(np.array([h for h, _ in got], dtype=object)[lin])
            values[sec.name] = [v for _, v in got]
            shapes = [self.shape(sec.name, tuple(combos[f, sec.axes]), v)
                      for f, (_, v) in zip(uniq, got, strict=True)]
            ids = {sh: i for i, sh in enumerate(dict.fromkeys(shapes))}
            shape_ids.append((np.array([ids[sh] for sh in shapes])[lin], len(ids), lin))
        groups, weights = self._groups(shape_ids, values, hashes)
        fields = [a.field for a in self.axes]
        cells = [[_cell(v) for v in a.values] for a in self.axes]
        sets = [[_set(a.field, v) for v in a.values] for a in self.axes]
        prefix = combine_prefix(self.precision)
        keys = ["|".join(row) for row in zip(*hashes, strict=True)]
        out = []
        for n, (combo, skip) in enumerate(zip(combos.tolist(), na.tolist(), strict=True)):
            out.append(SweepPoint(
                {f: None if skip[i] else cells[i][j]
                 for i, (f, j) in enumerate(zip(fields, combo, strict=True))},
                self.raw, (*self.base, *(sets[i][j] for i, j in enumerate(combo)
                                         if not skip[i])),
                self.name, combine_hashed(prefix, keys[n]), self.engine, groups[n],
                weights[n], self.precision))
        return out

    def _not_applicable(self, combos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points with the values of policy axes their policy lacks left out (each such
        point once: the grid keeps the first of those that become the same)."""
        na = np.zeros(combos.shape, dtype=bool)
        if self.applies is None:
            return combos, na
        name_axis, table = self.applies
        na = ~table[combos[:, name_axis]]
        combos = np.where(na, 0, combos)
        _, first = np.unique(combos, axis=0, return_index=True)
        keep = np.sort(first)
        return combos[keep], na[keep]

    def _groups(self, shape_ids: list[tuple[np.ndarray, int, np.ndarray]],
                values: dict[str, list[Any]], hashes: list[np.ndarray]
                ) -> tuple[list[str | None], list[int]]:
        """Each point's fast-path structure (computed once per distinct combination of
        section shapes) and its weight on SimPy (chunks x sessions)."""
        code = np.zeros(len(shape_ids[0][0]), dtype=np.int64)
        for ids, n, _ in shape_ids:
            code = code * n + ids
        policy = values["policy"]
        pol_lin = shape_ids[SECTIONS.index("policy")][2]
        reads = np.array([p.structure_reads_costs() for p in policy])[pol_lin]
        cost_h = hashes[SECTIONS.index("costs")]
        keys = [(int(c), cost_h[i] if reads[i] else None) for i, c in enumerate(code)]
        memo: dict[Any, str | None] = {}
        out: list[str | None] = []
        lins = {name: shape_ids[i][2] for i, name in enumerate(SECTIONS)}
        for i, k in enumerate(keys):
            if k not in memo:
                memo[k] = self.group({s: values[s][lins[s][i]] for s in SECTIONS}, k)
            out.append(memo[k])
        run = values["run"]
        weights = [r.chunks * r.sessions for r in run]
        return out, [weights[j] for j in lins["run"]]


def _policy_key(field: str) -> str | None:
    table, _, key = field.partition(".")
    return key if table == "policy" and "." not in key and key != "name" else None


def _applicability(axes: list[Axis]) -> tuple[int, np.ndarray] | None:
    """With a ``policy.name`` axis: its index and, per policy of it and per axis, whether
    the axis applies (a ``policy.*`` field that policy lacks but another of the axis has
    does not: the grid can compare policies whose fields differ; a field no policy of
    the axis has stays, and fails naming it). None without such an axis."""
    at = next((i for i, a in enumerate(axes) if a.field == "policy.name"), None)
    if at is None:
        return None
    fields = [policy_fields(n) or set() for n in axes[at].values]
    anyone = set().union(*fields)
    table = np.ones((len(fields), len(axes)), dtype=bool)
    for i, a in enumerate(axes):
        key = _policy_key(a.field)
        if key is not None and key in anyone:
            table[:, i] = [key in f for f in fields]
    return at, table


def _variants(combos: np.ndarray, axes: list[int], sizes: list[int]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the index of its section variant (``lin``: into the variants in the
    order they first occur) and the first point of each variant."""
    if not axes:
        return np.zeros(len(combos), dtype=np.int64), np.zeros(1, dtype=np.int64)
    code = np.zeros(len(combos), dtype=np.int64)
    for i in axes:
        code = code * sizes[i] + combos[:, i]
    _, first, lin = np.unique(code, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[lin], first[order]


def _shape(sec: str, idx: tuple[int, ...], value: Any) -> Any:
    """A section variant as far as structures and engine choice go: the run without its
    seed, warm-up and deadline; the transport's sizes; the costs' phases and steps; the
    other sections as themselves."""
    if sec == "run":
        return repr(value.model_dump(exclude={"seed", "warmup", "target_fps"}))
    if sec == "transport":
        return (value.envelope_size, value.result_size, value.context_bytes)
    if sec == "costs":
        steps = value["denoise"].steps if "denoise" in value else 1
        return (tuple(sorted(value)), steps)
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
    return planner.points()


#: a fast-path chunk's share of a SimPy chunk's time (in a batch of points)
FAST_COST = 0.02


def point_cost(p: SweepPoint) -> float:
    """A point's estimated work in SimPy chunks (its cap: a precise run may stop early)."""
    return p.weight * (FAST_COST if p.group is not None else 1.0)


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
