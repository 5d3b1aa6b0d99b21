"""Which cores each lane of ``scripts/device_check.sh`` runs on (standard library only).

The device check runs three lanes at once on a machine with enough cores: the
out-of-sample bench on the *separate* layout (stage0 and stage1 each pinned to an idle
core of its own, plus a core for the harness), the same bench on the *shared* layout
(both stages on one pinned core, plus a harness core) and the CUDA steps. Lanes get
whole physical cores (a core's SMT siblings stay in one lane, and a pinned stage
core's siblings in none), so no lane's work lands on another lane's pinned stage; the
idlest cores become the stage cores, and the lowest-numbered core (where interrupts
usually land) is kept for the system when there is room. With fewer physical cores
than the lanes need, the lanes run one after another, unrestricted, and only the
stage cores are chosen.

    python3 scripts/device_cores.py            # the plan as JSON
    python3 scripts/device_cores.py --shell    # KEY=value lines for the script to eval
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: physical cores each lane needs to run beside the others: separate = 2 stages +
#: harness, shared = 1 stage + harness, cuda = stage threads and harness
NEED = {"separate": 3, "shared": 2, "cuda": 2}


@dataclass(frozen=True)
class Plan:
    """Where the lanes run. Invariants: lane sets are disjoint; a stage core is in its
    lane's set and its SMT siblings are in no set; ``sets`` is empty unless concurrent."""

    #: the lanes run at once (each restricted to its set), or one after another
    concurrent: bool
    #: separate layout: (stage0 core, stage1 core); empty when the machine has one core
    separate: tuple[int, ...]
    #: shared layout: the one core of both stages
    shared: tuple[int, ...]
    #: lane -> the cpus its process may use (empty: not restricted)
    sets: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: one line saying why
    note: str = ""


def _groups(cpus: list[int], siblings: dict[int, frozenset[int]],
            busy: dict[int, float]) -> list[tuple[int, ...]]:
    """Physical cores (tuples of allowed logical cpus), idlest first."""
    allowed = set(cpus)
    groups = {tuple(sorted((siblings.get(c) or frozenset({c})) & allowed | {c}))
              for c in cpus}
    return sorted(groups, key=lambda g: (sum(busy.get(c, 0.0) for c in g) / len(g), g[0]))


def plan(cpus: list[int], siblings: dict[int, frozenset[int]],
         busy: dict[int, float]) -> Plan:
    """The lanes' cores from the allowed ``cpus``, their SMT ``siblings`` and how
    ``busy`` each was lately (0 idle .. 1 saturated)."""
    groups = _groups(cpus, siblings, busy)
    need = sum(NEED.values())
    system = min(groups, key=lambda g: g[0])
    pool = [g for g in groups if g != system] if len(groups) > need else groups
    if len(pool) < need:
        idle = sorted(cpus, key=lambda c: (busy.get(c, 0.0), c))
        pair = [g[0] for g in groups[:2]] if len(groups) >= 2 else idle[:2]
        return Plan(False, tuple(pair) if len(pair) == 2 else (), (idle[0],),
                    note=f"{len(groups)} physical cores (< {need}): lanes run one after "
                         "another")
    sep, shr = (pool[0][0], pool[1][0]), (pool[2][0],)
    sets = {"separate": (*sep, *pool[3]), "shared": (*shr, *pool[4]),
            "cuda": tuple(c for g in pool[5:] for c in g)}
    return Plan(True, sep, shr, {k: tuple(sorted(v)) for k, v in sets.items()},
                note=f"{len(groups)} physical cores of {len(cpus)} cpus: lanes run at once")


def _parse_list(text: str) -> frozenset[int]:
    """A kernel cpu list ("0-3,8")."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.update(range(int(lo), int(hi) + 1))
        elif part:
            out.add(int(part))
    return frozenset(out)


def read_siblings(cpus: list[int]) -> dict[int, frozenset[int]]:
    """Each cpu's SMT siblings (itself alone where the topology is not exposed)."""
    out = {}
    for c in cpus:
        path = Path(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list")
        try:
            out[c] = _parse_list(path.read_text())
        except (OSError, ValueError):
            out[c] = frozenset({c})
    return out


def _stat() -> dict[int, tuple[int, int]]:
    """cpu -> (idle jiffies incl. iowait, total jiffies) from /proc/stat."""
    out = {}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        name, *vals = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            nums = [int(v) for v in vals]
            out[int(name[3:])] = (nums[3] + (nums[4] if len(nums) > 4 else 0), sum(nums))
    return out


def read_busy(seconds: float = 0.5) -> dict[int, float]:
    """Each cpu's busy share over ``seconds`` (empty where /proc/stat is missing)."""
    a = _stat()
    time.sleep(seconds)
    b = _stat()
    out = {}
    for c, (idle, total) in b.items():
        if c in a and total > a[c][1]:
            out[c] = round(1.0 - (idle - a[c][0]) / (total - a[c][1]), 3)
    return out


def current() -> Plan:
    getter = getattr(os, "sched_getaffinity", None)
    cpus = sorted(getter(0)) if getter else list(range(os.cpu_count() or 1))
    return plan(cpus, read_siblings(cpus), read_busy())


def shell(p: Plan) -> str:
    """KEY=value lines (digits and commas only) for the script's ``eval``."""
    def csv(xs: tuple[int, ...]) -> str:
        return ",".join(map(str, xs))
    lines = [f"CONCURRENT={int(p.concurrent)}", f"SEP_CORES={csv(p.separate)}",
             f"SHR_CORES={csv(p.shared)}"]
    lines += [f"{lane.upper()}_SET={csv(p.sets.get(lane, ()))}" for lane in NEED]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shell", action="store_true", help="KEY=value lines instead of JSON")
    ap.add_argument("--json-out", type=Path, help="also write the plan as JSON here")
    args = ap.parse_args()
    p = current()
    if args.json_out:
        args.json_out.write_text(json.dumps(asdict(p)) + "\n")
    print(shell(p) if args.shell else json.dumps(asdict(p), indent=1))


if __name__ == "__main__":
    main()
