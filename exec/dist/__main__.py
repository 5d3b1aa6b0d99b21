"""One rank of a ``replay --backend dist`` that pipefill launched itself.

``python -m pipefill.exec.dist SPEC``: the launcher (:mod:`pipefill.exec.dist.spawn`)
writes the launch spec (JSON) and sets RANK/WORLD_SIZE; rank0 writes the trace and the
report the launcher reads. This is a process entry point, so like the CLI it may print
its one error line and exit: crash-only, through ``os._exit``, because a thread may sit
in a kernel or a collective that interpreter teardown would wait for.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipefill.exec.dist.config import RankEnv
from pipefill.exec.dist.rank import run_rank
from pipefill.exec.dist.spawn import LaunchSpec, RankReport
from pipefill.exec.errors import ExecConfigError
from pipefill.sim.errors import ScenarioError
from pipefill.traces.io import write_trace
from pipefill.traces.schema import TraceError

INPUT_ERRORS = (ScenarioError, TraceError)


def _crash_exit(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(spec: Path) -> None:
    launch = LaunchSpec.read(spec)
    env = RankEnv.from_environ()
    report = Path(launch.result)
    rank0 = env is None or env.rank == 0
    try:
        if env is None:
            raise ExecConfigError("RANK", "a dist rank runs under the pipefill launcher, "
                                  "which sets RANK and WORLD_SIZE")
        sc, opts, dopts, fault = launch.options()
        result = run_rank(sc, opts, dopts, env, fault)
    except INPUT_ERRORS as exc:
        if rank0:
            RankReport(2, str(exc)).write(report)
        _crash_exit(str(exc), 2)
        return
    if result.trace is not None:
        write_trace(result.trace, launch.out)
    if rank0:
        RankReport(3 if result.error else 0, result.error, list(result.abandoned),
                   result.trace is not None).write(report)
    if result.error is not None:
        _crash_exit(result.error, 3)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m pipefill.exec.dist SPEC.json\n")
        sys.exit(2)
    main(Path(sys.argv[1]))
