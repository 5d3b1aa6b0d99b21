"""A study's points as a table a verdict rule reads: values, selections and names.

A point is one run: a variant of the study (``r0a``) at one value of each of its axes
(``lag = 1``). Rules name sets of points the way a person would: ``D_out = 1`` when
every point with D_out = 1 (and only those) is meant, ``lag >= 1``, ``r0a, lag >= 1``,
or a list of point labels when no short description fits.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipefill.sim.study.show import number, show

VARIANT = "variant"
#: at most this many terms joined by "or" before the name falls back to listing points
MAX_TERMS = 3
MAX_LISTED = 4


@dataclass(frozen=True)
class Dim:
    """A dimension points are named by: the study's variants or one grid axis."""

    key: str
    label: str


@dataclass(frozen=True)
class Atom:
    """``D_out = 1``, ``lag >= 1`` or a variant label, with the points it holds."""

    dim: str
    text: str
    members: frozenset[int]


@dataclass(frozen=True)
class Points:
    """The study's table: one row per point (``variant``, ``label``, axis cells, metrics,
    facts, derived columns, ``error``), and the dimensions that name them."""

    rows: tuple[dict[str, Any], ...]
    dims: tuple[Dim, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def value(self, i: int, column: str) -> float | None:
        return number(self.rows[i].get(column))

    def failed(self, i: int) -> bool:
        return bool(self.rows[i].get("error"))

    def label(self, i: int) -> str:
        return str(self.rows[i]["label"])

    def column_label(self, column: str) -> str:
        """An axis's label (``D_out``), else the column's display label."""
        dim = next((d for d in self.dims if d.key == column), None)
        return dim.label if dim is not None else show(column).label

    def select(self, where: Mapping[str, Any] | None, among: list[int] | None = None
               ) -> list[int]:
        """Points whose cells equal every ``where`` entry (``variant`` is the variant's
        label), in table order."""
        pool = range(len(self.rows)) if among is None else among
        return [i for i in pool if all(self.rows[i].get(k) == v
                                       for k, v in (where or {}).items())]

    def atoms(self, within: frozenset[int] | None = None) -> list[Atom]:
        """Every one-dimension description of points ``within`` (default: all), without
        duplicates (simplest first)."""
        out: dict[frozenset[int], Atom] = {}
        for dim in self.dims:
            cells = [(i, r.get(dim.key)) for i, r in enumerate(self.rows)
                     if r.get(dim.key) is not None and (within is None or i in within)]
            for text, members in _dim_atoms(dim, cells):
                out.setdefault(members, Atom(dim.key, text, members))
        return list(out.values())

    def name(self, indices: list[int], within: list[int] | None = None) -> str:
        """The shortest description of exactly these points among those ``within``
        (default: all points; module docstring)."""
        want = frozenset(indices)
        if not want:
            return "no point"
        if want == frozenset(range(len(self.rows)) if within is None else within):
            return "every point"
        if len(want) == 1:
            return self.label(next(iter(want)))
        terms = self.terms(indices, within)
        if terms is not None:
            return " or ".join(text for text, _ in terms)
        listed = [self.label(i) for i in sorted(want)]
        more = len(listed) - MAX_LISTED
        return "; ".join(listed[:MAX_LISTED]) + (f" and {more} more" if more > 0 else "")

    def terms(self, indices: list[int], within: list[int] | None = None
              ) -> list[tuple[str, frozenset[int]]] | None:
        """At most MAX_TERMS descriptions (text, points) that together hold exactly
        these points among those ``within``; None when no such short cover exists."""
        want = frozenset(indices)
        cover = _cover(want, self._terms(want, None if within is None else frozenset(within)))
        return cover if cover is not None and len(cover) <= MAX_TERMS else None

    def _terms(self, want: frozenset[int], within: frozenset[int] | None
               ) -> list[tuple[str, frozenset[int], int]]:
        """(text, members, atoms used) of every description inside ``want``."""
        atoms = self.atoms(within)
        terms = [(a.text, a.members, 1) for a in atoms if a.members <= want]
        for a, b in itertools.combinations(atoms, 2):
            both = a.members & b.members
            if a.dim != b.dim and both and both <= want:
                first, second = (a, b) if a.dim == VARIANT or b.dim != VARIANT else (b, a)
                terms.append((f"{first.text}, {second.text}", both, 2))
        return terms


def _dim_atoms(dim: Dim, cells: list[tuple[int, Any]]) -> Iterator[tuple[str, frozenset[int]]]:
    """``D_out = 1`` for each value; for numbers, also ``>=``/``<=`` each inner value."""
    values = list(dict.fromkeys(v for _, v in cells))
    for v in values:
        yield (str(v) if dim.key == VARIANT else f"{dim.label} = {v}",
               frozenset(i for i, c in cells if c == v))
    ordered = sorted((n, v) for v in values if (n := number(v)) is not None)
    if len(ordered) == len(values) > 2:
        for n, v in ordered[1:-1]:
            yield f"{dim.label} >= {v}", frozenset(i for i, c in cells if (number(c) or 0) >= n)
            yield f"{dim.label} <= {v}", frozenset(i for i, c in cells if (number(c) or 0) <= n)


def _cover(want: frozenset[int], terms: list[tuple[str, frozenset[int], int]]
           ) -> list[tuple[str, frozenset[int]]] | None:
    """Greedy set cover of ``want``: the term holding most points still uncovered
    (ties: fewer atoms, then the first); None when the terms cannot cover it."""
    left: set[int] = set(want)
    chosen: list[tuple[str, frozenset[int]]] = []
    while left:
        best = max(terms, key=lambda t: (len(t[1] & left), -t[2]), default=None)
        if best is None or not best[1] & left:
            return None
        chosen.append((best[0], best[1]))
        left -= best[1]
    return chosen


def point_label(variant: str, cells: list[tuple[str, Any]]) -> str:
    """``r0a, lag = 1``; equal cells of sibling axes merge: ``D_in = D_out = 2``."""
    groups: dict[tuple[str, str], list[str]] = {}
    for label, value in cells:
        groups.setdefault((_stem(label), repr(value)), []).append(label)
    values = {repr(v): v for _, v in cells}
    parts = [" = ".join([*labels, str(values[key])]) for (_, key), labels in groups.items()]
    return ", ".join(p for p in [variant, *parts] if p)


def _stem(label: str) -> str:
    """``D`` for ``D_in`` and ``D_out`` (siblings); a label without ``_`` is its own."""
    head, sep, _ = label.rpartition("_")
    return head if sep and head else label
