"""Quantiles of long runs in bounded memory: exact up to 65,536 values, then within 0.5%."""

from __future__ import annotations

import numpy as np
import pytest

from pipefill.traces.sketch import EXACT_MAX, RELATIVE_ERROR, QuantileSketch


def test_exact_while_small():
    x = np.random.default_rng(1).lognormal(0, 1, 5000)
    s = QuantileSketch()
    for part in np.array_split(x, 7):
        s.add(part)
    assert s.is_exact and s.n == 5000
    for q in (0, 50, 95, 99, 100):
        assert s.quantile(q) == np.percentile(x, q)


@pytest.mark.parametrize("dist", ["lognormal", "exponential", "uniform", "shifted"])
def test_sketched_quantiles_are_within_the_stated_error(dist):
    rng = np.random.default_rng(2)
    n = 3 * EXACT_MAX
    x = {"lognormal": rng.lognormal(3, 0.5, n), "exponential": rng.exponential(10, n),
         "uniform": rng.uniform(100, 110, n), "shifted": rng.normal(0, 1, n)}[dist]
    s = QuantileSketch()
    for part in np.array_split(x, 40):
        s.add(part)
    assert not s.is_exact and s.n == n
    for q in (1, 25, 50, 75, 95, 99):
        exact, got = np.percentile(x, q), s.quantile(q)
        assert got is not None and abs(got - exact) <= RELATIVE_ERROR * abs(exact) + 1e-12, q


def test_zeros_and_merges():
    a, b = QuantileSketch(), QuantileSketch()
    a.add(np.zeros(EXACT_MAX + 10))
    b.add(np.full(EXACT_MAX + 10, 4.0))
    a.merge(b)
    assert a.n == 2 * (EXACT_MAX + 10)
    high = a.quantile(75)
    assert a.quantile(25) == 0.0 and high is not None and abs(high - 4.0) <= 4.0 * RELATIVE_ERROR
    c = QuantileSketch()
    c.add([1.0, 2.0, 3.0])
    c.merge(a)  # an exact one takes in a sketched one: it becomes a sketch
    assert not c.is_exact and c.n == a.n + 3
    assert QuantileSketch().quantile(50) is None


def test_memory_does_not_grow_with_the_count():
    s = QuantileSketch()
    rng = np.random.default_rng(4)
    for _ in range(30):
        s.add(rng.lognormal(2, 1, 100_000))
    assert s.pos.counts.nbytes < 100_000 and s.exact is None
