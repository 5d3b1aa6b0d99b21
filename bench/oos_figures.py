"""The out-of-sample bench's figures as JSON (``bench/fidelity.py --mode oos
--summary-json``): per layout, the period and overlap errors of the prediction with the
layout's devices (``after``) over all points, the steady ones and the trusted ones, so a
script (``scripts/device_check.sh``) can judge them against its targets without pandas."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd


def _num(x: Any) -> float | None:
    """A JSON-safe float: None for a missing value (NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def stats(t: pd.DataFrame) -> dict[str, Any]:
    """Count, median and max of the period error and the overlap error of ``t``'s points
    (None where there is no point or no overlap value), and the diagnostics beside them."""
    def agg(col: str) -> tuple[float | None, float | None]:
        s = t[col].dropna() if col in t else pd.Series(dtype=float)
        return (_num(s.median()), _num(s.max())) if len(s) else (None, None)

    per, ovl, before, norm = (agg(c) for c in ("after_err", "after_ovl_err", "before_err",
                                               "norm_err"))
    return {"n": len(t), "period_err_median": per[0], "period_err_max": per[1],
            "overlap_err_median": ovl[0], "overlap_err_max": ovl[1],
            "before_period_err_median": before[0], "norm_err_median": norm[0],
            "norm_err_max": norm[1]}


def figures(table: pd.DataFrame) -> dict[str, Any]:
    """layout -> {all, steady, trusted} -> stats, and the points' rows (for the log)."""
    out: dict[str, Any] = {}
    for layout, part in table.groupby("layout", sort=False):
        out[str(layout)] = {"all": stats(part), "steady": stats(part[part["steady"]]),
                            "trusted": stats(part[part["ok"]])}
    return {"layouts": out, "points": len(table)}


def write_figures(table: pd.DataFrame, path: Path) -> None:
    """Write :func:`figures` of ``table`` to ``path`` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(figures(table), indent=1) + "\n")
    tmp.replace(path)
