"""The typer app and what every command shares: options, input errors -> exit codes.

Exit codes: 0 ok; 1 a check failed (``diff --check``, ``sweep --best`` with no point);
2 bad input (one line naming the field, no output file written); 3 the schedule
stalled or a run failed (the message names stage, action and queues); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup


def _bare_help(option: Any) -> Any:
    if option is not None:
        option.metavar = ""  # a flag takes no value: typer would print "<bool>"
    return option


class Command(TyperCommand):
    """Every pipefill command: ``--help`` shows no value placeholder."""

    def get_help_option(self, ctx: Any) -> Any:  # typer's vendored click types
        return _bare_help(super().get_help_option(ctx))


#: the order ``pipefill --help`` lists commands in: predict, measure, compare, then the
#: tools for one's own traces; a command not named here comes after these
COMMAND_ORDER = ("simulate", "sweep", "bound", "study", "replay", "diff", "explain", "check",
                 "calibrate", "report", "export", "merge", "import", "policies")


class Group(TyperGroup):
    """The pipefill app: ``--help`` shows no value placeholder and lists the commands in
    :data:`COMMAND_ORDER`."""

    def get_help_option(self, ctx: Any) -> Any:  # typer's vendored click types
        return _bare_help(super().get_help_option(ctx))

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {n: i for i, n in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out_console.print(f"pipefill {version('pipefill')}")
        raise typer.Exit(0)


app = typer.Typer(cls=Group, add_completion=False, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Simulate and measure how streaming video-DiT pipelines fill their stages.")


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", metavar="", is_eager=True, callback=_print_version,
        help="Print the version and exit.")] = False) -> None:
    """Simulate and measure how streaming video-DiT pipelines fill their stages."""


out_console = Console(highlight=False, soft_wrap=True)


err_console = Console(stderr=True, highlight=False, soft_wrap=True)


ScenarioArg = Annotated[Path | None, typer.Argument(
    help="Scenario TOML file; the built-in default scenario when omitted.")]


SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a field: --set policy.d_in=2 (repeatable).")]


#: the registered policies (pipefill.sim.policies.POLICIES; a test keeps them equal: the
#: registry itself is not imported for --help, which must start fast)
POLICY_NAMES = ("serial", "phase_pp", "stream_batch", "layer_pp", "multi_session",
                "rolling_window")

PolicyOpt = Annotated[str | None, typer.Option(
    "--policy", help="Switch to this policy (" + ", ".join(POLICY_NAMES) + ") "
    "(--set policy.name=NAME); --set policy.* fields still apply. `pipefill policies` "
    "describes them.")]


JsonOpt = Annotated[bool, typer.Option(
    "--json", metavar="", help="Print one JSON object instead of a table.")]


#: "module:Class" -> exit code. Resolved through sys.modules, so checking an error never
#: imports a module: an exception can only be an instance of a class already loaded.
ERROR_CODES: dict[str, int] = {
    "pipefill.sim.errors:ScenarioError": 2,
    "pipefill.traces.schema:TraceError": 2,
    "pipefill.sim.errors:StallError": 3,
}


def exit_code_of(exc: BaseException) -> int | None:
    """The documented exit code of a library error, or None for anything else."""
    for ref, code in ERROR_CODES.items():
        module, _, name = ref.partition(":")
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return code
    return None


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


@contextmanager
def handled(interrupted: Callable[[], str] | None = None) -> Iterator[None]:
    """Turn library errors into one clear line and the documented exit code; Ctrl-C into
    one line ``interrupted`` (plus what ``interrupted()`` says was kept) and exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        kept = interrupted() if interrupted is not None else ""
        err_console.print("interrupted" + (f": {kept}" if kept else ""), markup=False)
        raise typer.Exit(130) from None
    except Exception as exc:
        code = exit_code_of(exc)
        if code is None:
            raise
        fail(str(exc), code)


def check_out(out: Path | None, suffixes: tuple[str, ...] = (),
              inputs: Sequence[Path | None] = ()) -> None:
    """Fail (exit 2, naming --out) before any work when ``out`` cannot be written: a
    wrong extension, an unwritable place, or one of the command's ``inputs``."""
    if out is None:
        return
    from pipefill.traces.io import check_not_input, check_writable

    with handled():
        check_writable(out, "--out", suffixes)
        check_not_input(out, [p for p in inputs if p is not None])


def with_policy(policy: str | None, sets: list[str] | None) -> list[str]:
    """The ``--set`` list with ``--policy NAME`` applied first (``policy.name=NAME``)."""
    from pipefill.sim.scenario.load import with_policy as apply

    return apply(policy, sets)


def note_switch(scenario: Path | None, sc: Any) -> None:
    """Say on stderr what switching the policy (``--policy``, ``--set policy.name``) kept
    and left out, so a comparison of two policies is known to be like for like."""
    from pipefill.sim.policies import switch_note
    from pipefill.sim.scenario.load import load_raw

    note = switch_note(load_raw(scenario)[0].get("policy"), sc.policy)
    if note:
        err_console.print(f"note: {note}", markup=False)


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    if not enabled:
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as bar:
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
