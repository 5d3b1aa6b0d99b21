"""pipefill's command line: ``app`` (typer) and ``main`` (the console script).

Each command module parses its arguments, calls one library function and renders the
result with :mod:`pipefill.cli.render`; :mod:`pipefill.cli.app` owns the exit codes.
"""

from pipefill.cli import (  # noqa: F401  (registers commands)
    analyze,
    diagnose,
    discover,
    measure,
    replay,
    simulate,
    study,
)
from pipefill.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
