"""Where sweep tasks run: one executor interface over this process, a local process pool,
a Dask ``LocalCluster`` or an existing Dask cluster (``tcp://HOST:PORT``).

An executor takes a picklable, importable function and a list of tasks and yields
``(task index, result or exception)`` as tasks finish, in any order. Every wait for the
next finished task has a timeout (:class:`SweepTimeout`). A task that raises, or that
Dask gives up on after it killed workers, comes back as its exception: the caller turns it
into error rows. A Dask worker lost mid-task has that task rescheduled on another worker
by the Dask scheduler; the result still arrives exactly once.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipefill.sim.errors import ScenarioError
from pipefill.sim.sweep.store import engine_version

#: longest wait for the next task to finish before the sweep gives up (s)
DEFAULT_WAIT_S = 3600.0
#: seconds allowed to reach a ``tcp://`` scheduler
CONNECT_TIMEOUT_S = 30.0

TaskFn = Callable[[Any], Any]
Finished = tuple[int, Any]


class SweepTimeout(RuntimeError):
    """No task finished within the allowed wait."""


class SweepExecutor(Protocol):
    """Runs tasks; ``describe`` names where (for the summary line)."""

    def describe(self) -> str: ...

    def run(self, fn: TaskFn, tasks: Sequence[Any]) -> Iterator[Finished]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ExecSpec:
    """What the user asked for: ``scheduler`` (None: this machine's process pool,
    ``local``: a Dask LocalCluster, ``tcp://...``: an existing Dask scheduler), the number
    of ``workers`` (pool processes or LocalCluster worker processes) and ``wait_s``."""

    scheduler: str | None = None
    workers: int = 1
    wait_s: float = DEFAULT_WAIT_S


class SerialExecutor:
    """Runs each task in this process, in order (``--workers 1``)."""

    def describe(self) -> str:
        return "this process"

    def run(self, fn: TaskFn, tasks: Sequence[Any]) -> Iterator[Finished]:
        for i, task in enumerate(tasks):
            try:
                yield i, fn(task)
            except Exception as exc:  # a task's failure is data, not a dead sweep
                yield i, exc

    def close(self) -> None:
        return None


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the parent, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class PoolExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` processes on this machine."""

    def __init__(self, spec: ExecSpec) -> None:
        self.spec = spec
        self.pool = cf.ProcessPoolExecutor(max_workers=spec.workers, initializer=_ignore_sigint)

    def describe(self) -> str:
        return f"process pool ({self.spec.workers} workers)"

    def run(self, fn: TaskFn, tasks: Sequence[Any]) -> Iterator[Finished]:
        index = {self.pool.submit(fn, t): i for i, t in enumerate(tasks)}
        pending = set(index)
        while pending:
            done, pending = cf.wait(pending, self.spec.wait_s, cf.FIRST_COMPLETED)
            if not done:
                raise SweepTimeout(f"no task finished in {self.spec.wait_s:g} s")
            for fut in sorted(done, key=index.__getitem__):
                exc = fut.exception()
                yield index[fut], exc if exc is not None else fut.result()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        stop = getattr(self.pool, "terminate_workers", None)  # Python >= 3.14
        if stop is not None:
            stop()
            return
        for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
            proc.terminate()


class DaskExecutor:
    """Tasks on a Dask distributed cluster: a fresh ``LocalCluster`` of ``workers``
    single-threaded worker processes, or the scheduler at ``spec.scheduler``."""

    def __init__(self, spec: ExecSpec) -> None:
        from distributed import Client, LocalCluster

        self.spec = spec
        self.cluster: Any = None
        if spec.scheduler == "local":
            self.cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1,
                                        processes=True, dashboard_address=":0",
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster, timeout=CONNECT_TIMEOUT_S)
            return
        try:
            self.client = Client(spec.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ScenarioError("--scheduler", f"cannot reach {spec.scheduler}: {_first(exc)}"
                                ) from None
        try:
            self._check_workers()
        except ScenarioError:
            self.close()
            raise

    def _check_workers(self) -> None:
        """Workers that cannot import pipefill, or run another engine version (their rows
        would be stored under this process's keys), are an input error."""
        try:
            versions = self.client.run(worker_engine_version)
        except Exception as exc:
            raise ScenarioError("--scheduler", f"workers at {self.spec.scheduler} cannot run "
                                f"pipefill: {_first(exc)}") from None
        other = sorted({v for v in versions.values() if v != engine_version()})
        if other:
            raise ScenarioError("--scheduler", f"workers at {self.spec.scheduler} run pipefill "
                                f"engine {', '.join(other)}, this process "
                                f"{engine_version()}: install the same pipefill on them")

    def describe(self) -> str:
        where = f"Dask LocalCluster ({self.spec.workers} workers)" if self.cluster \
            else f"Dask scheduler {self.spec.scheduler}"
        return where

    def run(self, fn: TaskFn, tasks: Sequence[Any]) -> Iterator[Finished]:
        from distributed import wait

        futures = self.client.map(fn, list(tasks), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        pending = set(futures)
        try:
            while pending:
                try:
                    done, pending = wait(pending, self.spec.wait_s, "FIRST_COMPLETED")
                except TimeoutError:
                    raise SweepTimeout(f"no task finished in {self.spec.wait_s:g} s") from None
                for fut in sorted(done, key=lambda f: index[f.key]):
                    yield index[fut.key], self._outcome(fut)
        finally:
            self.client.cancel(list(pending))

    def _outcome(self, fut: Any) -> Any:
        if fut.status == "finished":
            return fut.result(timeout=self.spec.wait_s)
        exc = fut.exception(timeout=self.spec.wait_s)  # e.g. KilledWorker, the task's error
        return exc if exc is not None else RuntimeError(f"task {fut.status}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close(timeout=CONNECT_TIMEOUT_S)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=CONNECT_TIMEOUT_S)


def worker_engine_version() -> str:
    """Run on each worker (pickled by reference): the engine version installed there."""
    from pipefill.sim.sweep import store as sweep_store

    return sweep_store.engine_version()


def _first(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _serial_or_pool(spec: ExecSpec) -> SweepExecutor:
    return PoolExecutor(spec) if spec.workers > 1 else SerialExecutor()


#: executor factories by scheduler kind (see :func:`scheduler_kind`)
EXECUTORS: dict[str, Callable[[ExecSpec], SweepExecutor]] = {
    "pool": _serial_or_pool,
    "local": DaskExecutor,
    "address": DaskExecutor,
}


def scheduler_kind(scheduler: str | None) -> str:
    """``None`` -> ``pool``, ``local`` -> ``local``, ``tcp://...`` (any ``scheme://``) ->
    ``address``; anything else is an input error naming ``--scheduler``."""
    if scheduler is None:
        return "pool"
    if scheduler == "local":
        return "local"
    scheme, sep, rest = scheduler.partition("://")
    if sep and scheme and rest:
        return "address"
    raise ScenarioError("--scheduler", f"{scheduler!r}: use local or tcp://HOST:PORT")


def make_executor(spec: ExecSpec) -> SweepExecutor:
    return EXECUTORS[scheduler_kind(spec.scheduler)](spec)


def task_size(points: int, workers: int, per_task: int | None = None) -> int:
    """Points per task: ``per_task`` if given, else about 8 tasks per worker (so results
    stream and load balances) but at most 64 points (what a lost task costs)."""
    if per_task is not None:
        return max(1, per_task)
    return max(1, min(64, -(-points // (8 * max(1, workers)))))


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]
