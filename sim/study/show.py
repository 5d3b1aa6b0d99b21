"""How a study names and prints a column: one registry for tables, verdicts and figures.

A column the registry does not know (a user's derived column) is shown under its own
name with a general number format, so a study file never needs to describe its columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Show:
    """``label`` in words, the ``unit`` appended to values ("" for none), ``digits``
    after the point (None: 3 significant), and ``percent`` (a share shown as 41%)."""

    label: str
    unit: str = ""
    digits: int | None = None
    percent: bool = False


#: column -> how it is shown
SHOW: dict[str, Show] = {
    "period_ms": Show("period", "ms", 1),
    "fps": Show("fps", "", 1),
    "aggregate_fps": Show("throughput", "fps", 1),
    "period_p50_ms": Show("median period", "ms", 1),
    "stage0_ms": Show("stage0 busy", "ms", 1),
    "stage1_ms": Show("stage1 busy", "ms", 1),
    "overlap_score": Show("OverlapScore", "", 2),
    "overlap_window": Show("overlap window", "", 2),
    "ttff_ms": Show("TTFF", "ms", 1),
    "latency_p50_ms": Show("latency p50", "ms", 1),
    "latency_p95_ms": Show("latency p95", "ms", 1),
    "latency_p99_ms": Show("latency p99", "ms", 1),
    "peak_bytes_in_flight": Show("memory in flight", "B", 0),
    "bound_ms": Show("bound", "ms", 1),
    "utilisation": Show("utilisation", "", 0, percent=True),
    # the built-in studies' derived columns
    "bottleneck_ms": Show("bottleneck", "ms", 1),
    "period_ratio": Show("period / bottleneck", "", 2),
    "memory_mb": Show("memory in flight", "MB", 2),
    "throughput": Show("throughput", "fps", 1),
    "fps_per_gpu": Show("fps per GPU", "", 1),
    "queues_held": Show("queues held", "", 0),
    "items_in_flight": Show("items in flight", "", 0),
    "ttff_periods": Show("TTFF / period", "", 2),
    "period_per_step": Show("period / step", "ms", 1),
    "bubble_mean": Show("bubble", "", 0, percent=True),
    "bubble_formula": Show("(P-1)/(M+P-1)", "", 0, percent=True),
}


def show(column: str) -> Show:
    return SHOW.get(column, Show(column))


def heading(column: str) -> str:
    """A table heading: ``period (ms)``, ``OverlapScore``."""
    s = show(column)
    return f"{s.label} ({s.unit})" if s.unit and not s.percent else s.label


def number(value: Any) -> float | None:
    """A cell as a finite number, or None (missing, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(column: str, value: Any, unit: bool = True) -> str:
    """``152.0 ms``, ``0.99``, ``41%``; ``missing`` for a value that is not a number."""
    v = number(value)
    if v is None:
        return "missing" if value is None or isinstance(value, float) else str(value)
    s = show(column)
    if s.percent:
        return f"{v:.{s.digits or 0}%}"
    text = f"{v:.{s.digits}f}" if s.digits is not None else f"{v:.3g}"
    return f"{text} {s.unit}" if unit and s.unit else text


def fmt_delta(column: str, delta: float) -> str:
    """A signed difference in the column's unit: ``+100.2 ms``, ``-0.99``, ``+12 pp``."""
    s = show(column)
    if s.percent:
        return f"{delta * 100:+.{s.digits or 0}f} pp"
    text = f"{delta:+.{s.digits}f}" if s.digits is not None else f"{delta:+.3g}"
    return f"{text} {s.unit}" if s.unit else text


def fmt_range(column: str, values: list[float], unit: bool = True) -> str:
    """``1.49-1.54`` (or one value when they agree to the shown digits)."""
    lo, hi = fmt(column, min(values), unit=False), fmt(column, max(values), unit=False)
    s = show(column)
    tail = f" {s.unit}" if unit and s.unit and not s.percent else ""
    return (lo if lo == hi else f"{lo}-{hi}") + tail
