"""Commands that bring measurements of users' own pipelines in: merge, import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipefill.cli.app import Command, JsonOpt, app, check_out, handled
from pipefill.cli.render import print_json, print_measured


@app.command("merge", cls=Command)
def merge_cmd(
    rank_files: Annotated[list[Path], typer.Argument(
        metavar="RANK_FILES...", help="One probe trace per rank (.parquet/.csv).")],
    out: Annotated[Path, typer.Option(help="Merged trace to write (.parquet or .csv).")],
    json_: JsonOpt = False,
) -> None:
    """Align per-rank probe traces on rank 0's clock (offset and drift) and merge them."""
    from pipefill.traces.io import read_trace, write_trace
    from pipefill.traces.merge import merge_ranks

    check_out(out, (".parquet", ".pq", ".csv"), rank_files)
    with handled():
        traces = [read_trace(p) for p in rank_files]
        merged = merge_ranks(traces, [p.name for p in rank_files])
        write_trace(merged, out)
    ranks = merged.meta["merge"]["ranks"]
    summary = {"out": str(out), "events": len(merged.events), "ranks": ranks,
               "shift_ms": merged.meta["merge"]["shift_ms"]}
    if json_:
        print_json(summary)
        return
    print_measured(f"merged {len(ranks)} ranks into {out}: {len(merged.events)} events",
                   [f"rank {r['rank']} ({r['file']}): offset {r['offset_ms']:+.3f} ms, "
                    f"drift {(r['rate'] - 1) * 1e6:+.1f} ppm, {r['events']} events"
                    for r in ranks])


@app.command("import", cls=Command)
def import_cmd(
    profile: Annotated[Path, typer.Argument(
        help="torch.profiler / Chrome trace-event JSON file.")],
    map_file: Annotated[Path, typer.Option(
        "--map", help="Map TOML of phase rules (see examples/instrument_map.toml).")],
    out: Annotated[Path, typer.Option(help="Trace to write (.parquet or .csv).")],
    json_: JsonOpt = False,
) -> None:
    """Convert a profiler trace into a pipefill trace through a map of name patterns."""
    from pipefill.traces.import_map import load_map
    from pipefill.traces.io import write_trace
    from pipefill.traces.profile_import import import_profile, read_profile

    check_out(out, (".parquet", ".pq", ".csv"), [profile, map_file])
    with handled():
        mapping = load_map(map_file)
        trace = import_profile(read_profile(profile), mapping, profile.name)
        write_trace(trace, out)
    ev = trace.events
    counts = {k: int((ev["kind"] == k).sum()) for k in ("span", "mark", "counter")}
    info = trace.meta["import"]
    summary = {"out": str(out), "events_seen": info["events"], "mapped": info["mapped"],
               **counts, "stages": sorted(str(s) for s in ev["stage"].unique())}
    if json_:
        print_json(summary)
        return
    print_measured(f"imported {info['mapped']} of {info['events']} events into {out}",
                   [f"{counts['span']} spans, {counts['mark']} marks, {counts['counter']} "
                    f"counter samples on {', '.join(summary['stages'])}"])
