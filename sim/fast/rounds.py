"""Re-time a fixed-order run block by block for a batch of configurations.

:class:`Timing` prices each node of a :class:`~pipefill.sim.fast.blocks.Block` for every
configuration (the same ``CostTable`` draws and float operations as the SimPy engine:
a batched call costs ``share * batch_scale(B) * mean of its items``, a send
``latency + bytes / bandwidth``, a realtime input its arrival time, a compute its
stage's dispatch gap on top) and evaluates the max-plus recurrence over the block,
columns side by side. Only the last ``reach`` nodes' end times carry over between
blocks, and costs are drawn in blocks of chunks as the run reaches them, so a run of any
length holds a few blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipefill.sim.fast.blocks import Block
from pipefill.sim.fast.kernels import compiled, recurrence
from pipefill.sim.scenario.costs import PHASES, CostTable
from pipefill.sim.scenario.model import Scenario

#: chunks of costs drawn at a time per configuration on the fast path
COST_BLOCK = 512


@dataclass(frozen=True)
class Timed:
    """A timed block: ``start``/``end`` of its nodes (nodes, configurations) and ``ends``,
    the end times of nodes ``base ..`` (earlier blocks' last ones included)."""

    block: Block
    start: np.ndarray
    end: np.ndarray
    ends: np.ndarray
    base: int

    def at(self, nodes: np.ndarray) -> np.ndarray:
        """End times of absolute ``nodes`` (-1: the origin, time 0), (len, configurations)."""
        out = self.ends[np.maximum(nodes - self.base, 0)]
        out[nodes < 0] = 0.0
        return out


class Timing:
    """Start and end times of a run's nodes, block after block, for configurations
    ``scenarios`` (one structure; a column each). ``stages``: the plan's compute stages
    (for dispatch gaps); ``reach``: how far back any node refers; ``work``: node times of
    the whole run (from how many on numba compiles the recurrence)."""

    def __init__(self, scenarios: Sequence[Scenario], stages: Sequence[str], reach: int,
                 work: int = 0) -> None:
        self.scs = list(scenarios)
        #: node times the whole run computes (compiled kernels pay from a size on)
        self.work = work
        run = self.scs[0].run
        self.tables = [CostTable(sc.costs, run.sessions, sc.run.chunks, sc.run.seed,
                                 block=COST_BLOCK, keep=1) for sc in self.scs]
        gaps = np.array([[sc.dispatch_ms(st) for st in stages] + [0.0] for sc in self.scs])
        self.gaps = gaps.T  # (stages + 1, B): row -1 is 0 for nodes of no stage
        self.has_gaps = bool(gaps.any())
        self.reach = reach
        self.carry = np.zeros((0, len(self.scs)))
        self.carry_n0 = 0

    @property
    def width(self) -> int:
        return len(self.scs)

    def keep(self, cols: np.ndarray) -> None:
        """Go on with only these configurations (columns)."""
        self.scs = [self.scs[i] for i in cols]
        self.tables = [self.tables[i] for i in cols]
        self.gaps = self.gaps[:, cols]
        self.carry = self.carry[:, cols]

    def time(self, block: Block) -> Timed:
        """Start and end of the block's nodes (a compute's start is its span's, after the
        dispatch gap) and the end of every node it or its marks may refer to."""
        dur = self.durations(block)
        k = len(self.carry)
        n = len(block)
        end = np.empty((k + n, self.width))
        start = np.empty_like(end)
        end[:k] = self.carry
        base = block.n0 - k
        preds = np.where(block.preds >= 0, block.preds - base, -1)
        if (preds[preds >= 0] < 0).any():
            raise RuntimeError("fast path: a node refers further back than the carried ends")
        full = np.concatenate([np.zeros((k, self.width)), dur])
        kernel = compiled(recurrence, max(n * self.width, self.work))
        kernel(np.concatenate([np.full((k, 2), -1), preds]), full, start, end, k)
        keep = min(self.reach, k + n)
        self.carry = end[k + n - keep:].copy()
        self.carry_n0 = block.n0 + n - keep
        s = start[k:]
        if self.has_gaps:
            s = s + self.gaps[block.stage_ix]
        return Timed(block, s, end[k:], end, base)

    def durations(self, block: Block) -> np.ndarray:
        n = len(block)
        dur = np.zeros((n, self.width))
        send = block.kind == 2
        if send.any():
            lat = np.array([sc.transport.latency_ms for sc in self.scs])
            bw = np.array([sc.transport.bandwidth_gbps for sc in self.scs])
            dur[send] = lat[None, :] + block.nbytes[send][:, None] / (bw[None, :] * 1e6)
        inp = np.flatnonzero(block.kind == 3)
        for i in inp:
            dur[i] = [sc.run.input_time_ms(int(block.node_chunk[i])) for sc in self.scs]
        self._computes(block, dur)
        if self.has_gaps:
            dur += self.gaps[block.stage_ix]
        return dur

    def _computes(self, block: Block, dur: np.ndarray) -> None:
        ptr = block.item_ptr
        count = ptr[1:] - ptr[:-1]
        for idx, name in enumerate(PHASES):
            nodes = np.flatnonzero(block.phase == idx)
            if not len(nodes) or not self.tables[0].has(name):
                continue
            for n_items in np.unique(count[nodes]):
                sel = nodes[count[nodes] == n_items]
                dur[sel] = self._group(block, name, sel, int(n_items))

    def _group(self, block: Block, phase: str, nodes: np.ndarray, n_items: int) -> np.ndarray:
        """(nodes, B) durations of compute nodes of one phase with ``n_items`` items each,
        summed in item order as ``CostTable.duration`` does."""
        first = block.item_ptr[nodes]
        acc = np.zeros((len(nodes), self.width))
        for j in range(n_items):
            sess, chunk, step = (block.item_session[first + j], block.item_chunk[first + j],
                                 block.item_step[first + j])
            acc = acc + self._values(phase, sess, chunk, step)
        share = block.share[nodes][:, None]
        if n_items == 1:
            return share * acc
        scale = np.array([sc.costs[phase].batch_scale(n_items) for sc in self.scs])
        return share * scale[None, :] * (acc / n_items)

    def _values(self, phase: str, sess: np.ndarray, chunk: np.ndarray,
                step: np.ndarray) -> np.ndarray:
        out = np.empty((len(chunk), self.width))
        for s in np.unique(sess):
            rows = np.flatnonzero(sess == s)
            lo, hi = int(chunk[rows].min()), int(chunk[rows].max()) + 1
            for col, table in enumerate(self.tables):
                arr = table.values(phase, int(s), lo, hi)
                out[rows, col] = arr[chunk[rows] - lo, step[rows] % arr.shape[1]]
        return out
