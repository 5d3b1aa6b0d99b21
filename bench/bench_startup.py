"""Start-up cost of the command line: wall time of `pipefill --help`, `bound` and a small
`simulate` (best of N runs, each a fresh interpreter), and which heavy libraries each one
imported (from ``python -X importtime``).

Targets (printed, not asserted): `simulate` of the default scenario <= 0.5 s and `bound`
<= 0.3 s, beside bare `python -c pass` in the same run; `--help` and `bound` import
neither pandas, matplotlib nor torch; `simulate` of the default scenario (the fast path)
neither numba, pandas, pyarrow, simpy, matplotlib nor torch.
Run: .venv/bin/python bench/bench_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMANDS = {
    "--help": ["--help"],
    "bound": ["bound"],
    "simulate": ["simulate"],
    "simulate (12 chunks)": ["simulate", "--set", "run.chunks=12", "--set", "run.warmup=2"],
}
HEAVY = ("pandas", "matplotlib", "torch", "simpy", "numpy", "pydantic", "numba", "pyarrow")


def wall(argv: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipefill.cli", *argv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def heavy_imports(argv: list[str]) -> dict[str, float]:
    """Top-level heavy packages imported, with their cumulative import time (ms)."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipefill.cli", *argv],
                         check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    found: dict[str, float] = {}
    for line in res.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() in HEAVY:
            found[parts[2].strip()] = int(parts[1]) / 1000.0
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    wall(["--help"], 1)  # warm the file cache
    print(f"{'command':<22} {'best wall s':>11}  heavy imports (cumulative ms)")
    for label, argv in COMMANDS.items():
        secs = wall(argv, args.runs)
        heavy = heavy_imports(argv)
        shown = ", ".join(f"{k} {v:.0f}" for k, v in sorted(heavy.items())) or "none"
        print(f"{label:<22} {secs:>11.3f}  {shown}")
    best = float("inf")
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        best = min(best, time.perf_counter() - t0)
    print(f"{'(bare python)':<22} {best:>11.3f}")


if __name__ == "__main__":
    main()
