"""The Pareto front of two minimised quantities (memory in flight and period): one rule
for ``sweep --best`` and the report's frontier."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def pareto_mask(x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Which points no other point dominates (<= in both values and < in one). Equal
    points dominate neither other, so duplicates on the front are all kept. NaN rows
    are never on the front. O(n log n): sorted by x then y, a point is on the front when
    its y is below every y seen at a smaller x, or ties the best y at its own x."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mask = np.zeros(len(xs), dtype=bool)
    valid = np.flatnonzero(~(np.isnan(xs) | np.isnan(ys)))
    order = valid[np.lexsort((ys[valid], xs[valid]))]
    best = np.inf  # least y among points with a strictly smaller x
    for i, k in enumerate(order):
        first = i == 0 or xs[order[i - 1]] != xs[k]
        if first:  # the least y at this x (sorted by y within an x)
            low = ys[k]
            on_front = low < best
            best = min(best, low)
        mask[k] = on_front and ys[k] == low
    return mask
