"""Streamed, resumable sweeps on this machine: point keys, parts on disk, Ctrl-C, --resume."""

from __future__ import annotations

import contextlib
import functools
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import pipefill.cli.longrun as longrun
from pipefill.cli import app
from pipefill.sim.errors import ScenarioError, StallError
from pipefill.sim.scenario.load import build_scenario, load_raw
from pipefill.sim.sweep import grid as sweep_mod
from pipefill.sim.sweep.executors import (
    ExecSpec,
    PoolExecutor,
    SerialExecutor,
    chunked,
    make_executor,
    scheduler_kind,
    task_size,
)
from pipefill.sim.sweep.grid import (
    Axis,
    SweepInterrupted,
    execute_sweep,
    plan_points,
    plan_tasks,
    run_sweep,
)
from pipefill.sim.sweep.store import KEY, open_store, parts_dir_of, point_key, read_part
from pipefill.traces.io import read_table
from tests.helpers.sweepbar import BarThatInterrupts

runner = CliRunner()
RAW, NAME = load_raw(None)
BASE = ["run.chunks=20", "run.warmup=4"]
AXES = [Axis("policy.d_in", (1, 2, 3)), Axis("policy.d_out", (1, 2))]
FIELDS = [a.field for a in AXES]
GRID = ["--set", "run.chunks=20", "--set", "run.warmup=4",
        "--grid", "policy.d_in=1,2,3", "--grid", "policy.d_out=1,2"]


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """The whole grid run in memory, in this process."""
    return reference_table()


def test_key_is_the_resolved_scenario_not_its_spelling():
    explicit = build_scenario({**RAW, "name": "other"}, name="x")
    assert point_key(explicit) == point_key(build_scenario(RAW, name=NAME))
    by_default = dict(RAW, policy={k: v for k, v in RAW["policy"].items() if k != "d_in"})
    assert point_key(build_scenario(by_default)) == point_key(explicit)  # d_in=2 is the default
    changed = dict(RAW, policy={**RAW["policy"], "d_in": 3})
    assert point_key(build_scenario(changed)) != point_key(explicit)


def test_points_that_resolve_alike_run_once():
    points = plan_points(RAW, BASE, [Axis("policy.d_in", (2, 2.0, 3))], NAME)
    assert points[0].key == points[1].key != points[2].key
    out = execute_sweep(points, ["policy.d_in"], SerialExecutor())
    assert (out.ran, out.reused) == (2, 0)
    assert out.table["policy.d_in"].tolist() == [2, 2.0, 3]
    assert out.table["period_ms"].iloc[0] == out.table["period_ms"].iloc[1]


def test_task_sizes_and_chunks():
    assert task_size(768, 2) == 48 and task_size(10_000, 2) == 64 and task_size(3, 4) == 1
    assert task_size(768, 2, per_task=5) == 5
    assert chunked(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_tasks_start_the_simpy_points_heaviest_first_then_one_per_fast_structure():
    # default scenario (r0a, producer_first): lag < d_in is fixed-order (fast path);
    # lag >= d_in with d_out >= 2 is a greedy choice (SimPy)
    axes = [Axis("policy.d_in", (1, 2)), Axis("policy.recompute_lag", (0, 1)),
            Axis("run.chunks", (20, 30))]
    points = plan_points(RAW, ["run.warmup=4"], axes, NAME)
    cells = {i: (p.axes["policy.d_in"], p.axes["policy.recompute_lag"],
                 p.axes["run.chunks"]) for i, p in enumerate(points)}
    tasks = plan_tasks(points, workers=1)
    got = [[cells[points.index(p)] for p in t] for t in tasks]
    # SimPy: only (d_in 1, lag 1), 30 chunks before 20; task_size(2, 1) = 1 point a task
    assert got[:2] == [[(1, 1, 30)], [(1, 1, 20)]]
    # then one task per structure (the chunk count is part of it), in grid order
    assert got[2:] == [[(1, 0, 20)], [(1, 0, 30)], [(2, 0, 20)], [(2, 0, 30)],
                       [(2, 1, 20)], [(2, 1, 30)]]
    assert [p.group is None for p in points] == [c[:2] == (1, 1) for c in cells.values()]
    assert plan_tasks(points, workers=1, per_task=3) == chunked(points, 3)  # as given


def test_a_fast_structure_is_one_task_whatever_its_cost_values():
    points = plan_points(RAW, ["run.chunks=20", "run.warmup=4"],
                         [Axis("costs.denoise.mean", (40, 50, 60))], NAME)
    assert [len(t) for t in plan_tasks(points, workers=2)] == [3]


@pytest.mark.parametrize(("spec", "kind"), [(None, "pool"), ("local", "local"),
                                            ("tcp://10.0.0.1:8786", "address")])
def test_scheduler_kinds(spec, kind):
    assert scheduler_kind(spec) == kind


def test_bad_scheduler_is_an_input_error():
    with pytest.raises(ScenarioError, match="--scheduler"):
        scheduler_kind("10.0.0.1:8786")


def test_a_point_that_raises_is_a_row_with_its_error(monkeypatch):
    real = sweep_mod.metrics_batch  # how a task evaluates its points (either engine)

    def stall_at_d_in_3(scs, engine, precision=None):
        if any(sc.policy.d_in == 3 for sc in scs):
            raise StallError("stage1 blocked at 'get q_in'")
        return real(scs, engine, precision)

    monkeypatch.setattr(sweep_mod, "metrics_batch", stall_at_d_in_3)
    table = run_sweep(RAW, BASE, AXES, name=NAME)
    bad = table["policy.d_in"] == 3
    assert table.loc[bad, "error"].tolist() == ["stage1 blocked at 'get q_in'"] * 2
    assert table.loc[bad, "period_ms"].isna().all()
    assert table.loc[~bad, "error"].isna().all() and table.loc[~bad, "period_ms"].notna().all()


class FailingTask(SerialExecutor):
    """Task 1 comes back as an exception (as a Dask KilledWorker would)."""

    def run(self, fn, tasks):
        for i, result in super().run(fn, tasks):
            yield i, RuntimeError("worker died 3 times") if i == 1 else result


def test_a_failed_task_gives_each_of_its_points_an_error_row(reference):
    points = plan_points(RAW, BASE, AXES, NAME)
    table = execute_sweep(points, FIELDS, FailingTask(), per_task=2).table
    assert table["error"].tolist() == [None, None, *["RuntimeError: worker died 3 times"] * 2,
                                       None, None]
    keep, cols = [0, 1, 4, 5], [*FIELDS, KEY, "period_ms", "fps", "overlap_score"]
    assert table.iloc[keep][cols].values.tolist() == reference.iloc[keep][cols].values.tolist()


def interrupt_after(tasks_done: int):
    """A progress callback that raises Ctrl-C once ``tasks_done`` tasks have reported."""
    calls = {"n": -1}  # the first call reports the resumed points, before any task

    def progress(done: int, total: int) -> None:
        calls["n"] += 1
        if calls["n"] == tasks_done:
            raise KeyboardInterrupt

    return progress


def test_interrupted_sweep_keeps_finished_tasks_and_resume_runs_the_rest(tmp_path, reference):
    out = tmp_path / "sw.parquet"
    points = plan_points(RAW, BASE, AXES, NAME)
    with pytest.raises(SweepInterrupted) as info:
        execute_sweep(points, FIELDS, SerialExecutor(), open_store(out, resume=False),
                      per_task=2, progress=interrupt_after(2))
    assert (len(info.value.table), info.value.total) == (4, 6)
    parts = sorted(parts_dir_of(out).glob("part-*.parquet"))
    assert len(parts) == 2
    rows, axes = read_part(parts[0])
    assert axes == FIELDS and len(rows) == 2 and all(r[KEY] for r in rows)
    with pytest.raises(ScenarioError, match="--resume"):
        open_store(out, resume=False)  # an earlier run's parts are never dropped silently
    seen: list[tuple[int, int]] = []
    outcome = execute_sweep(points, FIELDS, SerialExecutor(), open_store(out, resume=True),
                            per_task=2, progress=lambda d, t: seen.append((d, t)))
    assert (outcome.ran, outcome.reused) == (2, 4)
    assert seen == [(4, 6), (6, 6)]
    pd.testing.assert_frame_equal(outcome.table, reference)


def test_ctrl_c_between_a_part_write_and_its_rows_still_counts_the_part(tmp_path,
                                                                         monkeypatch):
    # the signal lands just after the second task's part is on disk: the interrupted
    # table (and the count the CLI prints) must hold what --resume will find there
    from pipefill.sim.sweep import store as sweep_store

    write, calls = sweep_store._write_part, []

    def write_then_interrupt(*args):
        path = write(*args)
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(sweep_store, "_write_part", write_then_interrupt)
    out = tmp_path / "sw.parquet"
    points = plan_points(RAW, BASE, AXES, NAME)
    with pytest.raises(SweepInterrupted) as info:
        execute_sweep(points, FIELDS, SerialExecutor(), open_store(out, resume=False),
                      per_task=2)
    assert len(list(parts_dir_of(out).glob("part-*.parquet"))) == 2
    assert (len(info.value.table), info.value.total) == (4, 6)


def test_pool_matches_serial_and_streams_one_part_per_task(tmp_path, reference):
    points = plan_points(RAW, BASE, AXES, NAME)
    store = open_store(tmp_path / "sw.csv", resume=False)
    pool = PoolExecutor(ExecSpec(workers=2))
    try:
        table = execute_sweep(points, FIELDS, pool, store, per_task=2, workers=2).table
    finally:
        pool.close()
    pd.testing.assert_frame_equal(table, reference)
    assert len(list(store.parts.glob("part-*.parquet"))) == 3  # type: ignore[union-attr]


def test_make_executor_picks_serial_or_pool():
    assert isinstance(make_executor(ExecSpec(workers=1)), SerialExecutor)
    pool = make_executor(ExecSpec(workers=2))
    pool.close()
    assert isinstance(pool, PoolExecutor)


def test_cli_ctrl_c_exits_130_with_one_line_then_resume_completes(tmp_path, monkeypatch,
                                                                 reference):
    out = tmp_path / "sw.parquet"
    args = ["sweep", *GRID, "--out", str(out), "--points-per-task", "4"]
    with monkeypatch.context() as m:
        m.setattr(longrun, "SweepBar", BarThatInterrupts)
        res = runner.invoke(app, args)
    assert res.exit_code == 130
    parts = parts_dir_of(out)
    assert res.stderr.strip().splitlines() == [
        f"interrupted: 4 of 6 points finished, kept in {out} (--resume runs the rest)"]
    partial, meta = read_table(out)
    assert meta["interrupted"] is True and len(partial) == 4
    assert len(list(parts.glob("part-*.parquet"))) == 1
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--resume" in res.stderr
    res = runner.invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert "sweep: 6 points (2 run, 4 resumed, 0 with errors) on this process" in res.stderr
    assert not parts.exists()
    table = pd.read_parquet(out)
    pd.testing.assert_frame_equal(table, reference)


def test_cli_resume_of_a_finished_table_runs_only_new_points(tmp_path):
    out = tmp_path / "sw.csv"
    assert runner.invoke(app, ["sweep", *GRID, "--out", str(out)]).exit_code == 0
    more = [*GRID[:-1], "policy.d_out=1,2,3"]
    res = runner.invoke(app, ["sweep", *more, "--out", str(out), "--resume", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 9 and len({r[KEY] for r in rows}) == 9
    res = runner.invoke(app, ["sweep", *more, "--out", str(out), "--resume"])
    assert "(0 run, 9 resumed" in res.stderr


@pytest.mark.parametrize(("args", "field"), [
    (["--resume"], "--resume"),
    (["--scheduler", "nowhere"], "--scheduler"),
    (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),
])
def test_cli_bad_sweep_options_exit_2_with_one_line(tmp_path, monkeypatch, args, field):
    monkeypatch.setattr("pipefill.sim.sweep.executors.CONNECT_TIMEOUT_S", 1.0)
    out = [] if args == ["--resume"] else ["--out", str(tmp_path / "t.parquet")]
    res = runner.invoke(app, ["sweep", *GRID, *out, *args])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}")
    assert list(Path(tmp_path).iterdir()) == []


class CountingSerial(SerialExecutor):
    """Counts every point evaluated."""

    def __init__(self) -> None:
        self.evaluated: list[str] = []

    def run(self, fn, tasks):
        for i, result in super().run(fn, tasks):
            self.evaluated += [p.key for p in tasks[i]]
            yield i, result


@settings(max_examples=15)
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       stops=st.lists(st.integers(0, 6), min_size=3, max_size=3))
def test_any_interrupts_then_resume_give_the_uninterrupted_table(sizes, stops):
    """Whatever the task sizes and wherever Ctrl-C lands (several times), the resumed run
    ends with the uninterrupted table, and no point is evaluated twice."""
    points = plan_points(RAW, BASE, AXES, NAME)
    executor = CountingSerial()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sw.parquet"
        for size, stop in zip(sizes, stops, strict=False):
            store = open_store(out, resume=True)
            with contextlib.suppress(SweepInterrupted):
                execute_sweep(points, FIELDS, executor, store, per_task=size,
                              progress=interrupt_after(stop))
        final = execute_sweep(points, FIELDS, executor, open_store(out, resume=True),
                              per_task=sizes[-1])
    assert sorted(executor.evaluated) == sorted(p.key for p in points)
    assert final.ran + final.reused == 6
    pd.testing.assert_frame_equal(final.table, reference_table())


@functools.cache
def reference_table() -> pd.DataFrame:
    """The whole grid run in memory, in this process (computed once)."""
    return run_sweep(RAW, BASE, AXES, name=NAME)


def test_cli_no_task_finishing_in_time_exits_3_with_what_is_kept(tmp_path):
    out = tmp_path / "sw.parquet"
    res = runner.invoke(app, ["sweep", *GRID, "--workers", "2", "--task-timeout", "0.001",
                              "--out", str(out)])
    assert res.exit_code == 3
    assert res.stderr.strip().splitlines() == [
        "error: sweep: no task finished in 0.001 s; 0 of 6 points kept in "
        f"{parts_dir_of(out)}"]
    assert not out.exists()
