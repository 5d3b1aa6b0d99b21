"""The study command: one of the brief's experiments (or a user's study file) on a
scenario, with its verdict, an optional report section and measured key points."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipefill.cli.app import (
    Command,
    JsonOpt,
    ScenarioArg,
    SetOpt,
    app,
    crash_exit,
    err_console,
    fail,
    handled,
    out_console,
    progress_bar,
)

if TYPE_CHECKING:
    from pipefill.exec.threads.replay import ReplayOptions
    from pipefill.sim.study.result import StudyResult

NAMES = "fill, coupling, sessions, stream-batch"


@app.command("study", cls=Command)
def study_cmd(
    name: Annotated[str, typer.Argument(
        help=f"A built-in study ({NAMES}) or a study file (.toml).")],
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    replay: Annotated[bool, typer.Option(
        "--replay", metavar="", help="Also run the verdict's key points short on the threads "
        "executor and print predicted beside measured.")] = False,
    out: Annotated[Path | None, typer.Option(
        help="Write the report section (index.html and its figures) and study.json, with "
        "every point, to this directory.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes to run points on.")] = 1,
    engine: Annotated[str, typer.Option(help="auto|simpy|fast, as for sweep.")] = "auto",
    device: Annotated[str, typer.Option(help="--replay: cpu or cuda.")] = "cpu",
    kernels: Annotated[str, typer.Option(
        help="--replay: calibrated, spin (cuda) or model.")] = "calibrated",
    json_: JsonOpt = False,
) -> None:
    """Run one of the brief's experiments and say what it answers.

    fill: D_in x D_out = 1, 2, 4. coupling: r1 vs r0a (lag 0..3) vs r0 vs
    anchor_only. sessions: 1, 2, 4 sessions sharing the stages. stream-batch:
    W stages x n steps, and layer_pp's items per batch. A study file defines
    its own grid, columns and verdict rules (README: "Your own study").
    """
    import pipefill
    from pipefill.cli.render import print_json, print_study
    from pipefill.results import ReplayError

    if out is not None:
        _check_dir(out)
    options = _replay_options(device, kernels) if replay else None
    with handled():
        try:
            with progress_bar("study", enabled=not json_ and sys.stderr.isatty()) as update:
                res = pipefill.study(name, scenario, sets=set_ or [], engine=engine,
                                     workers=workers, replay=replay, options=options,
                                     progress=update)
        except ReplayError as exc:
            (crash_exit if exc.exit_now else fail)(str(exc), exc.code)
    data = res.to_json()
    if out is not None:
        with handled():
            from pipefill.reports.study import write_study_report

            argv = ["pipefill", "study", name, *([str(scenario)] if scenario else []),
                    *(a for v in set_ or [] for a in ("--set", v)), "--out", str(out)]
            write_study_report(data, out, shlex.join(argv))
    if json_:
        _warn(res)
        print_json({**data, **({"out": str(out)} if out is not None else {})})
        return
    print_study(res)
    _warn(res)  # beside the measured table they qualify
    if out is not None:
        out_console.print(f"report: {out / 'index.html'}; every point: {out / 'study.json'}")


def _warn(res: StudyResult) -> None:
    """The trust warnings of each measured key point (stderr)."""
    for m in res.measured:
        for warning in m.warnings:
            err_console.print(f"warning: {m.label}: {warning}", markup=False)


def _check_dir(out: Path) -> None:
    """Fail (exit 2, naming --out) before any work when ``out`` cannot take the report."""
    from pipefill.reports.build import check_out_dir

    with handled():
        check_out_dir(out)


def _replay_options(device: str, kernels: str) -> ReplayOptions:
    from pipefill.exec.threads.replay import ReplayOptions

    return ReplayOptions(device=device, kernels=kernels)
