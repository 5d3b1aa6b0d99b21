"""The pipefill launcher: one process per rank on this machine, then nothing left running.

``spawn_replay`` checks every input first (nothing starts on bad input), binds the
rendezvous socket itself (loopback and a free port unless given: a port in use is bad
input, and no other process can take the port before rank0 uses it), writes a
:class:`LaunchSpec` (JSON, never pickle) and starts ``python -m pipefill.exec.dist SPEC``
once per rank with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
each in its own session so it can be killed with its children. Rank0 writes the trace
and a result file; the launcher reads the result, gives the other ranks a grace period
to exit and kills whatever is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipefill.exec.dist.config import LOOPBACK, DistOptions
from pipefill.exec.dist.faults import DistFault
from pipefill.exec.dist.rank import check_run
from pipefill.exec.dist.rendezvous import bind_listener
from pipefill.exec.threads.replay import ReplayOptions
from pipefill.sim.scenario.load import build_scenario
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.io import write_text

#: how often the launcher looks at its ranks
POLL_S = 0.05
#: extra time ranks get to exit after rank0 has (they notice the end within a poll)
EXIT_GRACE_S = 5.0


@dataclass(frozen=True)
class LaunchSpec:
    """What a spawned rank runs: the scenario's raw tables and every option."""

    scenario: dict[str, Any]
    name: str
    replay: dict[str, Any]
    dist: dict[str, Any]
    inject: str | None
    out: str
    result: str

    @classmethod
    def build(cls, sc: Scenario, opts: ReplayOptions, dopts: DistOptions, inject: str | None,
              out: Path, result: Path) -> LaunchSpec:
        replay = {k: v for k, v in asdict(opts).items() if k != "fault"}
        replay["calibration_path"] = None if opts.calibration_path is None \
            else str(opts.calibration_path)
        return cls(sc.raw, sc.name, replay, asdict(dopts), inject, str(out), str(result))

    def write(self, path: Path) -> None:
        write_text(path, json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> LaunchSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def options(self) -> tuple[Scenario, ReplayOptions, DistOptions, DistFault | None]:
        replay = dict(self.replay)
        if replay.get("calibration_path") is not None:
            replay["calibration_path"] = Path(replay["calibration_path"])
        fault = DistFault.parse(self.inject) if self.inject else None
        return (build_scenario(self.scenario, name=self.name), ReplayOptions(**replay),
                DistOptions(**self.dist), fault)


@dataclass(frozen=True)
class RankReport:
    """Rank0's result file: ``code`` is its exit code (0 ok, 2 bad input, 3 failed)."""

    code: int
    error: str | None = None
    abandoned: list[str] = field(default_factory=list)
    trace_written: bool = False

    def write(self, path: Path) -> None:
        write_text(path, json.dumps(asdict(self)))


@dataclass(frozen=True)
class SpawnOutcome:
    """How a launched run ended: rank0's report (None if it left none), exit codes."""

    report: RankReport | None
    codes: list[int | None]
    detail: str = ""

    @property
    def error(self) -> str | None:
        if self.report is not None:
            return self.report.error
        return self.detail or "rank0 ended without a result"

    @property
    def code(self) -> int:
        return self.report.code if self.report is not None else 3


def loopback_ifname() -> str | None:
    """The loopback interface's name (gloo/NCCL bind to it on a loopback rendezvous)."""
    with contextlib.suppress(OSError):
        for _, name in socket.if_nameindex():
            if name.startswith("lo"):
                return name
    return None


def _namespace_root() -> str | None:
    """The folder holding the ``pipefill`` package when it is laid out as installed (a
    wheel, perhaps unpacked onto sys.path), so ranks import this very copy; None for an
    editable install, whose import hook every child interpreter already has."""
    here = Path(__file__).resolve().parents
    return str(here[3]) if here[2].name == "pipefill" else None


def rank_env(rank: int, world: int, addr: str, port: int, fd: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHELASTIC_")}
    env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
               MASTER_ADDR=addr, MASTER_PORT=str(port))
    root = _namespace_root()
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.pop("PIPEFILL_STORE_FD", None)
    if fd is not None:
        env["PIPEFILL_STORE_FD"] = str(fd)
    lo = loopback_ifname()
    if addr == LOOPBACK and lo is not None:
        env.setdefault("GLOO_SOCKET_IFNAME", lo)
        env.setdefault("NCCL_SOCKET_IFNAME", lo)
    if torch.cuda.is_available() and world > torch.cuda.device_count():
        env.setdefault("NCCL_MULTI_RANK_GPU_ENABLE", "1")  # ranks share a GPU (NCCL >= 2.30)
    return env


def spawn_replay(sc: Scenario, opts: ReplayOptions, dopts: DistOptions, inject: str | None,
                 out: Path) -> SpawnOutcome:
    """Run every rank as a child process; bad input raises ExecConfigError first."""
    layout = check_run(sc, opts, dopts, DistFault.parse(inject) if inject else None)
    sock = bind_listener(dopts.master_addr, dopts.master_port or 0, "--master-port")
    port = int(sock.getsockname()[1])
    run_dir = Path(tempfile.mkdtemp(prefix="pipefill-dist-"))
    procs: list[subprocess.Popen[bytes]] = []
    with _terminate_as_interrupt():
        return _launch(sc, opts, dopts, inject, out, sock, port, run_dir, procs, layout.world)


def _launch(sc: Scenario, opts: ReplayOptions, dopts: DistOptions, inject: str | None,
            out: Path, sock: socket.socket, port: int, run_dir: Path,
            procs: list[subprocess.Popen[bytes]], world: int) -> SpawnOutcome:
    try:
        spec_path, result = run_dir / "spec.json", run_dir / "result.json"
        LaunchSpec.build(sc, opts, dopts, inject, out, result).write(spec_path)
        for rank in range(world):
            procs.append(_start(rank, world, dopts, port, run_dir, sock.fileno() if rank == 0
                                else None))
        sock.close()  # rank0 holds its own copy of the listening socket
        codes, detail = _wait(procs, run_dir, opts.timeout_s)
        report = _read_report(result)
        return SpawnOutcome(report, codes, detail)
    finally:
        sock.close()
        _kill_all(procs)
        shutil.rmtree(run_dir, ignore_errors=True)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``, a job scheduler) unwinds like Ctrl-C, so the ranks, which
    live in their own sessions, are killed on the way out instead of left running."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start(rank: int, world: int, dopts: DistOptions, port: int, run_dir: Path,
           fd: int | None) -> subprocess.Popen[bytes]:
    env = rank_env(rank, world, dopts.master_addr, port, fd)
    log = open(run_dir / f"rank{rank}.log", "wb")  # noqa: SIM115 - the child owns it
    with log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipefill.exec.dist", str(run_dir / "spec.json")],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, pass_fds=(fd,) if fd is not None else ())


def _wait(procs: list[subprocess.Popen[bytes]], run_dir: Path,
          timeout_s: float) -> tuple[list[int | None], str]:
    """Wait for rank0 (and the rest, within a grace period); returns exit codes and,
    when rank0 never reported, what the ranks' logs say."""
    grace = timeout_s + EXIT_GRACE_S
    deadline: float | None = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            break
        if codes[0] is not None or any(c not in (None, 0) for c in codes):
            # rank0 finished, or a rank died: the others must end within the grace period
            deadline = deadline or time.monotonic() + grace + (0 if codes[0] is not None
                                                                else timeout_s)
            if time.monotonic() > deadline:
                break
        time.sleep(POLL_S)
    codes = [p.poll() for p in procs]
    detail = "; ".join(f"rank{r} {_exit(c)}: {_last_line(run_dir / f'rank{r}.log')}"
                       for r, c in enumerate(codes) if c not in (0, None))
    return codes, detail


def _exit(code: int | None) -> str:
    if code is None:
        return "still running (killed)"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def _read_report(path: Path) -> RankReport | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RankReport(int(data["code"]), data.get("error"), list(data.get("abandoned", [])),
                          bool(data.get("trace_written")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL every rank's session (the rank and anything it started), then reap."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=10)
