"""Robust spread: which samples are preemptions or pauses rather than the quantity's own
spread (median and median absolute deviation, scaled to a normal's sigma)."""

from __future__ import annotations

import numpy as np

#: scales the median absolute deviation to a normal distribution's standard deviation
MAD_SIGMA = 1.4826


def within_mads(x: np.ndarray, mads: float, floor: float,
                upper_only: bool = False) -> np.ndarray:
    """Mask of the samples no further from the median than ``mads`` robust deviations or
    ``floor`` times the median, whichever is wider; ``upper_only``: only samples above
    the median can be cut (a gap can hold a preemption, never a negative one)."""
    med = float(np.median(x))
    mad = MAD_SIGMA * float(np.median(np.abs(x - med)))
    dev = x - med if upper_only else np.abs(x - med)
    return np.asarray(dev <= max(mads * mad, floor * med))
