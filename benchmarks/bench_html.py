"""The HTML review page for 20,000 members × 30 lessons: its size, the time to build it, and the time a
headless Chromium takes to render it and to follow a filter.

Figures are printed beside floors measured in the same run: for the file, the JSON plan the page is
made from; for the browser, a page that only parses the same data (JSON.parse of the embedded model,
no drawing), and a blank page (the browser's own start-up). The browser part needs Chromium
(/usr/bin/chromium, or RECONCILER_CHROMIUM) and the `playwright` package; without them it says so
and prints the Python figures only.

Run: python -m benchmarks.bench_html
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from reconciler.config import DOCUMENTED_LIMITS
from reconciler.matrix import course_grids, matrix_section
from reconciler.planning import save_plan
from reconciler.render import Labels, format_json, plan_dict
from reconciler.render_html import _embed, html_page, page_data
from reconciler.schemas import validator
from tests.synthetic_plan import LESSONS, MEMBERS, build

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def timed(label: str, started: float) -> float:
    elapsed = time.perf_counter() - started
    print(f"  {label}: {elapsed:.2f} s")
    return elapsed


def browser_figures(page_file: Path, data: dict[str, Any], folder: Path, members: int) -> None:
    chromium = os.environ.get("RECONCILER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser: skipped (the playwright package is not installed: pip install -e '.[test]')")
        return
    if not Path(chromium).exists():
        print(f"browser: skipped (no Chromium at {chromium}; .ci/install-browser installs it)")
        return
    floor_file = folder / "floor.html"
    floor_file.write_text('<!DOCTYPE html><meta charset="utf-8"><script type="application/json" id="d">'
                          f"{_embed(data)}</script><script>const d = JSON.parse(document.getElementById('d')"
                          ".textContent); window.reconcilerReady = performance.now();</script>")
    blank_file = folder / "blank.html"
    blank_file.write_text("<!DOCTYPE html><script>window.reconcilerReady = performance.now();</script>")
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(  # a fresh profile: the --user-data-dir of this run
            str(folder / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        try:
            def load(path: Path) -> tuple[float, float, Any]:
                page = browser.new_page()
                external: list[str] = []
                page.on("request", lambda r: external.append(r.url) if r.url != path.as_uri() else None)
                started = time.perf_counter()
                page.goto(path.as_uri(), timeout=120_000)
                page.wait_for_function("() => window.reconcilerReady !== undefined", timeout=120_000)
                wall = time.perf_counter() - started
                ready = float(page.evaluate("window.reconcilerReady")) / 1000
                assert not external, f"the page made requests: {external[:3]}"
                return wall, ready, page

            blank_wall, _, blank = load(blank_file)
            blank.close()
            floor_wall, floor_ready, floor = load(floor_file)
            floor.close()
            wall, ready, page = load(page_file)
            painted = float(page.evaluate("""() => new Promise((done) =>
                requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now()))))""")) / 1000
            scroll_ms = float(page.evaluate("""() => new Promise((done) => {
                const g = document.querySelector('[data-grid="0"]'), t0 = performance.now();
                g.scrollTop = g.scrollHeight;
                requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0))); })"""))
            rows_in_dom = int(page.evaluate("document.querySelectorAll('[data-grid] .r').length"))
            kind = "delete" if any(why[0] == "delete" for why in data["why"]) else "create"
            started = time.perf_counter()
            filter_ms = float(page.evaluate("""(kind) => {
                const t0 = performance.now(), s = document.getElementById('f-action');
                s.value = kind; s.dispatchEvent(new Event('change'));
                return performance.now() - t0; }""", kind))
            shown = page.text_content("#counts") or ""
            filter_wall = time.perf_counter() - started
            shot = folder / "page.png"
            page.screenshot(path=str(shot))
            page.close()
        finally:
            browser.close()
    print(f"browser (Chromium {chromium}): page drawn {ready:.2f} s after navigation, painted by {painted:.2f} s "
          f"({wall:.2f} s wall, loading the file included)")
    print(f"  floor: parse the same data only {floor_ready:.2f} s ({floor_wall:.2f} s wall); blank page "
          f"{blank_wall:.2f} s wall; ratio page/parse-floor {ready / max(floor_ready, 1e-3):.1f}x")
    print(f"  filter 'with something to {kind}': {filter_ms:.0f} ms in the page ({filter_wall:.2f} s wall); "
          f"counts now: {shown.strip()[:110]}")
    print(f"  scroll to the last member: {scroll_ms:.0f} ms to draw; rows in the DOM: {rows_in_dom:,} "
          f"(of {members:,}); no external request; screenshot {shot}")
    print("  goal: ready within 5 s, a filter within 1 s")


def scenario(title: str, *, fresh: bool) -> None:
    print(f"{title}: HTML page for {MEMBERS:,} members x {LESSONS} lessons")
    started = time.perf_counter()
    plan, catalog, current, named = build(fresh=fresh)
    timed("build the space and plan it", started)
    started = time.perf_counter()
    section = matrix_section(catalog, [1], current, plan.actions, named)
    timed("matrix section", started)
    doc = plan_dict(plan, Labels.from_catalog(catalog), target="https://spaces.nexudus.com", spec_digest="bench",
                    limits=DOCUMENTED_LIMITS)
    without = len(format_json(doc).encode())
    doc["matrix"] = section
    folder = Path(tempfile.mkdtemp(prefix="bench-html-"))
    plan_file = folder / "plan.json"
    save_plan(doc, plan_file)
    with_matrix = plan_file.stat().st_size
    started = time.perf_counter()
    errors = list(validator("plan").iter_errors({**doc, "actions": []}))
    assert not errors, errors[0].message
    timed("schema check of the matrix section (what it adds to loading the saved plan)", started)
    print(f"  plan: {plan.count('create'):,} creates, {plan.count('delete'):,} deletes, {plan.unchanged:,} unchanged")
    print(f"  JSON plan (the floor: what the page draws): {with_matrix / 2**20:,.1f} MiB, of which the matrix "
          f"section {(with_matrix - without) / 2**20:,.1f} MiB")
    started = time.perf_counter()
    page = html_page(doc)
    build_time = timed("render the HTML page", started)
    page_file = folder / "plan.html"
    page_file.write_text(page, encoding="utf-8")
    size = page_file.stat().st_size
    print(f"  HTML page: {size / 2**20:,.1f} MiB ({size / with_matrix:.0%} of the JSON plan), built in "
          f"{build_time:.2f} s")
    grids, placements = course_grids(doc)
    browser_figures(page_file, page_data(doc, grids, placements, is_plan=True), folder, MEMBERS)
    print(f"  files in {folder}")


def main() -> None:
    scenario("A mixed plan", fresh=False)
    scenario("The worst case, every cell a create", fresh=True)


if __name__ == "__main__":
    main()
