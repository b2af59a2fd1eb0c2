"""Golden plan cases: each folder under tests/cases holds state.yaml (catalog and current completions),
specs/ (the spec files), optional options.yaml (safety, limits, allow_deletes, partial), and the expected
plan as expected.txt, expected.json and expected.md.

State format (compact, for people to read and write):
    courses: [{id, title, lessons: [titles, in DisplayOrder]}]   lesson Ids are course id * 100 + position
    members: [{id, course, coworker, name, email, teams}]
    completions: [{id, member, lesson (title), created, system_id}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.config import DOCUMENTED_LIMITS, ClientLimits, Safety
from reconciler.model import Catalog, Completion, Course, Coworker, Lesson, Member
from reconciler.plan import Plan, apply_budgets, plan_changes
from reconciler.render import Labels, markdown, plan_dict, write_json, write_text
from reconciler.resolve import resolve
from reconciler.spec import load_specs

CASES = Path(__file__).parent / "cases"


def load_state(path: Path) -> tuple[Catalog, list[Completion]]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    catalog = Catalog()
    titles: dict[tuple[int, str], int] = {}
    for course in data.get("courses", []):
        catalog.courses[course["id"]] = Course(course["id"], course["title"])
        for position, title in enumerate(course.get("lessons", []), start=1):
            lesson_id = course["id"] * 100 + position
            catalog.lessons[lesson_id] = Lesson(lesson_id, course["id"], title, position)
            titles[(course["id"], title)] = lesson_id
    for member in data.get("members", []):
        teams = tuple(member.get("teams", []))
        catalog.members[member["id"]] = Member(member["id"], member["course"], member["coworker"], member["name"],
                                               teams)
        catalog.coworkers[member["coworker"]] = Coworker(member["coworker"], member["name"], member["email"], teams)
    completions = []
    for item in data.get("completions", []):
        member = catalog.members[item["member"]]
        lesson_id = titles[(member.course_id, item["lesson"])]
        created = item.get("created", "2026-01-01T00:00:00.000Z")
        completions.append(Completion(item["id"], member.id, lesson_id, created, item.get("updated", created),
                                      item.get("system_id"), f"uuid-{item['id']}", item["lesson"], member.full_name))
    return catalog, completions


def plan_case(folder: Path) -> tuple[Plan, Catalog]:
    """The case's plan (budgets applied) and the catalog it was made against."""
    plan, catalog, _ = _planned(folder)
    return plan, catalog


def render_case(folder: Path) -> dict[str, str]:
    plan, catalog, options = _planned(folder)
    limits = ClientLimits(**options["limits"]) if "limits" in options else DOCUMENTED_LIMITS
    doc = plan_dict(plan, Labels.from_catalog(catalog), target="https://spaces.nexudus.com",
                    spec_digest="golden", limits=limits)
    import io

    text, data = io.StringIO(), io.StringIO()
    write_text(doc, text)
    write_json(doc, data)
    return {"expected.txt": text.getvalue(), "expected.json": data.getvalue(), "expected.md": markdown(doc)}


def _planned(folder: Path) -> tuple[Plan, Catalog, dict[str, Any]]:
    options: dict[str, Any] = {}
    if (folder / "options.yaml").exists():
        options = yaml.safe_load((folder / "options.yaml").read_text()) or {}
    catalog, current = load_state(folder / "state.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # paths in messages are then as a user in that folder sees them
        specs = load_specs([Path("specs")])
    resolution = resolve(specs, catalog)
    plan = plan_changes(resolution, current, catalog, partial=options.get("partial", []))
    apply_budgets(plan, Safety(**options.get("safety", {})), options.get("allow_deletes"))
    return plan, catalog, options
