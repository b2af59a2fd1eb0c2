"""The HTML review page in a real browser: Debian's Chromium, headless, driven by playwright (which
downloads no browser of its own). The demo's plan is drawn, its matrix read back cell by cell against
the JSON plan, filters clicked and their counts checked, the action table read row by row, and a
screenshot taken; the page must make no request beyond loading itself.

Skipped, saying why, where there is no Chromium (`.ci/install-browser` installs it) or no playwright.
Screenshots land in $RECONCILER_SCREENSHOTS when it is set (CI can upload them), else in tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.render import format_json
from reconciler.render_html import html_page

from .synthetic_plan import plan_document

CHROMIUM = os.environ.get("RECONCILER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
MARK = {"none": "", "kept": "✓", "create": "+", "delete": "−", "dedupe": "✓−"}

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                     "(pip install -e '.[test]'); it drives the system's Chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no browser: Chromium is not at {CHROMIUM} (run .ci/install-browser, or set RECONCILER_CHROMIUM)",
                allow_module_level=True)

# Each test drives a real Chromium; the module's tests share one per worker (the `browser` fixture, each with
# a profile of its own); the group keeps them on one worker where xdist still honours it.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, with a fresh profile (--user-data-dir) of its own."""
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


class Opened:
    """A page loaded from a file, with every request it made and every script error it raised."""

    def __init__(self, context: Any, path: Path) -> None:
        self.page = context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(path.as_uri())
        # Functions, not expression strings: the page's CSP forbids eval, which playwright uses for strings.
        self.page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=60_000)
        self.uri = path.as_uri()

    def external(self) -> list[str]:
        return [url for url in self.requests if url != self.uri]


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("RECONCILER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- what the JSON plan says each cell is, worked out here independently ------------------------

def expected_matrix(doc: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    """(course Id, row key) → {name, enrol, cells: {lesson Id: state}} from the JSON plan alone."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    lessons: dict[int, list[int]] = {}
    for section in doc["matrix"]:
        course = section["course"]["id"]
        lessons[course] = [x["id"] for x in section["lessons"]]
        for member in section["members"]:
            rows[(course, f"m{member['id']}")] = {
                "name": member["name"], "enrol": False,
                "cells": {lesson: "kept" if bit == "1" else "none"
                          for lesson, bit in zip(lessons[course], member["kept"], strict=True)}}
    for action in doc["actions"]:
        course = action["course"]["id"]
        member_id = action["member"]["id"]
        key = f"m{member_id}" if member_id is not None else f"c{action['coworker_id']}"
        row = rows.setdefault((course, key), {"name": action["member"]["name"], "enrol": False,
                                              "cells": {lesson: "none" for lesson in lessons[course]}})
        if action["action"] == "enroll":
            row["enrol"] = True
            continue
        lesson = action["lesson"]["id"]
        if action["action"] == "create":
            row["cells"][lesson] = "create"
        else:
            row["cells"][lesson] = "dedupe" if row["cells"][lesson] in ("kept", "dedupe") else "delete"
    return rows


READ_GRID = """async (index) => {
  const box = document.querySelector(`[data-grid="${index}"]`);
  const lessons = [...box.querySelectorAll('.lh')].map((h) => +h.dataset.lesson);
  const rows = {};
  const frame = () => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  box.scrollTop = 0;
  for (;;) {
    await frame();
    for (const row of box.querySelectorAll('.r[data-key]')) {
      rows[row.dataset.key] = {
        name: row.querySelector('.n button').textContent,
        enrol: row.querySelector('[data-enrol]') !== null,
        cells: [...row.querySelectorAll('.x')].map((x) => [x.dataset.state, x.textContent, x.title]),
      };
    }
    if (box.scrollTop + box.clientHeight >= box.scrollHeight - 1) break;
    box.scrollTop += Math.max(24, box.clientHeight / 2);
  }
  return {lessons, rows, inDom: box.querySelectorAll('.r[data-key]').length};
}"""

READ_TABLE = """async () => {
  const box = document.getElementById('atable'), rows = {};
  const frame = () => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  box.scrollTop = 0;
  for (;;) {
    await frame();
    for (const row of box.querySelectorAll('.arow[data-action]'))
      rows[row.dataset.action] = [...row.children].map((cell) => cell.textContent);
    if (box.scrollTop + box.clientHeight >= box.scrollHeight - 1) break;
    box.scrollTop += Math.max(24, box.clientHeight / 2);
  }
  return rows;
}"""


def in_course(actions: list[dict[str, Any]], section: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in actions if a["course"]["id"] == section["course"]["id"]]


SHOWN = "(n) => document.querySelector('#counts [data-count=members]').textContent === n"


def counts(page: Any, where: str = "#counts") -> dict[str, int]:
    found = page.eval_on_selector_all(f"{where} [data-count]",
                                      "(spans) => spans.map((s) => [s.dataset.count, s.textContent])")
    return {name: int(text.replace(",", "")) for name, text in found}


@pytest.fixture
def demo_plan(demo: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], Path]:
    assert main(["plan", "--out", "plan.json", "--out-html", "plan.html"]) == 0
    capsys.readouterr()
    return json.loads((demo / "plan.json").read_text()), demo / "plan.html"


def test_the_browser_reads_the_matrix_back_cell_by_cell(browser: Any, demo_plan: tuple[dict[str, Any], Path],
                                                        tmp_path: Path) -> None:
    doc, page_file = demo_plan
    opened = Opened(browser, page_file)
    page = opened.page
    expected = expected_matrix(doc)
    courses = [section["course"]["id"] for section in doc["matrix"]]
    seen_rows = 0
    for index, course in enumerate(courses):
        drawn = page.evaluate(READ_GRID, index)
        lessons = [x["id"] for x in doc["matrix"][index]["lessons"]]
        assert drawn["lessons"] == lessons
        mine = {key: row for (c, key), row in expected.items() if c == course}
        assert set(drawn["rows"]) == set(mine), course
        for key, row in drawn["rows"].items():
            want = mine[key]
            assert row["name"] == want["name"] and row["enrol"] == want["enrol"], key
            for lesson, (state, mark, title) in zip(lessons, row["cells"], strict=True):
                assert state == want["cells"][lesson], (course, row["name"], lesson)
                assert mark == MARK[state]
                assert title.startswith(f"{row['name']} · ")
            seen_rows += 1
    assert seen_rows == len(expected)
    # The reason is on hover: Carol's revoked Welcome names the ticket and the spec line.
    onboarding = page.evaluate(READ_GRID, 0)
    carol = next(r for r in onboarding["rows"].values() if r["name"] == "Carol Jensen")
    state, _, title = carol["cells"][0]
    assert state == "delete" and "revoked — marked complete by mistake, ticket 812" in title
    assert "onboarding.yaml:23" in title and "spec onboarding-101" in title

    # The counts with no filter are the plan's summary.
    summary = doc["summary"]
    shown = counts(page)
    assert (shown["create"], shown["delete"], shown["enroll"]) == (summary["create"], summary["delete"],
                                                                   summary["enroll"])
    assert shown["members"] == len(expected)
    assert opened.errors == [] and opened.external() == []

    shot = screenshot_dir(tmp_path) / "plan-demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_filters_move_the_counts_and_the_action_table(browser: Any, demo_plan: tuple[dict[str, Any], Path],
                                                      tmp_path: Path) -> None:
    doc, page_file = demo_plan
    opened = Opened(browser, page_file)
    page = opened.page
    actions = doc["actions"]
    expected = expected_matrix(doc)

    # Show: with something to delete.
    page.select_option("#f-action", "delete")
    deleting = {(a["course"]["id"], a["member"]["id"]) for a in actions if a["action"] == "delete"}
    deletes = [i for i, a in enumerate(actions) if a["action"] == "delete"]
    got = counts(page)
    assert (got["members"], got["create"], got["delete"], got["enroll"]) == (len(deleting), 0, len(deletes), 0)
    table = page.evaluate(READ_TABLE)
    assert sorted(int(i) for i in table) == deletes
    assert page.text_content("#actions-count") == f"{len(deletes)} of {len(actions)}"

    # Team Sales, in Onboarding 101 only, then its lesson Welcome.
    page.click("#f-reset")
    onboarding = doc["matrix"][0]
    page.select_option("#f-course", str(0))
    page.select_option("#f-team", label="Sales")
    sales = [m for m in onboarding["members"] if "Sales" in m["teams"]]
    sales_ids = {m["id"] for m in sales}
    in_sales = [a for a in actions if a["course"]["id"] == onboarding["course"]["id"]
                and a["member"]["id"] in sales_ids]
    got = counts(page)
    assert got["members"] == len(sales)
    assert got["create"] == sum(1 for a in in_sales if a["action"] == "create")
    assert got["delete"] == sum(1 for a in in_sales if a["action"] == "delete")
    assert got["now"] == sum(m["kept"].count("1") for m in sales) + got["delete"]
    page.select_option("#f-lesson", label="1. Welcome")
    welcome = onboarding["lessons"][0]["id"]
    got = counts(page)
    assert got["create"] == sum(1 for a in in_sales if a["action"] == "create" and a["lesson"]["id"] == welcome)
    assert got["now"] == sum(m["kept"][0] == "1" for m in sales)
    assert page.is_hidden('[data-course="1"]')  # one course shown

    # Search, then a member followed across courses by a click on her name.
    page.click("#f-reset")
    rosa = [row for row in expected.values() if row["name"] == "Rosa Kim"]
    assert len(rosa) >= 3
    page.fill("#f-search", "rosa")
    page.wait_for_function(SHOWN, arg=str(len(rosa)))
    page.fill("#f-search", "")
    page.wait_for_function(SHOWN, arg=str(len(expected)))
    page.select_option("#f-course", str(4))  # Coffee Bar Basics 2027, where Rosa is enrolled by this apply
    page.locator('[data-grid="4"] .r[data-key^="c"]', has_text="Rosa Kim").locator("button[data-who]").click()
    page.select_option("#f-course", "-1")
    assert counts(page)["members"] == len(rosa)  # the same coworker, in every course
    assert page.is_visible("#f-member") and "Rosa Kim" in (page.text_content("#f-member") or "")

    # Sorted by name, then reversed by a click on the column's heading.
    page.click("#f-reset")
    page.select_option("#f-course", str(0))
    page.uncheck("#f-group")
    names = sorted((m["name"] for m in onboarding["members"]), key=str.casefold)
    first = '[data-grid="0"] .r[data-key] .n button'
    assert page.text_content(first) == names[0]
    page.click('[data-grid="0"] [data-sort]')
    assert page.text_content(first) == names[-1]
    page.select_option("#f-sort", "changes")
    busiest = Counter(a["member"]["name"] for a in in_course(actions, onboarding))
    assert page.text_content(first) == min(busiest, key=lambda name: (-busiest[name], name.casefold()))

    # Cleared: the whole action list, row by row as in the JSON plan.
    page.click("#f-reset")
    table = page.evaluate(READ_TABLE)
    assert len(table) == len(actions)
    for index, action in enumerate(actions):
        number, kind, course, member, lesson, why, record, spec, origin = table[str(index)]
        assert number == str(index + 1) and kind.endswith(action["action"].replace("enroll", "enrol"))
        assert (course, member, spec) == (action["course"]["title"], action["member"]["name"], action["spec"])
        assert lesson == ("" if action["action"] == "enroll" else action["lesson"]["title"])
        assert origin == (action["origin"] or "") and why.startswith(action["reason"])
        if action["action"] == "delete":
            assert record.startswith(f"#{action['record']['Id']}, completed ")
    assert opened.errors == [] and opened.external() == []
    page.screenshot(path=str(screenshot_dir(tmp_path) / "plan-demo-filtered.png"))


def test_hostile_names_are_drawn_as_text(browser: Any, demo_plan: tuple[dict[str, Any], Path]) -> None:
    doc, page_file = demo_plan
    evil = "</script><script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
    doc["matrix"][0]["members"][0]["name"] = evil
    doc["matrix"][0]["lessons"][0]["title"] = "<b onmouseover=window.pwned=3>Welcome</b>"
    page_file.write_text(html_page(doc))
    opened = Opened(browser, page_file)
    assert opened.page.evaluate("window.pwned") is None
    names = opened.page.eval_on_selector_all('[data-grid="0"] .n button', "(b) => b.map((x) => x.textContent)")
    assert evil in names
    assert opened.errors == [] and opened.external() == []


def test_direction_overrides_and_controls_are_drawn_as_escapes(browser: Any,
                                                                demo_plan: tuple[dict[str, Any], Path]) -> None:
    """A name or title with a direction override (U+202E) reorders what its row reads, a delete as a create: the
    page draws it as its escape, as the text plan and the Markdown do, in the script's parts and in the static."""
    doc, page_file = demo_plan
    doc["matrix"][0]["members"][0]["name"] = "Eve \u202e evil\r"
    doc["matrix"][0]["course"]["title"] = "Course \u2066x\u2069"
    doc["matrix"][0]["lessons"][0]["title"] = "Welcome\u200f\x1b[2K"
    doc["warnings"] = ["a warning \u202e about nothing"]
    page_file.write_text(html_page(doc))
    opened = Opened(browser, page_file)
    names = opened.page.eval_on_selector_all('[data-grid="0"] .n button', "(b) => b.map((x) => x.textContent)")
    assert "Eve \\u202e evil\\r" in names
    text = opened.page.evaluate("document.body.innerText")
    assert "a warning \\u202e about nothing" in text and "Welcome\\u200f\\x1b[2K" in text
    assert not {"\u202e", "\u2066", "\u2069", "\u200f", "\x1b", "\r"} & set(text)
    assert opened.errors == [] and opened.external() == []


def test_report_page_draws_the_state(browser: Any, demo: Path, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    assert main(["report", "--format", "html"]) == 0
    (demo / "report.html").write_text(capsys.readouterr().out)
    opened = Opened(browser, demo / "report.html")
    page = opened.page
    drawn = page.evaluate(READ_GRID, 0)
    states = Counter(state for row in drawn["rows"].values() for state, _, _ in row["cells"])
    assert set(states) <= {"kept", "none"} and states["kept"] == counts(page, '[data-counts="0"]')["now"]
    page.select_option("#f-action", "complete")
    assert counts(page, '[data-counts="0"]')["members"] == sum(
        1 for row in drawn["rows"].values() if all(state == "kept" for state, _, _ in row["cells"]))
    assert page.query_selector("#atable") is None and opened.errors == [] and opened.external() == []
    page.screenshot(path=str(screenshot_dir(tmp_path) / "report-demo.png"))


def test_a_large_plan_is_virtualised_and_quick(browser: Any, tmp_path: Path) -> None:
    doc = plan_document(3_000)
    page_file = tmp_path / "large.html"
    page_file.write_text(html_page(doc))
    (tmp_path / "large.json").write_text(format_json(doc))
    opened = Opened(browser, page_file)
    page = opened.page
    assert float(page.evaluate("window.reconcilerReady")) < 10_000
    assert page.eval_on_selector_all('[data-grid="0"] .r', "(rows) => rows.length") < 120
    page.uncheck("#f-group")
    page.eval_on_selector('[data-grid="0"]', "(box) => { box.scrollTop = box.scrollHeight; }")
    page.wait_for_function("(name) => [...document.querySelectorAll('[data-grid=\"0\"] .r[data-key]')].some("
                           "(r) => r.textContent.includes(name))", arg="Member 03000")
    got = counts(page)
    summary = doc["summary"]
    assert (got["members"], got["create"], got["delete"]) == (3_000, summary["create"], summary["delete"])
    assert opened.errors == [] and opened.external() == []
