"""Reading and writing traces and tables: Parquet (default) or CSV, always atomically.

Parquet traces carry the run metadata as JSON under the key ``pipefill`` of the
schema's key-value metadata. CSV traces carry it on a first comment line
``# pipefill-meta: {...}`` so a CSV is still one self-describing file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipefill.traces.measured import check_measured
from pipefill.traces.schema import COLUMNS, Trace, TraceError, validate

META_KEY = b"pipefill"
CSV_META_PREFIX = "# pipefill-meta: "


class OutputError(TraceError):
    """An output path cannot be written; ``field`` names the option (``--out``)."""


def _existing_ancestor(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_writable(path: str | os.PathLike[str], field: str = "--out",
                   suffixes: tuple[str, ...] = ()) -> None:
    """Raise :class:`OutputError` unless ``path`` could be written (before any work).

    Checks the extension (when ``suffixes`` is given), that the target is not a
    directory, that its nearest existing ancestor is a directory, and creates and removes
    a probe file there (``os.access`` says yes to root even on a read-only mount).
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(field, f"{target} is a directory")
    if suffixes and target.suffix.lower() not in suffixes:
        raise OutputError(field, f"{target.name}: unknown extension (use {' or '.join(suffixes)})")
    base = _existing_ancestor(target)
    if not base.is_dir():
        raise OutputError(field, f"{target}: {base} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise OutputError(field, f"{target}: cannot write in {base} "
                          f"({exc.strerror or exc})") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing: compare where they would be
        return a.resolve() == b.resolve()


def check_not_input(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]],
                    field: str = "--out", directory: bool = False) -> None:
    """Raise :class:`OutputError` when writing ``path`` would overwrite one of ``inputs``
    (the same file, through any link), or, for a ``directory`` output that replaces what
    is there, when an input lies inside it."""
    target = Path(path)
    for src in map(Path, inputs):
        if _same_file(target, src):
            raise OutputError(field, f"{target} is also an input ({src}); writing it would "
                              "overwrite it: choose another path")
        if directory and target.resolve() in src.resolve().parents:
            raise OutputError(field, f"{target} holds an input ({src}) and would be "
                              "replaced: choose another directory")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A reader never sees a half-written file and a failure leaves no partial output. A
    target that cannot be created raises :class:`OutputError` (``--out``).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError("--out", f"{target}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; give the result the mode a plain open() would have
        os.chmod(tmp, 0o666 & ~_umask())
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError("--out", f"{target}: cannot write ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


#: extensions a trace or table may be written with
TABLE_SUFFIXES = (".parquet", ".pq", ".csv")


def _fmt(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise TraceError("path", f"{path.name}: unknown extension (use .parquet or .csv)")


def _meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, default=str)


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], meta: dict[str, Any]) -> Path:
    """Write any table (trace or sweep) with metadata, atomically. Returns the path."""
    target = Path(path)
    writers: dict[str, Callable[[pd.DataFrame, Path, dict[str, Any]], None]] = {
        "parquet": _write_parquet,
        "csv": _write_csv,
    }
    writer = writers[_fmt(target)]
    with atomic_path(target) as tmp:
        writer(df, tmp, meta)
    return target


def _write_parquet(df: pd.DataFrame, path: Path, meta: dict[str, Any]) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    merged = dict(table.schema.metadata or {})
    merged[META_KEY] = _meta_json(meta).encode()
    pq.write_table(table.replace_schema_metadata(merged), path)


def _write_csv(df: pd.DataFrame, path: Path, meta: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(CSV_META_PREFIX + _meta_json(meta) + "\n")
        df.to_csv(fh, index=False)


def read_table(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table written by :func:`write_table`; raise TraceError on anything unreadable."""
    src = Path(path)
    reader = {"parquet": _read_parquet, "csv": _read_csv}[_fmt(src)]
    if not src.is_file():
        raise TraceError("path", f"{src}: no such file")
    try:
        return reader(src)
    except TraceError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TraceError("path", f"{src.name}: unreadable ({first})") from None


def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY)
    meta = json.loads(raw) if raw else {}
    return table.to_pandas(), meta


def _read_csv(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
        meta: dict[str, Any] = {}
        if first.startswith(CSV_META_PREFIX):
            meta = json.loads(first[len(CSV_META_PREFIX) :])
            body: IO[str] = fh
        else:
            body = io.StringIO(first + fh.read())
        return pd.read_csv(body), meta


#: Arrow types of the trace columns (the streamed Parquet schema)
_ARROW = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}


class TraceWriter:
    """Writes a trace as its rows arrive, in blocks (Parquet row groups or CSV lines).

    A context manager: the file appears, atomically, only when the block exits without
    an error; until then it is a temporary beside the target, deleted on failure. The
    rows are in recording order; :func:`read_trace` returns them in time order.
    """

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.meta = meta
        self.rows = 0
        self._fmt = _fmt(self.path)
        self._atomic: contextlib.AbstractContextManager[Path] | None = None
        self._pq: pq.ParquetWriter | None = None
        self._csv: IO[str] | None = None

    def __enter__(self) -> TraceWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        if self._fmt == "parquet":
            schema = pa.schema([(c, _ARROW[t]) for c, t in COLUMNS.items()],
                               metadata={META_KEY: _meta_json(self.meta).encode()})
            self._pq = pq.ParquetWriter(tmp, schema)
        else:
            self._csv = open(tmp, "w", encoding="utf-8", newline="")
            self._csv.write(CSV_META_PREFIX + _meta_json(self.meta) + "\n")
            self._csv.write(",".join(COLUMNS) + "\n")
        return self

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        self.rows += len(rows)
        cols = list(zip(*rows, strict=True))
        if self._pq is not None:
            arrays = [pa.array(v, type=_ARROW[t]) for v, t in zip(cols, COLUMNS.values(),
                                                                   strict=True)]
            self._pq.write_table(pa.Table.from_arrays(arrays, names=list(COLUMNS)))
        elif self._csv is not None:
            df = pd.DataFrame(dict(zip(COLUMNS, cols, strict=True))).astype(COLUMNS)
            df.to_csv(self._csv, index=False, header=False)

    def __exit__(self, *exc: Any) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._csv is not None:
            self._csv.close()
        assert self._atomic is not None
        self._atomic.__exit__(*exc)


def write_trace(trace: Trace, path: str | os.PathLike[str]) -> Path:
    return write_table(trace.events, path, trace.meta)


#: sources of traces recorded outside pipefill's engines, checked on read
MEASURED_SOURCES = ("probe", "import")


def read_trace(path: str | os.PathLike[str]) -> Trace:
    df, meta = read_table(path)
    trace = Trace(validate(df), meta)
    if meta.get("source") in MEASURED_SOURCES:
        check_measured(trace)
    return trace
