"""A sweep's precision columns as figures show them: half-widths and unconverged points."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipefill.reports.sweep import HeatPanel


def precision_cells(column: str, table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per row: the 95% half-width of ``column`` (NaN: none; only the period has one) and
    whether the point stopped at its cap without meeting its precision."""
    nan = pd.Series(np.nan, index=table.index, dtype=float)
    if column != "period_ms" or "period_ci_ms" not in table.columns:
        return nan, pd.Series(False, index=table.index)
    ci = pd.to_numeric(table["period_ci_ms"], errors="coerce")
    if "converged" not in table.columns:
        return ci.astype(float), pd.Series(False, index=table.index)
    # None (or NaN, read back): no target; otherwise false means it hit the cap
    late = table["converged"].map(lambda v: v is not None and v == v and not bool(v))
    return ci.astype(float), late.astype(bool)


def cell_text(value: str, p: HeatPanel, i: int, j: int) -> str:
    """A heatmap cell: the value, its half-width under it, ``*`` when not converged."""
    if p.ci is None or not np.isfinite(p.ci[i, j]):
        return value
    mark = "*" if p.unconverged is not None and p.unconverged[i, j] else ""
    return f"{value}{mark}\n±{p.ci[i, j]:#.2g}"


def precision_note(panels: list[Any]) -> str:
    """What the cells' ``±`` and ``*`` mean, when a panel has them."""
    if not any(p.ci is not None for p in panels):
        return ""
    late = sum(int(p.unconverged.sum()) for p in panels if p.unconverged is not None)
    note = "; ± the 95% half-width"
    return note + (f", * {late} point(s) not converged (stopped at run.chunks)" if late else "")
