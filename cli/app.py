"""The typer app and what every command shares: options, input errors -> exit codes.

Exit codes: 0 ok; 1 a check failed (``diff --check``, ``sweep --best`` with no point);
2 bad input (one line naming the field, no output file written); 3 the schedule
stalled or a run failed (the message names stage, action and queues); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from pipefill.sim.errors import ScenarioError, StallError
from pipefill.traces.schema import TraceError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Simulate and measure how streaming video-DiT pipelines fill their stages.")


out_console = Console(highlight=False, soft_wrap=True)


err_console = Console(stderr=True, highlight=False, soft_wrap=True)


ScenarioArg = Annotated[Path | None, typer.Argument(
    help="Scenario TOML file; the built-in default scenario when omitted.")]


SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a field: --set policy.d_in=2 (repeatable).")]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


INPUT_ERRORS: tuple[type[Exception], ...] = (ScenarioError, TraceError)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Turn library errors into one clear line and the documented exit code."""
    try:
        yield
    except INPUT_ERRORS as exc:
        fail(str(exc), 2)
    except StallError as exc:
        fail(str(exc), 3)


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    if not enabled:
        yield lambda done, total: None
        return
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def crash_exit(message: str, code: int) -> NoReturn:
    """Print the error line and leave at once: a thread may sit in a kernel or a
    collective that interpreter teardown would wait for (crash-only)."""
    err_console.print(f"error: {message}", markup=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
