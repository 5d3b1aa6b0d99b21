"""Sweeps on Dask distributed: a LocalCluster of 2 worker processes (as CI runs it), an
existing scheduler by address, a worker killed mid-sweep, Ctrl-C and --resume."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import pipefill.cli.longrun as longrun
from pipefill.cli import app
from pipefill.sim.errors import ScenarioError
from pipefill.sim.scenario.load import load_raw
from pipefill.sim.sweep.executors import DaskExecutor, ExecSpec
from pipefill.sim.sweep.grid import Axis, execute_sweep, plan_points, run_sweep
from pipefill.sim.sweep.store import KEY, ResultStore, parts_dir_of
from tests.helpers.sweepbar import BarThatInterrupts

distributed = pytest.importorskip("distributed")

runner = CliRunner()
RAW, NAME = load_raw(None)
BASE = ["run.chunks=20", "run.warmup=4"]
AXES = [Axis("policy.d_in", (1, 2, 3)), Axis("policy.d_out", (1, 2))]
GRID = ["--set", "run.chunks=20", "--set", "run.warmup=4",
        "--grid", "policy.d_in=1,2,3", "--grid", "policy.d_out=1,2"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two single-threaded worker processes (with nannies, which restart a killed one)."""
    lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        yield lc
    finally:
        lc.close(timeout=30)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return run_sweep(RAW, BASE, AXES, name=NAME)


@contextlib.contextmanager
def executor_at(address: str) -> Iterator[DaskExecutor]:
    ex = DaskExecutor(ExecSpec(scheduler=address, workers=2))
    try:
        yield ex
    finally:
        ex.close()


def test_a_scheduler_address_gives_the_local_table(cluster, reference):
    points = plan_points(RAW, BASE, AXES, NAME)
    with executor_at(cluster.scheduler_address) as ex:
        outcome = execute_sweep(points, [a.field for a in AXES], ex, per_task=2, workers=2)
    assert outcome.where == f"Dask scheduler {cluster.scheduler_address}"
    pd.testing.assert_frame_equal(outcome.table, reference)


class CountingStore(ResultStore):
    """Counts every row handed to the store (a duplicate would count twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.added: collections.Counter[str] = collections.Counter()

    def add(self, rows: Sequence[dict[str, Any]], axes: Sequence[str]) -> None:
        self.added.update(r[KEY] for r in rows)
        super().add(rows, axes)


def test_a_worker_killed_mid_sweep_loses_and_duplicates_no_point(cluster):
    axes = [Axis("policy.d_in", (1, 2, 3, 4)), Axis("policy.d_out", (1, 2))]
    points = plan_points(RAW, ["run.chunks=120"], axes, NAME)
    killed: list[tuple[str, int, list[str]]] = []
    with executor_at(cluster.scheduler_address) as ex:

        def kill_a_busy_worker(done: int, total: int) -> None:
            if killed or done == 0:
                return
            pids = ex.client.run(os.getpid)
            busy = {w: ks for w, ks in ex.client.processing().items() if ks}
            if busy:  # the other worker may be idle between tasks: kill one that is not
                worker, keys = next(iter(busy.items()))
                os.kill(pids[worker], signal.SIGKILL)
                killed.append((worker, pids[worker], list(keys)))

        store = CountingStore()
        table = execute_sweep(points, [a.field for a in axes], ex, store, per_task=2,
                              workers=2, progress=kill_a_busy_worker).table
    assert killed and killed[0][2], "no worker was busy when the first task finished"
    assert sorted(store.added) == sorted(p.key for p in points)
    assert set(store.added.values()) == {1}
    assert table[KEY].tolist() == [p.key for p in points]
    assert table["error"].isna().all() and table["period_ms"].notna().all()
    serial = run_sweep(RAW, ["run.chunks=120"], axes, name=NAME)
    pd.testing.assert_frame_equal(table, serial)


def test_cli_on_a_cluster_interrupted_then_resumed_equals_local_run(tmp_path, monkeypatch,
                                                                   cluster, reference):
    out = tmp_path / "sw.parquet"
    address = cluster.scheduler_address
    args = ["sweep", *GRID, "--out", str(out), "--scheduler", address, "--points-per-task", "2"]
    with monkeypatch.context() as m:
        m.setattr(longrun, "SweepBar", BarThatInterrupts)
        res = runner.invoke(app, args)
    assert res.exit_code == 130
    assert res.stderr.strip() == (
        f"interrupted: 2 of 6 points finished, kept in {out} (--resume runs the rest)")
    res = runner.invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert f"sweep: 6 points (4 run, 2 resumed, 0 with errors) on Dask scheduler {address}" \
        in res.stderr
    assert not parts_dir_of(out).exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out), reference)


def test_real_sigint_stops_a_local_cluster_sweep_and_keeps_finished_tasks(tmp_path):
    out = tmp_path / "sw.parquet"
    cmd = [sys.executable, "-m", "pipefill.cli", "sweep", "--set", "run.chunks=120",
           "--grid", "policy.d_in=1,2,3,4", "--grid", "policy.d_out=1,2",
           "--grid", "run.seed=0,1,2,3", "--points-per-task", "1", "--out", str(out),
           "--scheduler", "local", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = parts_dir_of(out)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(parts.glob("part-*.parquet"))) < 2:
            assert proc.poll() is None, proc.communicate(timeout=30)
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # no-op when it has exited
    kept = len(list(parts.glob("part-*.parquet")))
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"interrupted: {kept} of 32 points finished, kept in {out} (--resume runs the rest)")
    assert 2 <= kept < 32 and len(pd.read_parquet(out)) == kept


def test_workers_running_another_engine_are_refused(cluster, monkeypatch):
    monkeypatch.setattr("pipefill.sim.sweep.executors.engine_version", lambda: "0.1.0+client")
    with pytest.raises(ScenarioError, match=r"--scheduler: workers at .* run pipefill engine "
                       r"0\.1\.0\+\w{12}, this process 0\.1\.0\+client"):
        DaskExecutor(ExecSpec(scheduler=cluster.scheduler_address))
