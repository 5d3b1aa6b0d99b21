"""What recording the wait lane costs the SimPy engine: chunks/s before and after.

Run: .venv/bin/python bench/bench_waits.py [--before main] [--chunks 2000] [--rounds 5]

``before`` is a git ref whose engine records no wait lane (default ``main``; the
commit before the lane was added, if main has it by now). Its source is exported to a
temporary directory and imported through a view of the ``pipefill`` namespace (as
``scripts/typecheck.sh`` builds one). Each round runs one fresh process per engine,
alternating before/after, so both see the same machine; each process times
``simulate`` of every case three times and keeps the best CPU time. The table gives
the median and range over the rounds, the after/before ratio of the medians, and the
rows the wait lane adds per chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sim", "exec", "traces", "reports", "cli", "probe")
TANDEM = ['policy={name="phase_pp", recompute="r1", d_in=2, d_out=2}',
          'costs.build={dist="lognormal", mean=10.0, cv=0.3}',
          'costs.denoise={dist="lognormal", mean=10.0, cv=0.3, steps=1}',
          "costs.decode=0", "transport.latency_ms=0", "transport.envelope_bytes=0",
          "transport.result_bytes=0", "transport.context_bytes=0"]
CASES = {"default (phase_pp r0a lag 1)": [], "tandem (phase_pp r1, D_in 2)": TANDEM,
         "phase_pp D_out 1": ["policy.d_out=1"]}
#: the timing run inside each process: prints {case: [chunks/s, rows, wait rows]}
INNER = """
import json, sys, time
from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.load import load_scenario
cases, chunks = json.loads(sys.argv[1]), int(sys.argv[2])
out = {}
for name, sets in cases.items():
    sc = load_scenario(None, [*sets, f"run.chunks={chunks}"])
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        trace = simulate(sc)
        best = min(best, time.process_time() - t0)
    ev = trace.events
    out[name] = [chunks / best, len(ev), int((ev["lane"] == "wait").sum())]
print(json.dumps(out))
"""


def _view(ref: str, tmp: Path) -> Path:
    """``ref``'s source under ``tmp``, importable as ``pipefill`` from the returned path."""
    src, view = tmp / "src", tmp / "view" / "pipefill"
    src.mkdir()
    view.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    for pkg in PACKAGES:
        (view / pkg).symlink_to(src / pkg)
    return view.parent


def _run(path: Path | None, chunks: int) -> dict[str, list[float]]:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    out = subprocess.run([sys.executable, "-c", INNER, json.dumps(CASES), str(chunks)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="main", help="git ref of the engine without waits")
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runs: dict[str, list[dict[str, list[float]]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        view = _view(args.before, Path(tmp))
        for _ in range(args.rounds):
            runs["before"].append(_run(view, args.chunks))
            runs["after"].append(_run(None, args.chunks))
    print(f"{args.chunks} chunks, {args.rounds} rounds, before = {args.before}")
    print(f"{'case':30} {'before chunks/s':>22} {'after chunks/s':>22} {'ratio':>6} "
          f"{'wait rows/chunk':>15}")
    for case in CASES:
        b = [r[case][0] for r in runs["before"]]
        a = [r[case][0] for r in runs["after"]]
        waits = runs["after"][0][case][2] / args.chunks
        cell = {k: f"{statistics.median(v):7.0f} ({min(v):.0f}-{max(v):.0f})"
                for k, v in (("b", b), ("a", a))}
        ratio = statistics.median(a) / statistics.median(b)
        print(f"{case:30} {cell['b']:>22} {cell['a']:>22} {ratio:6.2f} {waits:15.2f}")


if __name__ == "__main__":
    main()
