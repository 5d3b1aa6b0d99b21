"""Metrics of a batch of fast-path runs, fed block by block (one session each).

Each timed block (:class:`~pipefill.sim.fast.rounds.Timed`) adds its spans, emits,
inputs and queue changes. What a metric needs is final only once no later node can
change it: an emit at ``x`` is fed to its configuration's
:class:`~pipefill.traces.window.WindowStats` once every track has a node ending at or
after ``x`` (no later node can start before it: the *horizon*), and a chunk's busy
time, input and mesh span once every later node is of a higher chunk (the block's
``floor``). Chunks are kept in a window of rows (chunk - ``base``) until then, emits
until their chunk is final. The result equals
:func:`pipefill.traces.metrics.compute_metrics` on the same run's trace.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipefill.sim.fast.counters import QueueBook
from pipefill.sim.fast.plan import Plan
from pipefill.sim.fast.rounds import Timed
from pipefill.sim.fast.spans import StageSpans
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.window import Anchor, Fixed, WindowStats

_NAN = np.nan
EMIT, INPUT, HARD_CUT, DROP = 0, 1, 2, 3  # plan.MARK_NAMES


class Column:
    """One configuration's own state: its window, queues and what its chunk stream
    has reached (``fed``: emits fed, ``done``: chunk records fed)."""

    def __init__(self, sc: Scenario, plan: Plan) -> None:
        wu = sc.run.warmup
        self.sc = sc
        self.stats = WindowStats(None if wu == "auto" else int(wu))
        self.queues = QueueBook(plan.counts.names, plan.counts.dst)
        self.fed = 0
        self.done = 0
        self.prev_mesh_end = _NAN
        self.first_input = np.inf
        # the last chunk's input (a realtime source's is known ahead) and the start of its
        # first compute: the later of the two is when the last input entered (cool-down);
        # one not seen yet is later than every emit fed so far
        self.last_input = np.inf if sc.run.source == "saturated" else \
            sc.run.input_time_ms(sc.run.chunks - 1)
        self.last_start = np.inf
        self.misses = 0
        self.stop: int | None = None  # emits after which the run was stopped


class BatchFeed:
    """Per-block bookkeeping for configurations ``scenarios`` of one plan; ``work``:
    the whole run's size in node times (from which queue scans are compiled)."""

    def __init__(self, plan: Plan, scenarios: Sequence[Scenario], work: int = 0) -> None:
        self.plan = plan
        self.work = work
        self.cols = [Column(sc, plan) for sc in scenarios]
        width = len(self.cols)
        st = plan.stages
        self.fam0 = np.array([s == "stage0" or s.startswith("stage0.") for s in st] + [False])
        self.fam1 = np.array([s == "stage1" or s.startswith("stage1.") for s in st] + [False])
        self.exact1 = np.array([s == "stage1" for s in st] + [False])
        self.spans = [StageSpans(width) for _ in st]
        self.track_end = np.full((len(plan.tracks), width), -np.inf)
        self.source = [i for i, t in enumerate(plan.tracks) if t == "source"]
        # chunk rows: input time, busy0, busy1, mesh start, mesh end
        self.base = 0
        self.rows = np.zeros((5, 0, width))
        # emits not yet fed to every column's chunk stream
        self.emit_t = np.zeros((0, width))
        self.emit_c = np.zeros(0, dtype=np.int64)
        self.emit_base = 0
        self.run1 = np.full(width, -np.inf)
        self.floor = 0
        self.hard_cuts = self.drops = 0

    @property
    def width(self) -> int:
        return len(self.cols)

    def keep(self, cols: np.ndarray) -> None:
        self.cols = [self.cols[i] for i in cols]
        for sp in self.spans:
            sp.keep(cols)
        self.track_end = self.track_end[:, cols]
        self.rows = self.rows[:, :, cols]
        self.emit_t = self.emit_t[:, cols]
        self.run1 = self.run1[cols]

    # -- one block -----------------------------------------------------------------
    def add(self, timed: Timed) -> np.ndarray:
        """Take a timed block; the horizon per configuration (inf after the last)."""
        b = timed.block
        for ti in np.unique(b.track_ix):
            last = np.flatnonzero(b.track_ix == ti)[-1]
            self.track_end[ti] = timed.end[last]
        for s, sp in enumerate(self.spans):
            sel = (b.stage_ix == s) & (b.kind == 1)
            sp.add(timed.start[sel], timed.end[sel])
        self._chunks(timed)
        self._marks(timed)
        self._counts(timed)
        tracks = [i for i in range(len(self.track_end)) if i not in self.source]
        horizon = self.track_end[tracks].min(axis=0) if tracks else \
            np.full(self.width, np.inf)
        if b.last:
            horizon = np.full(self.width, np.inf)
        self.floor = b.floor if not b.last else np.iinfo(np.int64).max
        return horizon

    def _grow(self, top: int) -> None:
        need = top - self.base + 1
        if need > self.rows.shape[1]:
            extra = np.zeros((5, need - self.rows.shape[1], self.width))
            extra[[0, 3, 4]] = _NAN
            self.rows = np.concatenate([self.rows, extra], axis=1)

    def _chunks(self, timed: Timed) -> None:
        b = timed.block
        count = b.item_ptr[1:] - b.item_ptr[:-1]
        nodes = np.repeat(np.arange(len(b)), count)
        chunk = b.item_chunk
        ok = (chunk >= 0) & (b.kind[nodes] == 1)
        if not ok.any():
            return
        nodes, chunk = nodes[ok], chunk[ok]
        self._last_starts(timed, nodes, chunk)
        self._grow(int(chunk.max()))
        row = chunk - self.base
        share = (timed.end[nodes] - timed.start[nodes]) / count[nodes][:, None]
        stage = b.stage_ix[nodes]
        for fam, r in ((self.fam0, 1), (self.fam1, 2)):
            sel = fam[stage]
            np.add.at(self.rows[r], row[sel], share[sel])
        sel = self.exact1[stage]
        np.fmin.at(self.rows[3], row[sel], timed.start[nodes[sel]])
        np.fmax.at(self.rows[4], row[sel], timed.end[nodes[sel]])

    def _last_starts(self, timed: Timed, nodes: np.ndarray, chunk: np.ndarray) -> None:
        last = np.flatnonzero(chunk == self.cols[0].sc.run.chunks - 1)
        if len(last):
            first = timed.start[nodes[last]].min(axis=0)
            for j, col in enumerate(self.cols):
                col.last_start = min(col.last_start, float(first[j]))

    def _marks(self, timed: Timed) -> None:
        b = timed.block
        mine = b.mark_session == 0
        inp = np.flatnonzero(mine & (b.mark_name == INPUT))
        if len(inp):
            t = timed.at(b.mark_node[inp])
            chunk = b.mark_chunk[inp]
            self._grow(int(chunk.max()))
            ok = chunk >= 0
            np.fmin.at(self.rows[0], chunk[ok] - self.base, t[ok])
            low = t.min(axis=0)
            last = np.flatnonzero(chunk == self.cols[0].sc.run.chunks - 1)
            for j, col in enumerate(self.cols):
                col.first_input = min(col.first_input, float(low[j]))
                if len(last) and col.sc.run.source == "saturated":
                    col.last_input = min(col.last_input, float(t[last[0], j]))
        self.hard_cuts += int((b.mark_name == HARD_CUT).sum())
        self.drops += int((mine & (b.mark_name == DROP)).sum())
        em = np.flatnonzero(mine & (b.mark_name == EMIT))
        if len(em):
            self.emit_t = np.concatenate([self.emit_t, timed.at(b.mark_node[em])])
            self.emit_c = np.r_[self.emit_c, b.mark_chunk[em]]

    def _counts(self, timed: Timed) -> None:
        b = timed.block
        if not len(b.count_node):
            return
        t = timed.at(b.count_node)
        work = max(len(b.count_node) * self.width, self.work)
        for j, col in enumerate(self.cols):
            col.queues.add(t[:, j], b.count_queue, b.count_held.astype(float),
                           b.count_nbytes.astype(float), work)

    # -- feeding the windows ---------------------------------------------------------
    def anchors(self, j: int, xs: np.ndarray) -> list[Anchor]:
        """Anchors of column ``j`` at instants ``xs`` (settled ones)."""
        busy = [sp.busy_at(j, xs) for sp in self.spans]
        col = self.cols[j]
        out = []
        for i, x in enumerate(xs.tolist()):
            out.append(Anchor(x, {st: Fixed(float(busy[s][i]))
                                  for s, st in enumerate(self.plan.stages)},
                              col.queues.integrals_at(x)))
        return out

    def feed(self, j: int, upto: float, limit: int | None = None) -> int:
        """Feed column ``j``'s emits at or before ``upto`` (at most up to emit
        ``limit``); returns how many it has been fed."""
        col = self.cols[j]
        i0 = col.fed - self.emit_base
        t = self.emit_t[i0:, j]
        n = int(np.searchsorted(t, upto, side="right"))
        if limit is not None:
            n = min(n, limit - col.fed)
        if n <= 0:
            return col.fed
        t, c = t[:n], self.emit_c[i0:i0 + n]
        cool = t > max(col.last_input, col.last_start)
        col.stats.emit_block(t, c, cool, lambda idx: self.anchors(j, t[idx]))
        if col.sc.run.target_fps is not None:
            dl = col.sc.run.frames_per_chunk * 1000.0 / col.sc.run.target_fps
            pos = np.arange(col.fed, col.fed + n)
            col.misses += int((t > col.stats.t_first + pos * dl + 1e-9).sum())
        col.fed += n
        self.run1[j] = t[-1]  # the latest emit fed (no anchor will be asked before it)
        return col.fed

    def chunks(self, j: int, force: bool = False) -> None:
        """Feed column ``j``'s chunk stream as far as its chunks are final (all fed
        emits' chunks when ``force``: a run stopped early counts the work done)."""
        col = self.cols[j]
        i0, i1 = col.done - self.emit_base, col.fed - self.emit_base
        c = self.emit_c[i0:i1]
        if not force:
            late = np.flatnonzero(c >= self.floor)
            c = c[:late[0]] if len(late) else c
        if not len(c):
            return
        t = self.emit_t[i0:i0 + len(c), j]
        r = self.rows[:, c - self.base, j]
        prev = np.r_[col.prev_mesh_end, r[4][:-1]]
        mesh = np.where(np.isnan(r[3]) | np.isnan(prev), _NAN,
                        np.maximum(0.0, r[3] - prev))
        col.prev_mesh_end = float(r[4][-1])
        col.stats.chunk_block(np.stack([r[1], r[2], t - r[0], mesh], axis=1))
        col.done += len(c)

    def forget(self) -> None:
        """Drop what every column is done with: fed chunk records' emits, chunks below
        every column's next one, spans before every column's last fed emit."""
        done = min(col.done for col in self.cols)
        cut = done - self.emit_base
        if cut > 0:
            self.emit_t, self.emit_c = self.emit_t[cut:], self.emit_c[cut:]
            self.emit_base = done
        low = min([int(self.emit_c.min())] if len(self.emit_c) else [self.floor])
        low = min(low, self.floor)
        drop = min(low - self.base, self.rows.shape[1])
        if drop > 0:
            self.rows = self.rows[:, drop:]
            self.base += drop
        for sp in self.spans:
            sp.forget_before(self.run1)

    def settle(self, horizon: np.ndarray) -> None:
        for j, col in enumerate(self.cols):
            col.queues.settle(float(horizon[j]))

