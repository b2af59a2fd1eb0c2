"""Reading one large spec file: the YAML loader that keeps every place, against what it replaced and the floor.

For each size: one spec naming N members by email (`through: Lesson 12`), as bench_e2e writes it. Each way of
reading it runs in a fresh interpreter, which reports its CPU time, wall time and the peak memory the load
added (max RSS after the load minus before; with --tracemalloc also the peak of Python's own allocations,
in a second run, as tracing slows the load several times):

- `yamlfile`: reconciler.yamlfile.load_file, values built from libyaml's events with a compact table of places;
- `before`: the loader it replaced (libyaml composes the node tree, then values and a dict of places per node
  are built from it), taken from the repository's history (commit BEFORE) when git can show it;
- `yaml.load`: PyYAML's own C loader (`yaml.load(text, CSafeLoader)`), which keeps no place and refuses
  nothing: the plain way to read YAML, for comparison;
- `load_specs`: the whole spec stage (reconciler.spec.load_specs: loading, schema, the spec model), for scale;
- `spec_set`: what `plan` calls (reconciler.foreign_yaml.load_spec_set: the above, after looking for other
  tools' YAML).

Ratios are against `before` when it ran (else against `yaml.load`). With --repeat N each way runs N times, each
in a fresh interpreter, and the figures of its run with the least CPU time are shown (the machine is shared).

Run: python -m benchmarks.bench_spec_load [--sizes 50000,200000] [--repeat 3] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.space import write_spec

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "6c934fe"  # the last commit whose yamlfile.py composed the node tree

MEASURE = """
import importlib.util, json, resource, sys, time, tracemalloc
from pathlib import Path
way, path, trace, before = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
import yaml
from reconciler import foreign_yaml, spec, yamlfile
if way == "before":
    found = importlib.util.spec_from_file_location("yamlfile_before", before)
    module = importlib.util.module_from_spec(found)
    sys.modules["yamlfile_before"] = module
    found.loader.exec_module(module)
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start_rss = rss()
if trace:
    tracemalloc.start()
wall, cpu = time.perf_counter(), time.process_time()
if way == "yamlfile":
    documents, problems = yamlfile.load_file(path)
    assert not problems, problems
elif way == "before":
    documents, problems = module.load_file(path)
    assert not problems, problems
elif way == "yaml.load":
    documents = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
elif way == "load_specs":
    documents = spec.load_specs([path])
else:
    documents = foreign_yaml.load_spec_set([path])
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
print(json.dumps({"cpu": cpu, "wall": wall, "rss": rss() - start_rss, "traced": peak}))
"""


def before_source(work: Path) -> Path | None:
    """The replaced loader, from git history, if this is a checkout that has it."""
    try:
        shown = subprocess.run(["git", "show", f"{BEFORE}:reconciler/yamlfile.py"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    path = work / "yamlfile_before.py"
    path.write_text(shown.stdout)
    return path


def measure(way: str, spec: Path, before: Path | None, *, trace: bool, repeat: int = 1) -> dict[str, Any]:
    """The figures of the run (of `repeat`) with the least CPU time."""
    runs = []
    for _ in range(repeat):
        result = subprocess.run([sys.executable, "-c", MEASURE, way, str(spec), "1" if trace else "0", str(before)],
                                capture_output=True, text=True, timeout=3600, check=True, cwd=ROOT)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    figures: dict[str, Any] = min(runs, key=lambda run: run["cpu"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50000,200000", help="members per spec, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way; the one with least CPU is shown")
    parser.add_argument("--tracemalloc", action="store_true", help="also the peak of Python's allocations")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-spec-load-"))
    try:
        before = before_source(work)
        ways = ["yamlfile", *(["before"] if before else []), "yaml.load", "load_specs", "spec_set"]
        if before is None:
            print(f"(the replaced loader is not reachable: git cannot show {BEFORE}; ratios are to yaml.load)")
        for members in (int(size) for size in options.sizes.split(",")):
            spec = write_spec(work / f"specs-{members}", [f"member{n}@example.com" for n in range(members)],
                              through=12)
            print(f"{members:,} members, {spec.stat().st_size / 2**20:.1f} MB of YAML:")
            found: dict[str, dict[str, Any]] = {}
            for way in ways:
                found[way] = measure(way, spec, before, trace=False, repeat=options.repeat)
                if options.tracemalloc:
                    found[way]["traced"] = measure(way, spec, before, trace=True)["traced"]
                figures = found[way]
                traced = f", traced peak {figures['traced']:6.0f} MiB" if figures["traced"] is not None else ""
                print(f"  {way:<10} {figures['cpu']:6.2f} s CPU, {figures['wall']:6.2f} s wall, "
                      f"+{figures['rss']:5.0f} MiB peak RSS{traced}", flush=True)
            base = found["before" if "before" in found else "yaml.load"]
            new = found["yamlfile"]
            ratio = (f"  yamlfile / {'before' if 'before' in found else 'yaml.load'}: "
                     f"{new['cpu'] / base['cpu']:.2f}x CPU, {new['rss'] / max(base['rss'], 1.0):.2f}x peak RSS")
            if new["traced"] is not None and base["traced"] is not None:
                ratio += f", {new['traced'] / base['traced']:.2f}x traced peak"
            print(ratio, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
