"""One sweep from request to table: plan the points, run them where asked, stream the
finished tasks to the store, write the table. The CLI and the Python API both call it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipefill.sim.sweep.executors import ExecSpec, SweepTimeout, make_executor, scheduler_kind
from pipefill.sim.sweep.grid import (
    Axis,
    SweepInterrupted,
    SweepOutcome,
    SweepPoint,
    execute_sweep,
    plan_points,
    sweep_meta,
)
from pipefill.sim.sweep.store import ResultStore, open_store
from pipefill.traces.io import write_table


@dataclass(frozen=True)
class SweepRequest:
    """A whole sweep: the base scenario's ``raw`` tables and ``name``, the ``sets`` every
    point gets, the grid ``axes``, where tasks run (``spec``), the table file ``out``
    (finished tasks stream to ``OUT.parts/``), ``resume`` (keep the points already
    there), ``per_task`` (points per task; None: automatic), the ``engine`` and the
    ``precision`` each point runs to (relative half-width; None: ``run.chunks``)."""

    raw: dict[str, Any]
    name: str
    axes: list[Axis]
    sets: list[str] = field(default_factory=list)
    spec: ExecSpec = field(default_factory=ExecSpec)
    out: Path | None = None
    resume: bool = False
    per_task: int | None = None
    engine: str = "auto"
    precision: float | None = None


def run_sweep(req: SweepRequest,
              progress: Callable[[int, int], None] | None = None,
              cost_progress: Callable[[float, float], None] | None = None,
              planned: Callable[[list[SweepPoint], ResultStore], None] | None = None
              ) -> SweepOutcome:
    """Run ``req`` and write its table to ``req.out``. Ctrl-C raises
    :class:`SweepInterrupted` after writing the finished points to ``req.out`` (its
    ``kept_in``); no task finishing in time raises :class:`SweepTimeout` saying how many
    points were kept and where. Bad input fails before any point runs. ``planned`` hears
    the points and the store before the first task starts (to say how long it will take);
    ``progress`` and ``cost_progress`` as in :func:`execute_sweep`."""
    meta = sweep_meta(req.raw, req.name, req.sets, req.axes)
    points = plan_points(req.raw, req.sets, req.axes, req.name, req.engine, req.precision)
    scheduler_kind(req.spec.scheduler)  # a bad scheduler fails before anything starts
    store = open_store(req.out, req.resume)
    if planned is not None:
        planned(points, store)
    fields = [a.field for a in req.axes]
    executor = None
    try:
        executor = make_executor(req.spec)
        outcome = execute_sweep(points, fields, executor, store, req.per_task,
                                req.spec.workers, progress, cost_progress)
    except SweepInterrupted as stop:
        if req.out is not None and len(stop.table):
            write_table(stop.table, req.out, {**meta, "interrupted": True})
            stop.kept_in = req.out
        raise
    except SweepTimeout as exc:
        where = f" in {store.parts}" if store.parts else ""
        done = sum(p.key in store.rows for p in points)
        raise SweepTimeout(f"{exc}; {done} of {len(points)} points kept{where}") from None
    finally:
        if executor is not None:
            executor.close()
    if req.out is not None:
        write_table(outcome.table, req.out, meta)
        store.discard_parts()
    return outcome
