"""Streamed, resumable sweep results: one Parquet part per finished task, then one table.

While a sweep runs, every finished task is written atomically as
``<out>.parts/part-<hash>.parquet`` (a Parquet dataset), so an interrupted or crashed
sweep leaves every finished point readable. Each row carries ``point_key``: a hash of
the point's resolved scenario and of the engine version (:func:`engine_version`), so
``--resume`` can tell which grid points are already done, whatever grid they came from.
When the sweep completes the parts are consolidated into ``<out>`` (grid order, each point
exactly once) and the parts directory is removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipefill.sim.errors import ScenarioError
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.sweep.sections import SECTIONS, dumps_of
from pipefill.traces.io import META_KEY, atomic_path, read_table
from pipefill.traces.schema import TraceError

#: the column that identifies a point across runs
KEY = "point_key"
PART_GLOB = "part-*.parquet"
_SIM_DIR = Path(__file__).resolve().parent
#: where the sources that cannot change a point's numbers live (the sweep machinery)
_NOT_ENGINE = "sweep"


@cache
def engine_version() -> str:
    """``<package version>+<hash of the simulator and metrics sources>``: any change to
    the code that computes a point's numbers gives new keys (stale rows are not reused)."""
    digest = hashlib.sha256()
    sources = [*sorted(_SIM_DIR.rglob("*.py")), *sorted((_SIM_DIR.parent / "traces").glob("*.py"))]
    for path in sources:
        if path.parent.name == _NOT_ENGINE or "__pycache__" in path.parts:
            continue
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    try:
        version = metadata.version("pipefill")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"{version}+{digest.hexdigest()[:12]}"


def section_hash(resolved: Any) -> str:
    """A section's resolved form (:func:`pipefill.sim.sweep.sections.dump`), hashed."""
    text = json.dumps(resolved, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def section_hashes(sc: Scenario) -> dict[str, str]:
    """Each section of the resolved scenario (every default filled in, the policy by its
    params; the name does not count), hashed."""
    return {s: section_hash(v) for s, v in dumps_of(sc).items()}


def combine_key(hashes: Sequence[str], precision: float | None = None) -> str:
    """A point's key from its section hashes (in :data:`SECTIONS` order), the engine
    version and the precision it runs to."""
    return combine_hashed(combine_prefix(precision), "|".join(hashes))


def combine_prefix(precision: float | None) -> str:
    return f"{engine_version()}|{precision!r}|"


def combine_hashed(prefix: str, joined: str) -> str:
    """:func:`combine_key` from its prefix and the joined section hashes."""
    return hashlib.sha256((prefix + joined).encode()).hexdigest()[:24]


def point_key(sc: Scenario, precision: float | None = None) -> str:
    """Hash of the resolved scenario (by section), of :func:`engine_version` and of the
    precision the point runs to."""
    h = section_hashes(sc)
    return combine_key([h[s] for s in SECTIONS], precision)


def parts_dir_of(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


@dataclass
class ResultStore:
    """Rows by point key; with ``parts`` set, each added task is also a Parquet part.

    ``rows`` maps a point key to its result columns (metrics, ``error``); axis columns are
    not kept here: the final table takes them from the current grid.
    """

    parts: Path | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: part files whose rows are in ``rows`` (read on resume or written here)
    known: set[str] = field(default_factory=set)

    def add(self, rows: Sequence[dict[str, Any]], axes: Sequence[str]) -> None:
        """Record one finished task's rows (each with ``point_key`` and its axis cells)."""
        part = _write_part(self.parts, rows, axes) if self.parts is not None and rows else None
        for row in rows:
            self.rows[row[KEY]] = _results_only(row, axes)
        if part is not None:
            self.known.add(part.name)

    def sync(self) -> None:
        """Take in the parts on disk this store has not recorded: a Ctrl-C that lands
        between a part's write and its rows leaves one, and the disk is what --resume
        will find, so the interrupted table and its count must hold it too."""
        if self.parts is None or not self.parts.is_dir():
            return
        for path in sorted(self.parts.glob(PART_GLOB)):
            if path.name not in self.known:
                self.rows.update(_rows_of_part(path))
                self.known.add(path.name)

    def kept(self) -> int:
        return len(self.rows)

    def discard_parts(self) -> None:
        if self.parts is not None:
            shutil.rmtree(self.parts, ignore_errors=True)


def open_store(out: Path | None, resume: bool) -> ResultStore:
    """The store for ``--out`` (memory only without it). Without ``resume`` an earlier
    run's parts are not silently dropped: that is an input error naming ``--resume``."""
    if out is None:
        if resume:
            raise ScenarioError("--resume", "needs --out (the table and parts to resume from)")
        return ResultStore()
    parts = parts_dir_of(out)
    finished = sorted(parts.glob(PART_GLOB)) if parts.is_dir() else []
    if finished and not resume:
        raise ScenarioError("--out", f"{parts} holds {len(finished)} finished task(s) of an "
                            "earlier sweep: add --resume to keep them, or delete it")
    store = ResultStore(parts=parts)
    if resume:
        store.rows.update(_rows_of_table(out))
        for path in finished:
            store.rows.update(_rows_of_part(path))
            store.known.add(path.name)
    return store


def _results_only(row: dict[str, Any], axes: Iterable[str]) -> dict[str, Any]:
    drop = {KEY, *axes}
    return {k: v for k, v in row.items() if k not in drop}


def _write_part(parts: Path, rows: Sequence[dict[str, Any]], axes: Sequence[str]) -> Path:
    digest = hashlib.sha256("\n".join(r[KEY] for r in rows).encode()).hexdigest()[:16]
    table = pa.Table.from_pylist(list(rows))
    meta = {META_KEY: json.dumps({"kind": "sweep_part", "axes": list(axes),
                                  "engine_version": engine_version()}).encode()}
    target = parts / f"part-{digest}.parquet"
    with atomic_path(target) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
    return target


def read_part(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """One part's rows (as written) and its axis column names."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    return table.to_pylist(), list(meta.get("axes", []))


def _rows_of_part(path: Path) -> dict[str, dict[str, Any]]:
    try:
        rows, axes = read_part(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ScenarioError("--resume", f"{path}: unreadable part ({exc})") from None
    return {r[KEY]: _results_only(r, axes) for r in rows if r.get(KEY)}


def _rows_of_table(out: Path) -> dict[str, dict[str, Any]]:
    """Rows of a finished sweep table at ``out`` (none if absent or keyless)."""
    if not out.is_file():
        return {}
    try:
        table, meta = read_table(out)
    except TraceError as exc:
        raise ScenarioError("--resume", str(exc)) from None
    if KEY not in table.columns:
        return {}
    axes = list(meta.get("grid", {}))
    records = pa.Table.from_pandas(table, preserve_index=False).to_pylist()
    return {r[KEY]: _results_only(r, axes) for r in records if r.get(KEY)}
