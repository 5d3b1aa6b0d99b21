"""What every executor backend does the same way around the policy's programs.

The threads backend and each dist rank both start their workers, wait until every
worker has warmed up in its own thread (per-thread cuBLAS/cuDNN handles, first-call
compiles) before time zero, watch for a run that stops progressing, and describe the
run in the trace's metadata. The waiting, the stall line and the common metadata keys
are written here once; each backend adds what only it knows (other ranks, links).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipefill.traces.meta import run_metadata, versions

if TYPE_CHECKING:
    from pipefill.exec.threads.backend import RunContext
    from pipefill.exec.threads.replay import ReplayOptions
    from pipefill.exec.threads.state import SharedState
    from pipefill.sim.scenario.model import Scenario


def warm_up(ctx: RunContext, timeout_s: float, cancel: threading.Event,
            also: Callable[[], None] | None = None) -> None:
    """Return once every worker of ``ctx`` has passed its warm-up barrier (then ``also``,
    e.g. the other ranks' barrier), or the run has failed.

    A worker whose warm-up raised records its own failure right after breaking the
    barrier (``cancel`` is set at once); if nothing does within a second, the warm-up
    outlasted ``timeout_s`` and that is the failure.
    """
    assert ctx.ready is not None
    try:
        ctx.ready.wait(timeout_s)
        if also is not None:
            also()
    except threading.BrokenBarrierError:
        if not cancel.wait(1.0):
            ctx.fail(f"a worker did not finish its warm-up within {timeout_s:g} s")


def stall_line(state: SharedState, idle_s: float, timeout_s: float, *, who: str = "",
               idle_doing: str = "", last: str = "") -> str:
    """``[who: ]no progress for 12.3 s (timeout 10 s): <worker> at '<action>', ...;
    <queues>``: what every worker was doing and the queue states, for a stalled run."""
    doing = ", ".join(f"{w} at '{a}'" for w, a in sorted(state.doing.items()))
    head = f"{who}: " if who else ""
    return (f"{head}no progress for {idle_s:.1f} s (timeout {timeout_s:g} s): "
            f"{doing or idle_doing}{last}; {state.describe_queues()}")


def exec_meta(sc: Scenario, opts: ReplayOptions, *, backend: str, device: str,
              error: str | None, fault: Any, kernels: dict[str, Any],
              parallelism: dict[str, Any], transport_mode: str,
              **extra: Any) -> dict[str, Any]:
    """The trace metadata of a replay: the scenario and run (``run_metadata``), the
    kernels, the parallelism the run had, the outcome and fault, versions; ``extra``
    adds the backend's own keys (``dist``: the layout, ranks, clock)."""
    common = {
        "parallelism": parallelism,
        "kernels": kernels,
        "threads": opts.threads,
        "transport_mode": transport_mode,
        "status": "failed" if error else "ok",
        "error": error,
        "fault": fault,
        "versions": versions("torch"),
        **extra,
    }
    return run_metadata(sc, source="exec", backend=backend, device=device, extra=common)
