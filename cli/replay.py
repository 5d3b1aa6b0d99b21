"""The replay command: run a scenario's policy on real torch work and measure it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipefill.cli.app import (
    Command,
    JsonOpt,
    PolicyOpt,
    ScenarioArg,
    SetOpt,
    app,
    check_out,
    crash_exit,
    err_console,
    fail,
    handled,
    note_switch,
    out_console,
    progress_bar,
)


@app.command("replay", cls=Command)
def replay_cmd(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    policy: PolicyOpt = None,
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
             "hang:, kill:, wrong_group:[WHERE:]PHASE:CHUNK (WHERE: a stage or rankN), "
             "bad_version:QUEUE:CHUNK, missing_tensor:QUEUE:CHUNK.")] = None,
    backend: Annotated[str, typer.Option(
        help="threads: one process, a thread per stage; dist: one process per rank over "
             "torch.distributed (one rank per stage of the policy, a mesh of ranks for a "
             "tensor-parallel stage), launched here or by torchrun.")] = "threads",
    mesh_size: Annotated[int, typer.Option(
        help="dist: ranks of each tensor-parallel stage (the generator's mesh).")] = 1,
    world_size: Annotated[int | None, typer.Option(
        help="dist: the world size you expect (checked against the policy).")] = None,
    master_addr: Annotated[str, typer.Option(
        help="dist: rendezvous address (loopback unless given).")] = "127.0.0.1",
    master_port: Annotated[int | None, typer.Option(
        help="dist: rendezvous port (a free one unless given).")] = None,
    dist_backend: Annotated[str, typer.Option(
        help="dist: auto (gloo on CPU, NCCL on CUDA), gloo or nccl.")] = "auto",
    recalibrate: Annotated[bool, typer.Option(
        "--recalibrate", metavar="",
        help="Re-measure the kernel-speed calibration even when a quick check agrees with "
             "the cache.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Run the scenario's policy on real torch kernels and measure it (same trace format)."""
    # imported here: torch is slow to load and only the executor needs it
    import pipefill
    from pipefill.cli.render import describe, print_json, print_summary, print_trust

    check_out(out, (".parquet", ".pq", ".csv"), [scenario, calibration])
    with handled():
        sets = [*(set_ or []), *([f"run.chunks={chunks}"] if chunks else [])]
        sc = pipefill.load_scenario(scenario, sets, policy=policy)
        note_switch(scenario, sc)
        opts = pipefill.ReplayOptions(device=device, kernels=kernels, threads=threads,
                                      model_size=model_size, calibration_path=calibration,
                                      timeout_s=timeout, recalibrate=recalibrate)
        dopts = pipefill.DistOptions(mesh_size=mesh_size, world_size=world_size,
                                     master_addr=master_addr, master_port=master_port,
                                     dist_backend=dist_backend)
        bar = backend == "threads" and not json_ and sys.stderr.isatty()
        try:
            with progress_bar("replay", enabled=bar) as update:
                rep = pipefill.replay(sc, out=out, backend=backend, options=opts, dist=dopts,
                                      inject=inject, progress=update)
        except pipefill.ReplayError as exc:
            (crash_exit if exc.exit_now else fail)(str(exc), exc.code)
        if rep is None:
            return  # a mesh rank under torchrun: rank0 reports
    for warning in rep.warnings:
        err_console.print(f"warning: {warning}", markup=False)
    if json_:
        print_json(rep.to_json())
        return
    meta = rep.trace.meta
    print_summary(f"{describe(sc)} measured on {meta['device']} ({kernels} kernels)",
                  rep.metrics)
    print_trust(meta)
    out_console.print(f"trace: {out}")
