"""The one Pareto rule (traces.pareto) against brute force."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pipefill.traces.pareto import pareto_mask


def brute(x: np.ndarray, y: np.ndarray) -> list[bool]:
    ok = ~(np.isnan(x) | np.isnan(y))
    return [bool(ok[i]) and not bool(np.any(ok & (x <= x[i]) & (y <= y[i])
                                            & ((x < x[i]) | (y < y[i]))))
            for i in range(len(x))]


def test_hand_checked_front_keeps_ties_and_drops_nan():
    x = np.array([1.0, 1.0, 2.0, 2.0, 3.0, np.nan, 0.5])
    y = np.array([5.0, 5.0, 4.0, 6.0, 4.0, 1.0, 9.0])
    assert pareto_mask(x, y).tolist() == [True, True, True, False, False, False, True]


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=40))
def test_equals_brute_force(points):
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    assert pareto_mask(x, y).tolist() == brute(x, y)
