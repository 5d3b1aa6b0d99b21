"""Commands that read traces: diff, calibrate, report, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipefill.cli.app import (
    Command,
    JsonOpt,
    SetOpt,
    app,
    check_out,
    err_console,
    fail,
    handled,
    out_console,
)


@app.command("diff", cls=Command)
def diff_cmd(
    predicted: Annotated[Path, typer.Argument(help="Predicted trace (e.g. from simulate).")],
    measured: Annotated[Path, typer.Argument(help="Measured trace (e.g. from replay).")],
    tolerance: Annotated[float, typer.Option(
        min=0, help="Timing divergence threshold, as a fraction of the predicted period.")
    ] = 0.2,
    check: Annotated[bool, typer.Option(
        "--check", metavar="", help="Exit 1 unless the verdict is 'agree' (for scripts and "
        "CI); without it diff exits 0 whatever the verdict.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Compare two traces: metric errors, phase durations, first divergence, verdict."""
    import pipefill
    from pipefill.cli.render import print_diff, print_json

    with handled():
        res = pipefill.diff(predicted, measured, tolerance=tolerance).to_json()
    for warning in res["warnings"]:
        err_console.print(f"warning: {warning}", markup=False)
    if json_:
        print_json(res)
    else:
        print_diff(res)
    if check and res["status"] != "agree":
        raise typer.Exit(1)


@app.command("calibrate", cls=Command)
def calibrate_cmd(
    measured: Annotated[Path, typer.Argument(help="A measured trace (.parquet or .csv).")],
    out: Annotated[Path, typer.Option(help="Scenario TOML to write.")],
    dist: Annotated[str, typer.Option(
        help="Family: auto, constant, normal, lognormal or empirical.")] = "auto",
    warmup: Annotated[int | None, typer.Option(
        min=0, help="Chunks left out of the fit (default: the run's warm-up).")] = None,
    policy: Annotated[str | None, typer.Option(
        help="Policy of the scenario (replaces the trace's; needed if it names none).")
    ] = None,
    sets: SetOpt = None,
    probe_contention: Annotated[bool, typer.Option(
        "--probe-contention", metavar="",
        help="Measure every shared device's contention rates here with the replay kernels "
             "(concurrent calibrated loops) instead of fitting them from the trace.")] = False,
    device: Annotated[str, typer.Option(
        help="--probe-contention: cpu (on the device's cores) or cuda.")] = "cpu",
    json_: JsonOpt = False,
) -> None:
    """Fit per-phase cost distributions and transport to a trace; write a scenario.

    Stages that share a device: solo costs come from calls that ran alone and the
    device's contention rates from calls that overlapped (or from --probe-contention).
    """
    import pipefill
    from pipefill.cli.render import print_calibration, print_json

    check_out(out, (".toml",), [measured])
    with handled():
        trace = pipefill.read_trace(measured)
        header = _header(measured, trace.meta)
        cal = pipefill.calibrate(trace, dist=dist, warmup=warmup, policy=policy, sets=sets,
                                 out=None if probe_contention else out, header=header)
        if probe_contention:
            cal = pipefill.calibrate(trace, dist=dist, warmup=warmup, policy=policy,
                                     sets=sets, probed=_probe(cal.scenario, device),
                                     out=out, header=header)
    for warning in cal.warnings():
        err_console.print(f"warning: {warning}", markup=False)
    if json_:
        print_json({"out": str(out), **cal.to_json()})
        return
    print_calibration(measured.name, cal, out)


def _header(measured: Path, meta: dict[str, Any]) -> str:
    """The calibrated scenario's first comment: the command and where the trace came from
    (what the trace says: a probe trace names no device)."""
    given = {k: meta.get(k) for k in ("source", "backend", "device")}
    source = [f"{k} {v}" for k, v in given.items() if isinstance(v, str) and v
              and v != "none" and (k == "source" or v != given["source"])]
    return f"pipefill calibrate {measured.name}" + (f" ({', '.join(source)})" if source else "")


def _probe(sc: Any, device: str) -> dict[str, tuple[dict[int, float], str]]:
    """Each shared device's rates probed on this machine: device -> (rates, note)."""
    from pipefill.exec.errors import ExecConfigError
    from pipefill.exec.threads.placement import cpu_pins
    from pipefill.exec.threads.probe import ProbeError, probe_contention

    shared = sc.shared_devices()
    if not shared:
        fail("--probe-contention: the trace's scenario has no shared device (name one in "
             "[placement])")
    out = {}
    try:
        pins = cpu_pins(sc) if device == "cpu" else {}
        for dev, stages in shared.items():
            res = probe_contention(device, pins.get(stages[0]), len(stages))
            out[dev] = (res.rates, res.describe(dev))
    except ExecConfigError as exc:
        fail(str(exc), 2)
    except ProbeError as exc:
        fail(str(exc), 3)
    return out


@app.command("report", cls=Command)
def report_cmd(
    inputs: Annotated[list[Path], typer.Argument(
        help="A trace, a predicted/measured pair of traces, or a sweep table.")],
    out: Annotated[Path, typer.Option(help="Report directory (created or replaced).")],
    bound: Annotated[float | None, typer.Option(
        min=0, help="Analytic period (ms) to draw on the period figure; by default "
                    "computed from a simulated input's scenario.")] = None,
    window: Annotated[int, typer.Option(
        min=0, help="Chunks shown in the Gantt window (0 = the whole run).")] = 24,
    json_: JsonOpt = False,
) -> None:
    """Write PNG figures and one self-contained index.html for a trace, a pair or a sweep."""
    # imported here: matplotlib is slow to load and only this command needs it
    from pipefill.cli.render import print_json
    from pipefill.reports.build import ReportOptions, build_report
    from pipefill.sim.bound.trace import bound_of_simulated
    from pipefill.sim.fit.facts import facts_of

    with handled():
        if bound is None:
            bound = bound_of_simulated(inputs)
        res = build_report(inputs, out, ReportOptions(bound_ms=bound, window=window,
                                                      facts=facts_of))
    if json_:
        print_json({"out": str(res.out), "kind": res.kind, "index": str(res.index),
                    "figures": res.figures, "notices": res.notices})
        return
    out_console.print(f"{res.kind} report: {res.index}")
    for note in res.notices:
        out_console.print(f"note: {note}")
    out_console.print("figures: " + ", ".join(res.figures))


@app.command("export", cls=Command)
def export_cmd(
    trace_path: Annotated[Path, typer.Argument(metavar="TRACE", help="A trace (.parquet/.csv).")],
    out: Annotated[Path, typer.Option(help="Chrome trace JSON to write (.json).")],
    json_: JsonOpt = False,
) -> None:
    """Export a trace as Chrome trace event JSON (open it in Perfetto or chrome://tracing)."""
    from pipefill.cli.render import print_json
    from pipefill.traces.chrome import export_chrome, read_exportable

    check_out(out, (".json",), [trace_path])
    with handled():
        stats = export_chrome(read_exportable(trace_path), out)
    if json_:
        print_json({"out": str(out), **vars(stats)})
        return
    out_console.print(f"chrome trace: {out}: {stats.spans} spans, {stats.marks} marks, "
                      f"{stats.counters} counter samples, {stats.flows} flows "
                      f"({stats.unconsumed} sends never received), {stats.processes} "
                      f"processes, {stats.threads} threads")
