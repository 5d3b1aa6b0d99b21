"""Discovery: ``pipefill policies [NAME]`` lists the policies from their own schemas."""

from __future__ import annotations

from typing import Annotated

import typer

from pipefill.cli.app import Command, JsonOpt, app, handled


@app.command("policies", cls=Command)
def policies_cmd(
    name: Annotated[str | None, typer.Argument(
        help="One policy: its contract and every field (default: all, one line each).")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """List the scheduling policies, their fields, defaults, ranges and meanings."""
    import pipefill
    from pipefill.cli.render import print_json, print_policies

    with handled():
        docs = pipefill.policies(name)
    if json_:
        print_json([d.to_json() for d in docs])
        return
    print_policies(docs, detailed=name is not None)
