"""Run metadata that travels with every trace so it can be re-run and compared."""

from __future__ import annotations

import dataclasses
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """The checkout's commit, or 'unknown' outside a git work tree."""
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def versions(*dists: str) -> dict[str, str]:
    names = ("pipefill", "simpy", "pandas", "pyarrow", *dists)
    found = {d: _version(d) for d in names}
    found["python"] = platform.python_version()
    return found


def queue_specs(scenario: Any) -> list[dict[str, Any]]:
    """The policy's bounded queues (name, capacity, src, dst, transport), so a reader can
    draw each queue's capacity without knowing which policy field sets it."""
    return [dataclasses.asdict(spec) for spec in scenario.policy.queues(scenario)]


def run_metadata(scenario: Any, source: str, backend: str, device: str = "none",
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metadata for a trace of ``scenario`` produced by ``source`` (``sim`` or ``exec``)."""
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "source": source,
        "backend": backend,
        "device": device,
        "scenario_name": scenario.name,
        "scenario": scenario.raw,
        "policy": scenario.policy.params(),
        "run": scenario.run.model_dump(mode="json"),
        "costs": {p: c.model_dump(mode="json") for p, c in scenario.costs.items()},
        "transport": scenario.transport.model_dump(mode="json"),
        "queues": queue_specs(scenario),
        "seed": scenario.run.seed,
        "versions": versions(),
        "git_revision": git_revision(),
    }
    meta.update(extra or {})
    return meta
