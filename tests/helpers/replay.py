"""The hard-cut contract checked on a replayed or simulated trace."""

from __future__ import annotations

from pipefill.traces.schema import Trace


def _emits(trace: Trace) -> list[tuple[int, int]]:
    em = trace.marks("emit").sort_values("start_ms")
    return list(zip(em["chunk"], em["epoch"], strict=True))


def check_hard_cuts(trace: Trace, chunks: int, cuts: list[int]) -> None:
    """The hard-cut contract, whatever the timing decided to drop."""
    emits = _emits(trace)
    dropped = set(trace.marks("drop")["chunk"])
    emitted = [c for c, _ in emits]
    assert emitted == sorted(set(emitted)), "each chunk emitted at most once, in order"
    for chunk, epoch in emits:  # never a stale-epoch frame
        assert epoch == sum(1 for c in cuts if c <= chunk)
    assert set(emitted) | dropped == set(range(chunks))
    assert not set(emitted) & dropped
    after_last_cut = set(range(max(cuts, default=0), chunks))
    assert after_last_cut <= set(emitted), "nothing after the last cut is dropped"
    assert len(trace.marks("hard_cut")) == len(cuts)
