"""The requirements to carry as wheels to a device machine (``scripts/device_wheels.sh``).

Walks pipefill's installed requirements (extras included) in this environment, with
markers evaluated for the device's interpreter (CPython 3.12 on Linux x86-64), and
prints ``NAME==VERSION`` for every distribution pipefill needs except torch and what
only torch needs: the versions this venv has, so the device runs what the tests ran.

The device image already holds the large compiled packages (``LARGE``: numpy, pandas,
pyarrow, numba, ...); carrying them would pass the 64 MiB a device call may carry, and
their builds go with the image's own. They, and what only they need, are left out
unless ``--all``. The
build backend (setuptools) is added, so pip can build pipefill from the working tree
without a registry.

    .venv/bin/python scripts/device_wheels.py [--all] [--python-version 3.12]
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: large compiled packages the device image holds (its package list names them)
LARGE = frozenset({"numpy", "pandas", "pyarrow", "numba", "llvmlite", "matplotlib",
                   "pillow", "fonttools", "contourpy", "kiwisolver"})
#: never carried: the device has its own CUDA build
SKIP = frozenset({"torch"})
#: what pip needs to build pipefill from the tree (pyproject's build-system)
BUILD = ("setuptools",)


def target_env(python: str) -> dict[str, str]:
    """Marker environment of CPython ``python`` (e.g. "3.12") on Linux x86-64."""
    env = dict(default_environment())
    env.update({"python_version": python, "python_full_version": f"{python}.0",
                "sys_platform": "linux", "platform_system": "Linux",
                "platform_machine": "x86_64", "os_name": "posix",
                "implementation_name": "cpython", "platform_python_implementation": "CPython"})
    return env


def _applies(req: Requirement, env: dict[str, str], extras: frozenset[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in extras | {""})


def closure(root: str, env: dict[str, str], skip: frozenset[str] = SKIP) -> dict[str, str]:
    """Canonical name -> installed version of every distribution ``root`` needs under
    ``env`` (not ``root`` itself; ``skip`` and what only they need left out)."""
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        dist = metadata.distribution(name)
        for line in dist.requires or []:
            req = Requirement(line)
            dep = canonicalize_name(req.name)
            if dep in skip or not _applies(req, env, extras):
                continue
            found[dep] = metadata.version(req.name)
            todo.append((dep, frozenset(req.extras)))
    return found


def requirements(python: str = "3.12", carry_all: bool = False) -> dict[str, str]:
    """The pins to carry: pipefill's closure (less LARGE and what only LARGE needs,
    unless ``carry_all``) + BUILD."""
    deps = closure("pipefill", target_env(python), SKIP if carry_all else SKIP | LARGE)
    deps.update({b: metadata.version(b) for b in BUILD})
    return dict(sorted(deps.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true",
                    help="also the large packages the device image holds (over 64 MiB)")
    ap.add_argument("--python-version", default="3.12", help="the device's Python")
    args = ap.parse_args()
    try:
        pins = requirements(args.python_version, args.all)
    except metadata.PackageNotFoundError as exc:
        print(f"error: {exc} is not installed here (install pipefill in this venv first)",
              file=sys.stderr)
        return 2
    print("\n".join(f"{n}=={v}" for n, v in pins.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
