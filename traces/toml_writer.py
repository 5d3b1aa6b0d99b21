"""Write tables as TOML: the one writer of scenario files, report blocks and ``--set`` values.

Covers what scenarios and trace metadata hold: str, bool, int, float (``nan``, ``inf``
and ``-inf`` are TOML floats too), lists, and tables (nested ``[a.b]`` tables at the top,
inline ``{k = v}`` tables inside lists). ``None`` values are left out (TOML has no null;
a missing field takes its default). Keys are bare when TOML allows, else quoted as basic
strings; ``tomllib`` reads every output back to the same data. :func:`read_toml` is the
one reader of TOML files (scenarios, import maps), with the caller's error type.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if _BARE.fullmatch(key) else _string(key)


def _float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def toml_value(value: Any) -> str:
    """One value as TOML (what follows ``key = ``, or a ``--set``/``--grid`` value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}"
                               for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(tables: dict[str, Any], header: str = "") -> str:
    """Render nested dicts as TOML text: scalars first, then ``[a.b]`` tables; ``header``
    lines become leading comments."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    _emit(tables, (), lines)
    return "\n".join(lines).strip("\n") + "\n"


def _emit(table: dict[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if v is not None and not isinstance(v, dict)}
    subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not subtables):
        lines.append("")
        lines.append("[" + ".".join(toml_key(p) for p in path) + "]")
    lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in scalars.items())
    for k, v in subtables.items():
        _emit(v, (*path, k), lines)


def read_toml(path: str | os.PathLike[str], field: str,
              error: Callable[[str, str], Exception]) -> dict[str, Any]:
    """A TOML file's tables; an unreadable or invalid file raises ``error(field, message)``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(field, f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(field, f"{p.name}: invalid TOML ({exc})") from None
