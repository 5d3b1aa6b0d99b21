"""Cost models: how long each phase takes, per session, chunk and denoise step.

Costs are sampled in blocks of chunks into a :class:`CostTable` from one generator per
phase (and session) derived from the run seed, so a chunk's cost depends neither on the
order in which a schedule asks for it nor on the run's length: two policies compared on
the same seed see the same costs (common random numbers), the same seed always gives the
same table, and the first n chunks of a longer run are the n-chunk run's draws.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: every phase a cost model may price (DESIGN.md vocabulary)
PHASES = ("build", "denoise", "recompute", "decode", "anchor_decode", "encode")


class CostSpec(BaseModel):
    """Duration of one phase in milliseconds (one denoise *step* for ``denoise``).

    A bare number in TOML (``decode = 120``) means ``dist = "constant"`` with that mean.
    Invariants: every sampled duration is >= 0; ``mean`` of a distribution is its
    expected value before the per-chunk ``pattern`` and ``drift_ms`` are applied.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dist: Literal["constant", "normal", "lognormal", "uniform", "empirical", "exponential"] = \
        Field("constant", description="distribution family")
    mean: float | None = Field(None, ge=0, description="mean ms (constant, normal, lognormal, "
                               "exponential)")
    cv: float = Field(0.0, ge=0, description="coefficient of variation (normal, lognormal)")
    low: float | None = Field(None, ge=0, description="lower bound ms (uniform)")
    high: float | None = Field(None, ge=0, description="upper bound ms (uniform)")
    samples: list[float] | None = Field(None, description="measured ms to resample (empirical)")
    steps: int = Field(1, ge=1, description="denoise steps per chunk; the cost is per step")
    pattern: list[float] | None = Field(
        None, description="per-chunk multipliers, cycled over the chunk index")
    drift_ms: float = Field(0.0, description="ms added per chunk index (slow drift)")
    batch: Literal["linear", "roofline"] = Field(
        "linear", description="how one call's cost grows with its batch of B items")
    batch_fixed_ms: float = Field(
        0.0, ge=0, description="linear: ms of a call that does not grow with the batch, so "
        "cost(B) = fixed + per_item * B with per_item = one-item mean - fixed")
    batch_knee: float = Field(
        1.0, ge=1, description="roofline: items a call takes at the one-item cost "
        "(memory-bound) before it grows linearly (compute-bound): cost(B) = c1 * max(1, B/knee)")

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"mean": float(data)}
        return data

    @model_validator(mode="after")
    def _complete(self) -> CostSpec:
        needs_mean = self.dist in ("constant", "normal", "lognormal", "exponential")
        if needs_mean and self.mean is None:
            raise ValueError(f"mean is required for dist = {self.dist!r}")
        bad_range = self.low is None or self.high is None or self.low > self.high
        if self.dist == "uniform" and bad_range:
            raise ValueError("uniform needs low <= high")
        if self.dist == "empirical" and (not self.samples or min(self.samples) < 0):
            raise ValueError("empirical needs a non-empty list of samples >= 0")
        if self.pattern is not None and (not self.pattern or min(self.pattern) < 0):
            raise ValueError("pattern needs multipliers >= 0")
        if self.batch_fixed_ms > self.base_mean():
            raise ValueError(f"batch_fixed_ms ({self.batch_fixed_ms:g}) must not exceed "
                             f"the one-item mean ({self.base_mean():g})")
        return self

    @property
    def deterministic(self) -> bool:
        spread = self.dist in ("normal", "lognormal") and self.cv > 0
        spread |= self.dist == "uniform" and self.low != self.high
        spread |= self.dist == "empirical" and len(set(self.samples or [])) > 1
        spread |= self.dist == "exponential" and bool(self.mean)
        return not spread

    def base_mean(self) -> float:
        """Expected duration before pattern and drift."""
        if self.dist == "uniform":
            return (float(self.low or 0) + float(self.high or 0)) / 2
        if self.dist == "empirical":
            return float(np.mean(self.samples or [0.0]))
        return float(self.mean or 0.0)

    def batch_scale(self, items: int) -> float:
        """cost(B) / cost(1) for a call over ``items`` items (1.0 for one item)."""
        if items <= 1:
            return 1.0
        if self.batch == "roofline":
            return max(1.0, items / self.batch_knee)
        mean = self.base_mean()
        if mean <= 0:
            return float(items)
        fixed = self.batch_fixed_ms
        return (fixed + (mean - fixed) * items) / mean

    def expected(self) -> CostSpec:
        """This spec with every draw at its mean (pattern kept, drift dropped): what the
        analytic bound prices a stochastic cost model with."""
        return self.model_copy(update={"dist": "constant", "mean": self.base_mean(),
                                       "cv": 0.0, "samples": None, "low": None,
                                       "high": None, "drift_ms": 0.0})

    def mean_at(self, chunk: int) -> float:
        """Expected duration of one call for ``chunk`` (pattern and drift applied)."""
        scale = self.pattern[chunk % len(self.pattern)] if self.pattern else 1.0
        return max(0.0, self.base_mean() * scale + self.drift_ms * chunk)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Sample base durations (before pattern/drift) of the given shape."""
        m = self.base_mean()
        if self.dist == "normal":
            return np.clip(rng.normal(m, self.cv * m, shape), 0.0, None)
        if self.dist == "lognormal" and m > 0 and self.cv > 0:
            sigma2 = np.log1p(self.cv**2)
            return rng.lognormal(np.log(m) - sigma2 / 2, np.sqrt(sigma2), shape)
        if self.dist == "uniform":
            return rng.uniform(float(self.low or 0.0), float(self.high or 0.0), shape)
        if self.dist == "empirical":
            return rng.choice(np.asarray(self.samples, dtype=float), shape)
        if self.dist == "exponential" and m > 0:
            return rng.exponential(m, shape)
        return np.full(shape, m)


#: chunks of one phase's draws sampled at a time (a run never holds its whole table)
BLOCK_CHUNKS = 4096
#: blocks of a session kept after newer ones are drawn (a schedule asks for chunks a few
#: blocks back at most; an older one is drawn again from the start of its stream)
KEEP_BLOCKS = 2


class _PhaseDraws:
    """One phase's durations, drawn block by block from one generator per session.

    Invariant: chunk k of session s gets the same values whatever the block size and
    in whatever order blocks are asked for: session s's stream is drawn in chunk order,
    ``steps`` values per chunk, exactly as one ``draw(rng, (chunks, steps))`` call would
    (numpy's samplers consume their bit generator value by value, checked by
    ``tests/sim/scenario/test_cost_blocks.py``). Session 0's stream is the run's one
    stream of the phase (``SeedSequence([seed, phase])``); session s > 0 has its own
    (``[seed, phase, s]``), so no session's draws depend on the run's length.
    """

    __slots__ = ("block", "blocks", "chunks", "idx", "keep", "lock", "next", "rngs", "seed",
                 "spec")

    def __init__(self, spec: CostSpec, idx: int, seed: int, chunks: int, block: int,
                 keep: int = KEEP_BLOCKS) -> None:
        self.spec, self.idx, self.seed = spec, idx, seed
        self.chunks, self.block, self.keep = chunks, max(1, block), keep
        self.rngs: dict[int, np.random.Generator] = {}
        self.next: dict[int, int] = {}
        self.blocks: dict[tuple[int, int], np.ndarray] = {}
        self.lock = threading.Lock()  # executors price work from several stage threads

    def _restart(self, session: int) -> None:
        key = [self.seed, self.idx] if session == 0 else [self.seed, self.idx, session]
        self.rngs[session] = np.random.default_rng(np.random.SeedSequence(key))
        self.next[session] = 0
        for b in [k for k in self.blocks if k[0] == session]:
            del self.blocks[b]

    def get_block(self, session: int, b: int) -> np.ndarray:
        """Block ``b`` of ``session``: (chunks in it, steps) durations, pattern and
        drift applied, clipped at 0."""
        got = self.blocks.get((session, b))
        if got is not None:
            return got
        with self.lock:
            if session not in self.rngs or b < self.next[session] - self.keep:
                self._restart(session)
            while (session, b) not in self.blocks:
                self._draw_next(session)
            return self.blocks[(session, b)]

    def _draw_next(self, session: int) -> None:
        n = self.next[session]
        lo = n * self.block
        hi = max(lo + 1, min(lo + self.block, self.chunks))
        spec = self.spec
        vals = spec.draw(self.rngs[session], (hi - lo, spec.steps))
        k = np.arange(lo, hi)
        if spec.pattern:
            vals *= np.asarray(spec.pattern, dtype=float)[k % len(spec.pattern)][:, None]
        if spec.drift_ms:
            vals += spec.drift_ms * k.astype(float)[:, None]
        self.blocks[(session, n)] = np.clip(vals, 0.0, None, out=vals)
        self.next[session] = n + 1
        self.blocks.pop((session, n - self.keep - 1), None)


class CostTable:
    """Sampled durations: ``table.get(phase, session, chunk, step)`` in ms.

    Invariant: values are a pure function of (spec, seed, phase, session, chunk, step),
    whatever the run's length or the block size. They are drawn in blocks of ``block``
    chunks as the run asks for them (:class:`_PhaseDraws`), so a run of any length holds
    a few blocks per phase and session, never its whole table.
    """

    def __init__(self, costs: dict[str, CostSpec], sessions: int, chunks: int, seed: int,
                 block: int = BLOCK_CHUNKS, keep: int = KEEP_BLOCKS) -> None:
        self._specs = dict(costs)
        self.sessions, self.chunks = sessions, chunks
        self._draws: dict[str, _PhaseDraws] = {}
        for idx, phase in enumerate(PHASES):
            spec = costs.get(phase)
            if spec is not None:
                self._draws[phase] = _PhaseDraws(spec, idx, seed, chunks, block, keep)

    def has(self, phase: str) -> bool:
        return phase in self._draws

    def duration(self, action: Any) -> float:
        """Duration of a ``Compute`` action: the single place both backends price work.

        A batched call of B items costs ``batch_scale(B)`` times the mean of its items'
        one-item costs; ``share`` (a stage's slice of the model) multiplies the result.
        """
        items = getattr(action, "items", None) or (action.tag,)
        share = float(getattr(action, "share", 1.0))
        one = [self.get(action.phase, t.session, t.chunk, t.step) for t in items]
        if len(one) == 1:
            return share * one[0]
        scale = self._specs[action.phase].batch_scale(len(one))
        return share * scale * (sum(one) / len(one))

    def get(self, phase: str, session: int, chunk: int, step: int = 0) -> float:
        if not 0 <= session < self.sessions or not 0 <= chunk < self.chunks:
            raise IndexError(f"{phase}: no draw for session {session}, chunk {chunk} "
                             f"({self.sessions} sessions x {self.chunks} chunks)")
        d = self._draws[phase]
        block = d.get_block(session, chunk // d.block)
        return float(block[chunk % d.block, max(step, 0) % block.shape[1]])

    def values(self, phase: str, session: int, lo: int, hi: int) -> np.ndarray:
        """Durations of chunks ``lo..hi-1`` of ``session``: an array (hi - lo, steps)."""
        d = self._draws[phase]
        parts = []
        for b in range(lo // d.block, (hi - 1) // d.block + 1):
            arr = d.get_block(session, b)
            base = b * d.block
            parts.append(arr[max(lo - base, 0):min(hi - base, len(arr))])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
