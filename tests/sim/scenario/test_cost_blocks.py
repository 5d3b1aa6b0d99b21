"""Costs drawn in blocks: the same per-chunk values whatever the block size, the order of
the requests or the run's length, and never the whole table at once."""

from __future__ import annotations

import numpy as np
import pytest

from pipefill.sim.scenario.costs import PHASES, CostSpec, CostTable

SPECS = {
    "normal": CostSpec(dist="normal", mean=10.0, cv=0.3, steps=2),
    "lognormal": CostSpec(dist="lognormal", mean=10.0, cv=0.5, pattern=[1.0, 1.5, 0.5]),
    "uniform": CostSpec(dist="uniform", low=2.0, high=9.0, drift_ms=0.01, steps=3),
    "empirical": CostSpec(dist="empirical", samples=[1.0, 2.5, 4.0, 7.0, 11.0]),
    "constant": CostSpec(mean=3.0),
    "exponential": CostSpec(dist="exponential", mean=4.0, steps=2),
}


def reference(spec: CostSpec, phase: str, seed: int, chunks: int) -> np.ndarray:
    """The table as it was sampled up front: one draw of (chunks, steps) per phase."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, PHASES.index(phase)]))
    vals = spec.draw(rng, (1, chunks, spec.steps))[0]
    k = np.arange(chunks)
    if spec.pattern:
        vals = vals * np.asarray(spec.pattern)[k % len(spec.pattern)][:, None]
    vals = vals + spec.drift_ms * k[:, None]
    return np.clip(vals, 0.0, None)


@pytest.mark.parametrize("dist", sorted(SPECS))
@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_blocks_give_the_up_front_values(dist, block):
    spec = SPECS[dist]
    ref = reference(spec, "decode", seed=5, chunks=300)
    table = CostTable({"decode": spec}, sessions=1, chunks=300, seed=5, block=block)
    got = np.array([[table.get("decode", 0, k, s) for s in range(spec.steps)]
                    for k in range(300)])
    assert np.array_equal(got, ref)
    assert np.array_equal(table.values("decode", 0, 17, 250), ref[17:250])


def test_any_request_order_and_run_length_gives_the_same_draws():
    spec = SPECS["lognormal"]
    short = CostTable({"build": spec}, 1, 50, seed=3, block=8)
    long = CostTable({"build": spec}, 1, 5000, seed=3, block=8)
    # far ahead first, then back past the kept blocks: drawn again from the start
    assert long.get("build", 0, 4000) == long.get("build", 0, 4000)
    for k in [49, 3, 40, 0, 17]:
        assert long.get("build", 0, k) == short.get("build", 0, k)


def test_sessions_have_streams_of_their_own():
    spec = SPECS["normal"]
    one = CostTable({"denoise": spec}, 1, 100, seed=1)
    three = CostTable({"denoise": spec}, 3, 100, seed=1)
    longer = CostTable({"denoise": spec}, 3, 400, seed=1)
    assert np.array_equal(three.values("denoise", 0, 0, 100), one.values("denoise", 0, 0, 100))
    assert three.get("denoise", 1, 5) != three.get("denoise", 2, 5)
    assert np.array_equal(three.values("denoise", 2, 0, 100), longer.values("denoise", 2, 0, 100))


def test_a_long_run_holds_a_few_blocks():
    table = CostTable({"decode": SPECS["normal"]}, 1, 10_000_000, seed=0, block=1000)
    for k in range(0, 200_000, 997):
        table.get("decode", 0, k)
    assert len(table._draws["decode"].blocks) <= 3


def test_out_of_range_draws_are_refused():
    table = CostTable({"decode": SPECS["constant"]}, 1, 10, seed=0)
    with pytest.raises(IndexError, match="chunk 10"):
        table.get("decode", 0, 10)
