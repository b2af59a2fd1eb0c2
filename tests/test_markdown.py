"""The pull-request comment: the summary, then every delete as long as they fit (the rest counted per
member), creates after, a count of the rest by course and lesson in DisplayOrder; under 60,000 characters."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from reconciler.config import DOCUMENTED_LIMITS, Safety
from reconciler.markdown import ALLOW_DELETES_VARIABLE
from reconciler.model import Completion, Origin
from reconciler.plan import Change, Plan, apply_budgets
from reconciler.render import MARKDOWN_LIMIT, Labels, markdown, plan_dict

LESSONS = ["Welcome", "House rules", "Safety briefing", "Wi-Fi and printing", "Booking meeting rooms",
           "Kitchen etiquette", "Meet the community team", "Fire exits", "Lockers", "Events"]
# Lesson Ids deliberately out of DisplayOrder, as Nexudus allocates them: the table must follow the order.
LESSON_IDS = {title: 5000 - 7 * i for i, title in enumerate(LESSONS)}


def big_plan(members: int = 1_300, deletes_per_member: int = 1, creates: int = 1_700) -> dict[str, Any]:
    """3,000 actions by default: 1,300 deletes across two courses and two reasons, 1,700 creates."""
    actions = []
    record_id = 1
    for m in range(members):
        course = 1 if m % 3 else 2
        for d in range(deletes_per_member):
            lesson = LESSON_IDS[LESSONS[(2 + d) % len(LESSONS)]]
            reason, note = ("revoked", f"ticket {m}") if m % 5 == 0 else ("orphaned", None)
            actions.append(Change("delete", course, m, lesson, "onboarding", reason,
                                  Origin("completions/onboarding.yaml", 20 + m % 7, 9),
                                  Completion(record_id, m, lesson, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
                                  note=note, sort_key=(course, m, 2, d)))
            record_id += 1
    for i in range(creates):
        m = i % members
        course = 1 if m % 3 else 2
        lesson = LESSON_IDS[LESSONS[3 + i % 7]]
        actions.append(Change("create", course, m, lesson, "onboarding", "declared",
                              Origin("completions/onboarding.yaml", 12, 7), sort_key=(course, m, 1, i)))
    actions.sort(key=lambda a: a.sort_key)
    plan = Plan(actions=actions, existing_in_scope=4_000, unchanged=2_000)
    apply_budgets(plan, Safety())
    labels = Labels({1: "Onboarding 101", 2: "Community Host Training"},
                    {lesson_id: title for title, lesson_id in LESSON_IDS.items()},
                    {m: f"Alexandra Montgomery-Okonkwo {m}" for m in range(members)})
    doc = plan_dict(plan, labels, target="https://spaces.nexudus.com", spec_digest="d", limits=DOCUMENTED_LIMITS)
    # The lessons in DisplayOrder, as the plan's matrix carries them.
    doc["matrix"] = [{"course": {"id": c}, "lessons": [{"id": LESSON_IDS[t], "title": t} for t in LESSONS]}
                     for c in (1, 2)]
    return doc


def listed_and_counted(text: str) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(course, member) → deletes listed in full, and → deletes counted per member, read back from the text."""
    deletes = text.split("#### Deletes", 1)[1].split("\n#### ", 1)[0]
    listed: Counter[tuple[str, str]] = Counter()
    course = ""
    for line in deletes.splitlines():
        heading = re.fullmatch(r"\*\*(.+)\*\*", line)
        if heading:
            course = heading[1]
        elif line.startswith("| ") and not line.startswith("| Member |"):
            listed[(course, line.split(" | ")[0][2:])] += 1
    counted: Counter[tuple[str, str]] = Counter()
    for line in deletes.splitlines():
        found = re.fullmatch(r"- \*\*(.+)\*\* \([\d,]+\): (.+)", line)
        if found:
            for item in found[2].split(", "):
                name, _, times = item.partition(" ×")
                counted[(found[1], name)] += int(times or 1)
    return listed, counted


def test_a_comment_of_3000_actions_shows_every_delete_first_and_stays_under_the_limit() -> None:
    doc = big_plan()
    text = markdown(doc)
    assert len(text) < MARKDOWN_LIMIT
    assert doc["summary"]["delete"] == 1_300 and len(doc["actions"]) == 3_000
    # The summary and the block come first, then the deletes, then creates.
    assert text.startswith("### reconciler plan") and "**Plan: 1,700 to create, 1,300 to delete" in text
    assert text.index("**Blocked**") < text.index("#### Deletes") < text.index("#### Creates")
    listed, counted = listed_and_counted(text)
    expected = Counter((a["course"]["title"], a["member"]["name"]) for a in doc["actions"] if a["action"] == "delete")
    assert listed + counted == expected  # every delete appears, or is counted against its member
    assert sum(listed.values()) >= 150 and len(text) > 55_000  # as many in full as fit, not a token few
    row = "| Alexandra Montgomery-Okonkwo 5 | Safety briefing | revoked: ticket 5 | completions/onboarding.yaml:25:9 |"
    assert row in text
    # The blocked advice says what to change in CI.
    assert f"`{ALLOW_DELETES_VARIABLE}` to `1300`" in text and "`--allow-deletes 1300`" in text


def test_when_the_deletes_all_fit_they_are_all_listed_and_creates_follow() -> None:
    text = markdown(big_plan(members=120, creates=400))
    listed, counted = listed_and_counted(text)
    assert sum(listed.values()) == 120 and not counted and "#### Deletes (120: every one listed)" in text
    assert ("| + create | Community Host Training | Alexandra Montgomery-Okonkwo 0 | Wi-Fi and printing | declared |"
            in text)


def test_members_with_many_deletes_are_counted_with_their_number() -> None:
    text = markdown(big_plan(members=400, deletes_per_member=6, creates=0))
    listed, counted = listed_and_counted(text)
    assert sum(listed.values()) + sum(counted.values()) == 2_400 and counted
    assert re.search(r"Alexandra Montgomery-Okonkwo \d+ ×6", text)


def test_the_count_table_follows_display_order_and_a_cut_says_so() -> None:
    text = markdown(big_plan())
    table = text.split("#### Not listed above:", 1)[1]
    rows = [line.split(" | ")[1] for line in table.splitlines() if line.startswith("| Onboarding 101 |")]
    assert rows == [t for t in LESSONS if t in rows] and len(rows) >= 7  # DisplayOrder, not Id order

    # 400 lessons: the table is cut, and says so.
    actions = [Change("create", 1, m, m % 400, "s", "declared") for m in range(2_000)]
    labels = Labels({1: "Course"}, {i: f"Lesson {i}" for i in range(400)}, {m: f"M{m}" for m in range(2_000)})
    doc = plan_dict(Plan(actions=actions), labels, target="t", spec_digest="d", limits=DOCUMENTED_LIMITS)
    cut = markdown(doc)
    assert len(cut) < MARKDOWN_LIMIT and re.search(r"\| … cut: [\d,]+ more lessons \([\d,]+ actions\) not shown", cut)


def test_enrolments_name_no_lesson_and_a_partial_read_names_no_flag() -> None:
    enrol = Change("enroll", 3, 0, 0, "m", "migrated", coworker_id=77, name="Rosa Kim", sort_key=(3, 77, 0))
    labels = Labels({3: "Coffee 2027"}, {}, {})
    doc = plan_dict(Plan(actions=[enrol], partial=["reading completions failed"]), labels, target="t",
                    spec_digest="d", limits=DOCUMENTED_LIMITS)
    text = markdown(doc)
    assert "| ~ enrol | Coffee 2027 | Rosa Kim |  | migrated |" in text and "lesson 0" not in text
    plan = apply_budgets(Plan(actions=[enrol], partial=["x"]), Safety())
    doc = plan_dict(plan, labels, target="t", spec_digest="d", limits=DOCUMENTED_LIMITS)
    assert "No flag lifts this block" in markdown(doc) and "--allow-deletes" not in markdown(doc)


def test_names_cannot_inject_markup() -> None:
    delete = Change("delete", 1, 1, 2, "s", "revoked", record=Completion(9, 1, 2, "2026-01-01", "2026-01-01"),
                    note="</details><script>x</script> | pipe")
    labels = Labels({1: "C"}, {2: "L"}, {1: "<b>Eve</b>"})
    text = markdown(plan_dict(Plan(actions=[delete]), labels, target="t", spec_digest="d", limits=DOCUMENTED_LIMITS))
    assert "<script>" not in text and "<b>" not in text and "&lt;b&gt;Eve&lt;/b&gt;" in text and "\\| pipe" in text
