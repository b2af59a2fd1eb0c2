"""The stages of `reconciler plan specs --format json --out plan.json` after the read, at 50,000 members.

The space of benchmarks/bench_e2e.py (one course of 20 lessons, 10 completed a member, every member given
lessons 1 to 12 by one owned spec) served by the emulator in this process; read once, as `planning.make_plan`
reads it, then each stage timed on its own, best of `--repeat`: `plan_changes`, the plan document
(`apply_budgets`, `plan_dict`), `matrix_section`, and `save_plan` with the printed JSON echoed beside it, as
`--format json --out` writes both. Then the plan's text and Markdown forms, and a sha256 of each output (the
saved plan, the printed JSON, the text, the Markdown) and of the plan itself, to compare runs of two versions
of the code byte for byte (it runs in one folder, `bench-save-N` in the temporary folder: the spec's path is
part of the plan).

Run: python -m benchmarks.bench_save [--members 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from reconciler.client import NexudusClient
from reconciler.config import ClientLimits, Config, Credentials
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import Store
from reconciler.emulator.synthetic import build_courses, write_spec
from reconciler.foreign_yaml import load_spec_set
from reconciler.gc_pause import gc_paused
from reconciler.matrix import matrix_section
from reconciler.plan import apply_budgets, plan_changes
from reconciler.planning import save_plan
from reconciler.render import Labels, markdown, plan_dict, write_text
from reconciler.resolve import resolve
from reconciler.state import StateReader
from reconciler.target import LOCAL_BASE, Target

T = TypeVar("T")
OFF = ClientLimits(writes_per_minute=100_000_000, requests_per_minute=100_000_000, requests_per_hour=100_000_000,
                   min_interval_ms=0)


def best(repeat: int, run: Callable[[], T]) -> tuple[float, T]:
    """The least time of `repeat` runs of `run`, and what its last run returned."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:16]


def measure(members: int, repeat: int, work: Path) -> dict[str, Any]:
    store = Store()
    for title, emails in build_courses(store, 1, members, lessons=20, per_member=10):
        write_spec(work / "specs", emails, title, through=12)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    config = Config(target="local", target_origin="bench", base_dir=work, limits=OFF)
    specs = load_spec_set([work / "specs"])
    figures: dict[str, Any] = {}
    with httpx.Client(transport=InProcessTransport(app)) as http, gc_paused():  # as make_plan runs
        target = Target(NexudusClient(LOCAL_BASE, http, limits=OFF), "bench", Credentials())
        # The read, as `planning.make_plan` does it.
        reader = StateReader(target.client, target.cache)
        catalog = reader.catalog(specs)
        reader.release()
        resolution = resolve(specs, catalog)
        lesson_ids = {x.id for course_id in resolution.course_ids for x in catalog.lessons_of(course_id)}
        named = set().union(*(r.named_members for r in resolution.completions))
        markers = [r.spec.marker for r in resolution.completions if r.spec.mode == "owned"]
        current, partial = reader.completions(lesson_ids, named_members=named, markers=markers, catalog=catalog)

        figures["plan_changes"], plan = best(repeat, lambda: plan_changes(resolution, current, catalog,
                                                                          partial=partial))

        def document() -> dict[str, Any]:
            apply_budgets(plan, config.safety, None)
            return plan_dict(plan, Labels.from_catalog(catalog), target=target.description,
                             spec_digest=specs.digest, limits=config.limits, lazy=True)

        figures["plan_dict"], doc = best(repeat, document)
        figures["matrix_section"], doc["matrix"] = best(
            repeat, lambda: matrix_section(catalog, resolution.course_ids, current, plan.actions, named))
        out = work / "plan.json"
        echoed = io.StringIO()

        def save() -> None:
            echoed.seek(0)
            echoed.truncate()
            save_plan(doc, out, specs.files, echo=echoed)

        figures["save_plan"], _ = best(repeat, save)
        text = io.StringIO()
        figures["text"], _ = best(1, lambda: write_text(doc, text))
        figures["markdown"], shown = best(1, lambda: markdown(doc, full_plan_hint="`plan.json`"))
    store.close()
    figures["summary"] = doc["summary"]
    figures["digests"] = {
        "plan": sha(repr((plan.actions, plan.unchanged, plan.existing_in_scope, plan.warnings, plan.drift,
                          plan.blocked, plan.partial))),
        "plan.json": sha(out.read_bytes()), "printed": sha(echoed.getvalue()), "text": sha(text.getvalue()),
        "markdown": sha(shown)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    # One folder for every run: the spec's path is in every origin, so in the digests.
    folder = Path(tempfile.gettempdir()) / f"bench-save-{options.members}"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        found = measure(options.members, options.repeat, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = found["summary"]
    print(f"{options.members:,} members: {summary['create']:,} to create, {summary['unchanged']:,} unchanged "
          f"(best of {options.repeat})")
    stages = ("plan_changes", "plan_dict", "matrix_section", "save_plan")
    for stage in stages:
        print(f"  {stage:<15} {found[stage]:6.3f} s")
    print(f"  {'three stages':<15} {found['plan_changes'] + found['matrix_section'] + found['save_plan']:6.3f} s "
          "(plan_changes + matrix_section + save_plan)")
    print(f"  text {found['text']:.3f} s, markdown {found['markdown']:.3f} s (once each)")
    print("  sha256: " + ", ".join(f"{name} {digest}" for name, digest in found["digests"].items()))


if __name__ == "__main__":
    main()
