"""The replay command: run a scenario's policy on real torch work and measure it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from pipefill.cli.app import (
    JsonOpt,
    ScenarioArg,
    SetOpt,
    app,
    crash_exit,
    fail,
    handled,
    load,
    out_console,
    progress_bar,
)
from pipefill.cli.render import describe, print_json, print_summary
from pipefill.sim.scenario import Scenario
from pipefill.traces.io import write_trace
from pipefill.traces.metrics import compute_metrics


def _replay_threads(sc: Scenario, opts: Any, dopts: Any, inject: str | None, out: Path,
                    json_: bool) -> Any:
    """Threads backend: every stage a thread of this process; writes the trace."""
    from dataclasses import replace

    from pipefill.exec.dist.config import DistOptions
    from pipefill.exec.errors import ExecError
    from pipefill.exec.kernels.registry import Fault
    from pipefill.exec.threads.replay import replay

    if dopts != DistOptions():
        fail("--mesh-size/--world-size/--master-addr/--master-port/--dist-backend: only "
             "with --backend dist")
    opts = replace(opts, fault=Fault.parse(inject) if inject else None)
    with progress_bar("replay", enabled=not json_ and sys.stderr.isatty()) as update:
        try:
            trace = replay(sc, opts, progress=update)
        except ExecError as exc:
            write_trace(exc.trace, out)
            if exc.abandoned:
                # a kernel never returned: interpreter teardown would abort inside it
                crash_exit(f"{exc} (partial trace written to {out})", 3)
            fail(f"{exc} (partial trace written to {out})", 3)
    write_trace(trace, out)
    return trace


def _replay_dist(sc: Scenario, opts: Any, dopts: Any, inject: str | None, out: Path,
                 json_: bool) -> Any:
    """Dist backend: under torchrun this process is one rank; else launch every rank."""
    from pipefill.exec.dist.config import RankEnv
    from pipefill.exec.dist.spawn import spawn_replay
    from pipefill.traces.io import read_trace

    env = RankEnv.from_environ()
    if env is not None:
        return _replay_rank(sc, opts, dopts, inject, out, env)
    outcome = spawn_replay(sc, opts, dopts, inject, out)
    if outcome.code == 2:
        fail(str(outcome.error), 2)
    if outcome.code != 0:
        written = outcome.report is not None and outcome.report.trace_written
        fail(f"{outcome.error}" + (f" (partial trace written to {out})" if written else ""), 3)
    return read_trace(out)


def _replay_rank(sc: Scenario, opts: Any, dopts: Any, inject: str | None, out: Path,
                 env: Any) -> Any:
    """One rank of a torchrun launch: rank0 writes the trace and reports; others are quiet."""
    from pipefill.exec.dist.faults import DistFault
    from pipefill.exec.dist.rank import run_rank

    result = run_rank(sc, opts, dopts, env, DistFault.parse(inject) if inject else None)
    if result.trace is not None:
        write_trace(result.trace, out)
    if result.error is not None:
        written = f" (partial trace written to {out})" if result.trace is not None else ""
        crash_exit(f"{result.error}{written}", 3)
    return result.trace


REPLAY_BACKENDS: dict[str, Callable[..., Any]] = {"threads": _replay_threads,
                                                  "dist": _replay_dist}


@app.command("replay")
def replay_cmd(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    *,
    out: Annotated[Path, typer.Option(help="Write the measured trace (.parquet or .csv).")],
    device: Annotated[str, typer.Option(help="cpu, or cuda (one stream per stage).")] = "cpu",
    kernels: Annotated[str, typer.Option(
        help="calibrated: matmul loops sized to the cost model; spin (cuda): clock-spin "
             "kernels of the modelled length that do not contend; model: small DiT + VAE.")
    ] = "calibrated",
    chunks: Annotated[int | None, typer.Option(min=1, help="Override run.chunks.")] = None,
    threads: Annotated[int, typer.Option(help="Intra-op threads per stage (CPU).")] = 1,
    model_size: Annotated[str, typer.Option(help="Model kernels: tiny, small or base.")
                          ] = "small",
    calibration: Annotated[Path | None, typer.Option(
        help="Calibration cache (JSON); default ~/.cache/pipefill/calibration.json.")] = None,
    timeout: Annotated[float, typer.Option(
        help="Seconds any wait or kernel may take before the run fails.")] = 60.0,
    inject: Annotated[str | None, typer.Option(
        help="Make one kernel raise: PHASE:CHUNK or STAGE:PHASE:CHUNK. --backend dist also: "
             "hang:, kill:, wrong_group:[WHERE:]PHASE:CHUNK (WHERE: stage0, stage1 or "
             "rankN), bad_version:QUEUE:CHUNK, missing_tensor:QUEUE:CHUNK.")] = None,
    backend: Annotated[str, typer.Option(
        help="threads: one process, a thread per stage; dist: one process per rank over "
             "torch.distributed (rank0 = stage0, ranks 1..N = the mesh), launched here or "
             "by torchrun.")] = "threads",
    mesh_size: Annotated[int, typer.Option(
        help="dist: ranks of the mesh; the world is 1 + mesh size.")] = 1,
    world_size: Annotated[int | None, typer.Option(
        help="dist: the world size you expect (checked against the policy).")] = None,
    master_addr: Annotated[str, typer.Option(
        help="dist: rendezvous address (loopback unless given).")] = "127.0.0.1",
    master_port: Annotated[int | None, typer.Option(
        help="dist: rendezvous port (a free one unless given).")] = None,
    dist_backend: Annotated[str, typer.Option(
        help="dist: auto (gloo on CPU, NCCL on CUDA), gloo or nccl.")] = "auto",
    json_: JsonOpt = False,
) -> None:
    """Run the scenario's policy on real torch kernels and measure it (same trace format)."""
    # imported here: torch is slow to load and only the executor needs it
    from pipefill.exec.dist.config import DistOptions
    from pipefill.exec.threads.replay import ReplayOptions

    if out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        fail(f"--out: {out.name}: unknown extension (use .parquet or .csv)")
    run_backend = REPLAY_BACKENDS.get(backend)
    if run_backend is None:
        fail(f"--backend: unknown backend {backend!r} (allowed: {', '.join(REPLAY_BACKENDS)})")
    with handled():
        sc = load(scenario, [*(set_ or []), *([f"run.chunks={chunks}"] if chunks else [])])
        opts = ReplayOptions(device=device, kernels=kernels, threads=threads,
                             model_size=model_size, calibration_path=calibration,
                             timeout_s=timeout)
        dopts = DistOptions(mesh_size=mesh_size, world_size=world_size,
                            master_addr=master_addr, master_port=master_port,
                            dist_backend=dist_backend)
        trace = run_backend(sc, opts, dopts, inject, out, json_)
        if trace is None:
            return  # a mesh rank under torchrun: rank0 reports
        metrics = compute_metrics(trace)
    if json_:
        print_json({"scenario": sc.name, "policy": sc.policy.params(),
                    "device": trace.meta["device"], "kernels": trace.meta["kernels"], **metrics})
        return
    print_summary(f"{describe(sc)} measured on {trace.meta['device']} ({kernels} kernels)",
                  metrics)
    out_console.print(f"trace: {out}")
