"""Checks the steps of ``scripts/device_check.sh`` run with the project's Python.

    from-tree              exit 0 when pipefill is importable from this working tree
    imports OUT.json       import pipefill and what it needs; versions, CUDA, cores
    missing-wheels DIR     the wheels in DIR whose distribution is not installed
    trace-info TRACE OUT   a trace's run metadata (device, kernels, dist backend, status)
    expect-fault ...       a fault run ended as it must: exit 3, one error line, the
                           partial trace written, no process of the run left alive

Each writes its findings as JSON (the summary reads them) and prints one line. Heavy
imports happen inside the subcommands, so ``from-tree`` works before an install.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the modules a device check needs (pipefill's dependencies, as imported)
MODULES = ("pipefill.cli", "pipefill.exec.threads.replay", "pipefill.exec.dist.rank",
           "simpy", "numpy", "pandas", "pyarrow", "pydantic", "typer", "rich",
           "matplotlib", "numba", "dask", "distributed", "torch")
#: the environment variable that tags the processes of one fault run
TOKEN_VAR = "PIPEFILL_DEVICE_CHECK_RUN"


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path)


def from_tree() -> int:
    try:
        import pipefill.sim as sim
    except ImportError:
        print("pipefill is not importable")
        return 1
    where = Path(sim.__file__ or "").resolve()
    ok = ROOT in where.parents
    print(f"pipefill.sim from {where.parent} ({'this tree' if ok else 'elsewhere'})")
    return 0 if ok else 1


def missing_wheels(folder: Path) -> int:
    """Print the wheels of ``folder`` whose distribution is not installed (any version)."""
    from importlib import metadata

    for wheel in sorted(folder.glob("*.whl")):
        name = wheel.name.split("-")[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            print(wheel)
    return 0


def _version(mod: Any) -> str:
    return str(getattr(mod, "__version__", "?"))


def _cuda(torch: Any) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"available": False}
    nccl = None
    try:
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception:  # no NCCL in this build: the dist step uses gloo
        nccl = None
    return {"available": True, "devices": torch.cuda.device_count(),
            "name": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
            "nccl": nccl}


def imports(out: Path) -> int:
    versions, missing = {}, {}
    for name in MODULES:
        try:
            versions[name] = _version(importlib.import_module(name))
        except Exception as exc:  # any import failure is a finding, not a crash
            missing[name] = f"{type(exc).__name__}: {exc}"
    info: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable,
                            "versions": versions, "missing": missing,
                            "cpus": os.cpu_count(), "loadavg": os.getloadavg()[0]}
    if "torch" in versions:
        info["cuda"] = _cuda(sys.modules["torch"])
    write_json(out, info)
    cuda = info.get("cuda", {})
    print(f"python {info['python']}, torch {versions.get('torch', 'missing')}, "
          + (f"CUDA {cuda['cuda']} on {cuda['devices']} x {cuda['name']}"
             if cuda.get("available") else "no CUDA device")
          + f", {info['cpus']} cpus; {len(versions)} of {len(MODULES)} modules import")
    for name, why in missing.items():
        print(f"missing: {name}: {why}")
    return 1 if missing else 0


def trace_info(trace_path: Path, out: Path) -> dict[str, Any]:
    from pipefill.traces.io import read_trace

    meta = read_trace(trace_path).meta
    par = meta.get("parallelism") or {}
    info = {"trace": str(trace_path), "device": meta.get("device"),
            "kernels": meta.get("kernels"), "backend": meta.get("backend"),
            "dist_backend": (meta.get("dist") or {}).get("backend"),
            "status": meta.get("status"), "error": meta.get("error"),
            "parallel": par.get("parallel"), "warnings": par.get("warnings", [])}
    write_json(out, info)
    return info


def alive_with(token: str) -> list[int]:
    """Pids of live processes whose environment carries ``token`` (this one excluded)."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def expect_fault(rc: int, stderr: Path, trace: Path, token: str, out: Path) -> int:
    """0 when the fault run ended crash-only: exit 3, one error line, a partial trace
    marked failed, no process of the run left."""
    errors = [ln for ln in stderr.read_text().splitlines() if ln.startswith("error:")]
    problems = []
    if rc != 3:
        problems.append(f"exit {rc}, expected 3")
    if len(errors) != 1:
        problems.append(f"{len(errors)} error lines, expected 1")
    info: dict[str, Any] = {}
    if not trace.exists():
        problems.append("no partial trace written")
    else:
        info = trace_info(trace, out.with_suffix(".trace.json"))
        if info.get("status") != "failed":
            problems.append(f"trace status {info.get('status')!r}, expected 'failed'")
    left = alive_with(token) if token else []
    if left:
        problems.append(f"{len(left)} process(es) of the run still alive: {left}")
    write_json(out, {"rc": rc, "error_line": errors[0] if errors else None,
                     "trace_status": info.get("status"), "left_alive": left,
                     "problems": problems, "as_expected": not problems})
    print("fault run ended as expected: " + errors[0] if not problems
          else "fault run NOT as expected: " + "; ".join(problems))
    return 1 if problems else 0


def _print_trace_info(args: argparse.Namespace) -> int:
    info = trace_info(args.trace, args.out)
    dist = f", {info['dist_backend']}" if info["dist_backend"] else ""
    print(f"trace: {info['device']}, {info['kernels']} kernels, backend {info['backend']}"
          f"{dist}, status {info['status']}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("from-tree").set_defaults(run=lambda a: from_tree())
    p = sub.add_parser("imports")
    p.add_argument("out", type=Path)
    p.set_defaults(run=lambda a: imports(a.out))
    p = sub.add_parser("missing-wheels")
    p.add_argument("folder", type=Path)
    p.set_defaults(run=lambda a: missing_wheels(a.folder))
    p = sub.add_parser("trace-info")
    p.add_argument("trace", type=Path)
    p.add_argument("out", type=Path)
    p.set_defaults(run=_print_trace_info)
    p = sub.add_parser("expect-fault")
    p.add_argument("--rc", type=int, required=True)
    p.add_argument("--stderr", type=Path, required=True)
    p.add_argument("--trace", type=Path, required=True)
    p.add_argument("--token", default="")
    p.add_argument("out", type=Path)
    p.set_defaults(run=lambda a: expect_fault(a.rc, a.stderr, a.trace, a.token, a.out))
    args = ap.parse_args()
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
