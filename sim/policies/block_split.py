"""Splitting a DiT's blocks over pipeline stages: the base of layer_pp and stream_batch.

:class:`BlockSplitPolicy` holds what both policies share: ``stages`` stages named
``stage0..``, each running a contiguous slice of ``blocks`` DiT blocks (``split`` or an
even split), activations sent on between neighbours over the links :func:`link` names.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from pipefill.sim.policies.base import Policy

if TYPE_CHECKING:
    from pipefill.sim.scenario.model import Scenario


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


class BlockSplitPolicy(Policy):
    """A policy whose generator's blocks are split over ``n_stages`` pipeline stages.

    Invariants: ``blocks >= n_stages``; ``split``, when given, has one count >= 1 per
    stage and covers every block. Subclasses add their schedule (and may choose the
    split themselves by overriding :meth:`block_counts`).
    """

    model_config = ConfigDict(populate_by_name=True)

    # ``stages`` in scenarios; the attribute name leaves Policy.stages() alone
    n_stages: int = Field(2, ge=1, alias="stages",
                          description="pipeline stages the DiT's blocks are split over")
    blocks: int = Field(30, ge=1, description="DiT blocks to split (Wan2.1-1.3B: 30)")
    split: list[int] | None = Field(
        None, description="blocks per stage, covering all blocks (default: as even as possible)")
    activation_bytes: int | None = Field(
        None, ge=0, description="bytes sent between stages per item (default: result size)")

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, v: int, info: ValidationInfo) -> int:
        stages = info.data.get("n_stages")
        if stages is not None and v < stages:
            raise ValueError(f"needs at least one block per stage ({stages} stages)")
        return v

    def levers(self, sc: Scenario) -> dict[str, str]:
        return {"stage imbalance": "balance the blocks (policy.split, or balance = true "
                "where the policy has it)"}

    @field_validator("split")
    @classmethod
    def _split(cls, v: list[int] | None, info: ValidationInfo) -> list[int] | None:
        stages, blocks = info.data.get("n_stages"), info.data.get("blocks")
        if v is not None and stages is not None and blocks is not None:
            check_split(v, stages, blocks)
        return v

    def params(self) -> dict[str, Any]:
        return {"name": self.name, **self.model_dump(mode="json", by_alias=True)}

    def stages_of(self) -> tuple[str, ...]:
        return tuple(f"stage{p}" for p in range(self.n_stages))

    def stages(self, sc: Scenario) -> tuple[str, ...]:
        return self.stages_of()

    def block_counts(self, sc: Scenario) -> list[int]:
        """Blocks per stage: ``split``, else as even as possible."""
        return list(self.split) if self.split is not None else even_split(self.blocks,
                                                                          self.n_stages)

    def structure(self, sc: Scenario) -> Any:
        """The blocks per stage (a balanced split follows the costs)."""
        return self.block_counts(sc)

    def shares(self, sc: Scenario) -> list[float]:
        """Fraction of the DiT each stage runs."""
        return [n / self.blocks for n in self.block_counts(sc)]

    def slices(self, sc: Scenario) -> list[tuple[float, float]]:
        """Each stage's blocks as ``[start, end)`` fractions of the model (``Compute.blocks``)."""
        counts, edges = self.block_counts(sc), [0]
        for n in counts:
            edges.append(edges[-1] + n)
        return [(a / self.blocks, b / self.blocks) for a, b in itertools.pairwise(edges)]

    def act_bytes(self, sc: Scenario) -> int:
        """Bytes of one item's activations on a link (default: the result size)."""
        return self.activation_bytes if self.activation_bytes is not None \
            else sc.transport.result_size
