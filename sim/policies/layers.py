"""Splitting a DiT's blocks over pipeline stages (layer_pp, stream_batch)."""

from __future__ import annotations


def even_split(blocks: int, stages: int) -> list[int]:
    """As even as possible; the first stages take the remainder."""
    base, extra = divmod(blocks, stages)
    return [base + (1 if s < extra else 0) for s in range(stages)]


def check_split(split: list[int], stages: int, blocks: int) -> None:
    """Raise ValueError unless ``split`` gives every stage >= 1 block and covers ``blocks``."""
    if len(split) != stages:
        raise ValueError(f"needs one block count per stage ({stages}), got {len(split)}")
    if min(split) < 1:
        raise ValueError("every stage needs at least 1 block")
    if sum(split) != blocks:
        raise ValueError(f"covers {sum(split)} blocks, not the model's {blocks}")


def balanced_split(blocks: int, per_block_ms: float, edges_ms: list[float]) -> list[int]:
    """Blocks per stage minimising the busiest stage: stage s costs ``n_s * per_block +
    edges[s]`` (edge stages also encode or decode).

    Blocks are identical, so giving each next block to the stage that stays the least
    loaded after taking it is optimal; every stage keeps at least one block.
    """
    counts = [1] * len(edges_ms)
    for _ in range(blocks - len(edges_ms)):
        loads = [(n + 1) * per_block_ms + e for n, e in zip(counts, edges_ms, strict=True)]
        counts[loads.index(min(loads))] += 1
    return counts


def link(p: int) -> str:
    """The queue carrying activations from stage p to stage p+1."""
    return f"act{p}"
