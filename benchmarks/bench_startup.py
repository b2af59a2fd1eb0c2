"""How fast the command line starts: `--help`, `--version` and `validate --offline examples/`, each the
median of N runs in a fresh interpreter, beside the interpreter's own start (`python -c pass`) measured in
the same run. The goal (issue 16): every one well under 200 ms on the 2-core CI machine.

It also names the heavy packages each command loaded (it should be none for these three), and with
`--importtime` prints the ten slowest imports of `validate --offline` (`python -X importtime`).

Run: python -m benchmarks.bench_startup [--runs N] [--importtime]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HEAVY = ("httpx", "werkzeug", "deepdiff", "sqlite3", "tqdm", "jsonschema", "reconciler.emulator")
GOAL_MS = 200.0
CASES: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "reconciler --help": ["-m", "reconciler", "--help"],
    "reconciler --version": ["-m", "reconciler", "--version"],
    "reconciler validate --offline examples/": ["-m", "reconciler", "validate", "--offline", str(EXAMPLES)],
}
# The same command lines, run in process after noting what was imported.
MODULES = """
import json, sys
from reconciler.cli import main
main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def median_ms(argv: list[str], runs: int) -> tuple[float, float]:
    """The median wall time and the median CPU time (user + system) of the child, in ms: on a shared
    machine the CPU time is the steadier figure."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, check=True)
        walls.append((time.perf_counter() - started) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def heavy_loaded(argv: list[str]) -> list[str]:
    if argv[:1] != ["-m"]:
        return []
    result = subprocess.run([sys.executable, "-c", MODULES, *argv[2:]], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    modules = json.loads(result.stderr.strip().splitlines()[-1])
    return sorted({h for h in HEAVY for m in modules if m == h or m.startswith(h + ".")})


def slowest_imports(argv: list[str], count: int = 10) -> list[tuple[int, str]]:
    """The `count` imports with the largest cumulative time (µs), from `python -X importtime`."""
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit():
                rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (the median is shown)")
    parser.add_argument("--importtime", action="store_true", help="also the slowest imports of validate --offline")
    args = parser.parse_args()
    print(f"Start-up, median of {args.runs} runs ({sys.executable}; load average {os.getloadavg()[0]:.1f}):")
    print(f"  {'':<42}{'wall':>10}{'cpu':>10}  {'wall / python -c pass':>22}")
    baseline = 0.0
    for label, argv in CASES.items():
        wall, cpu = median_ms(argv, args.runs)
        baseline = baseline or wall
        heavy = heavy_loaded(argv)
        verdict = "" if label.startswith("python") else "  ok" if wall < GOAL_MS else f"  over {GOAL_MS:.0f} ms"
        loaded = f"; loads {', '.join(heavy)}" if heavy else ""
        print(f"  {label:<42}{wall:7.1f} ms{cpu:7.1f} ms  {wall / baseline:20.1f}x{verdict}{loaded}")
    if args.importtime:
        print("Slowest imports of validate --offline (cumulative):")
        for micros, name in slowest_imports(CASES["reconciler validate --offline examples/"]):
            print(f"  {micros / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
