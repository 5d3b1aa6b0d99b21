"""MSER-5 and batch means on series whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.traces.steady import BatchMeans, mser, t975


def test_mser_drops_a_step_transient_to_the_batch_it_ends_in():
    # 23 gaps of 0.5 then 1.0 for ever: the first batch of 5 that is all steady starts
    # at gap 25, so MSER-5 drops 25
    got = mser(np.r_[np.full(23, 0.5), np.ones(300)])
    assert (got.drop, got.at_limit) == (25, False)
    # nothing to drop in a steady series
    assert mser(np.ones(100)).drop == 0


def test_mser_of_a_noisy_transient_lands_near_its_end():
    rng = np.random.default_rng(3)
    for end in (40, 120):
        x = np.r_[np.full(end, 3.0), np.ones(4000)] + rng.normal(0, 0.1, end + 4000)
        assert abs(mser(x).drop - end) <= 5


def test_mser_that_wants_half_the_run_says_so():
    x = np.r_[np.linspace(5, 1, 200), np.ones(10)]  # a drift longer than the run shows
    assert mser(x).at_limit


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=12), st.integers(0, 2**31))
def test_batch_means_fed_in_any_pieces_are_the_same(cuts, seed):
    x = np.random.default_rng(seed).exponential(1.0, 3000)
    whole = BatchMeans()
    whole.add(x)
    pieces = BatchMeans()
    at = 0
    for c in cuts:
        pieces.add(x[at:at + c])
        at += c
    pieces.add(x[at:])
    assert pieces.size == whole.size and pieces.n == whole.n == 3000
    np.testing.assert_allclose(pieces.sums, whole.sums, rtol=1e-12)
    assert 16 <= len(whole.sums) < 32


def test_batch_means_of_independent_values_is_the_textbook_interval():
    rng = np.random.default_rng(0)
    halfwidths: list[float] = []
    covered = 0
    for _ in range(200):
        x = rng.normal(5.0, 2.0, 4096)
        bm = BatchMeans()
        bm.add(x)
        hw = bm.halfwidth()
        assert hw is not None
        halfwidths.append(hw)
        covered += abs(x.mean() - 5.0) <= hw
    # independent values: t * sigma / sqrt(n) on average, 95% coverage
    assert np.mean(halfwidths) == pytest.approx(1.96 * 2.0 / 64, rel=0.1)
    assert 180 <= covered <= 198


def test_too_few_batches_give_no_interval():
    bm = BatchMeans()
    bm.add(np.ones(15))
    assert bm.halfwidth() is None
    bm.add(np.ones(1))
    assert bm.halfwidth() == 0.0


def test_t_quantiles():
    assert t975(15) == 2.131 and t975(30) == 2.042
    assert t975(1000) == pytest.approx(1.9623, abs=1e-3)
