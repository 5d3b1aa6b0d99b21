"""The stream-batch study with layer_pp's bubble known by hand: 4 DiT blocks split
evenly over P = 2 or 4 stages, constant costs, no transport. A batch of M items on P
balanced stages takes (M + P - 1) slices and each stage idles P - 1 of them, so the
mean bubble over whole batches is (P-1)/(M+P-1). The window (warm-up 8, 72 chunks)
starts at a batch's end for every M in {1, 2, 4, 8} and ends before the cool-down (the
chunks in flight when the last input enters): inside the last batch when M > P, where a
stage's bubble is off by part of a slice; their mean is the formula's."""

from __future__ import annotations

import pytest

import pipefill
from tests.helpers.scenarios import make_scenario


@pytest.fixture(scope="module")
def stream_batch():
    costs = {"build": 2, "denoise": {"mean": 20, "steps": 2}, "decode": 3, "encode": 1}
    sc = make_scenario({"name": "phase_pp"}, costs, chunks=72, warmup=8)
    return pipefill.study("stream-batch", sc, sets=["policy.blocks=4"])


def test_layer_pp_bubble_is_the_formula(stream_batch):
    layer = [r for r in stream_batch.points.rows if r["variant"] == "layer_pp"]
    assert len(layer) == 8
    for row in layer:
        p, m = row["policy.stages"], row["policy.items"]
        formula = (p - 1) / (m + p - 1)
        assert row["bubble_formula"] == formula
        bubbles = [row[f"bubble_stage{s}"] for s in range(p)]
        if m <= p:  # the window holds whole batches
            assert bubbles == pytest.approx([formula] * p, abs=1e-9)
        assert sum(bubbles) / p == pytest.approx(formula, abs=0.005)
        assert max(abs(b - formula) for b in bubbles) < 0.03
        assert row["items_in_flight"] == m
    formula = stream_batch.findings[0]
    assert formula.ok and formula.text.startswith("bubble matches (P-1)/(M+P-1) within ")
    assert formula.text.endswith(" at layer_pp")


def test_stream_batch_fills_more_than_pp_without_it(stream_batch):
    _, versus, trend, fill = stream_batch.verdict
    assert versus.startswith("against layer_pp, items = 1, PP without Stream Batch")
    # W = 2 stages, one item per batch: 50% busy; Stream Batch: every tick fills them
    assert "stream_batch, stages = 2, steps = 1: utilisation 92% (+42 pp, +85%)" in versus
    assert trend.startswith("layer_pp, stages = 2: utilisation 50% -> 67% -> 80% -> 89% "
                            "over items in flight = 1, 2, 4, 8; layer_pp, stages = 4: "
                            "utilisation 25% -> 40% -> 57% -> 73%")
    assert fill.startswith("TTFF (the fill) in periods 1.00-")
    sb = [r for r in stream_batch.points.rows if r["variant"] == "stream_batch"]
    assert [r["items_in_flight"] for r in sb] == [2, 4, 8, 4, 8, 16]
