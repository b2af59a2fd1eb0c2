"""A plan document whose actions are made as they are written (`ActionEntries`) renders byte for byte as the
same document holding a list of action dicts, in JSON and in text, and a plan saved so still applies."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.actions import actions_digest, document_digest
from reconciler.config import DOCUMENTED_LIMITS
from reconciler.model import Completion, Origin
from reconciler.plan import Change, Plan
from reconciler.planning import load_plan, save_plan
from reconciler.render import ActionEntries, Labels, action_dict, format_json, plan_dict, write_json, write_text
from reconciler.state import ById

from .conftest import run_cli

LABELS = Labels({1: "Course", 2: "Zweiter Kurs \u00e9"}, {11: "Welcome", 12: "Safety \"first\"", 13: ""},
                {101: "Ann", 102: "B\u00f8 \u2603", 103: ""})
ORIGINS = [None, Origin("specs/a.yaml", 3, 5), Origin("specs/b.yaml", 10), Origin("sp\u00e9c.yaml", 1)]


@st.composite
def changes(draw: st.DrawFn) -> Change:
    kind = draw(st.sampled_from(["create", "create", "delete", "enroll"]))
    course = draw(st.sampled_from([1, 2, 3]))
    member = draw(st.sampled_from([0, 101, 102, 103, 104]))
    lesson = draw(st.sampled_from([0, 11, 12, 13, 14]))
    record = None
    if kind == "delete":
        record = Completion(draw(st.integers(1, 10**9)), member, lesson, draw(st.sampled_from(["", "2026-01-01"])),
                            "2026-01-02T00:00:00.123Z", draw(st.sampled_from([None, "reconciler:a"])),
                            draw(st.sampled_from([None, "u1"])), "Welcome", "Ann")
    return Change(kind, course, member, lesson, draw(st.sampled_from(["a", "sp\u00e9c"])),  # type: ignore[arg-type]
                  draw(st.sampled_from(["declared", "revoked", "migrated"])), draw(st.sampled_from(ORIGINS)), record,
                  system_id=draw(st.sampled_from([None, "reconciler:a"])),
                  note=draw(st.sampled_from([None, "", "from 'X' (#3)"])),
                  coworker_id=draw(st.sampled_from([None, 7])), name=draw(st.sampled_from([None, "New \u00fc"])),
                  twin=draw(st.sampled_from([None, "2:7:12"])))


def documents(actions: list[Change]) -> tuple[dict[str, object], dict[str, object]]:
    plan = Plan(actions=actions, unchanged=3, warnings=["w"], drift=["d"])
    made = {"labels": LABELS, "target": "t", "spec_digest": "d", "limits": DOCUMENTED_LIMITS}
    listed = plan_dict(plan, **made)  # type: ignore[arg-type]
    lazy = plan_dict(plan, **made, lazy=True)  # type: ignore[arg-type]
    return listed, lazy


@settings(max_examples=200, deadline=None)
@given(st.lists(changes(), max_size=30), st.booleans())
def test_lazy_actions_render_exactly_as_the_list(actions: list[Change], in_plan_order: bool) -> None:
    if in_plan_order:  # the planner's order: by course and member, so the text streams member by member
        actions = sorted(actions, key=lambda c: (c.course_id, c.member_id))
    listed, lazy = documents(actions)
    assert isinstance(lazy["actions"], ActionEntries) and isinstance(listed["actions"], list)
    assert lazy["actions"] == listed["actions"] and list(lazy["actions"]) == listed["actions"]
    assert format_json(lazy) == format_json(listed)
    for color in (False, True):
        text_listed, text_lazy = io.StringIO(), io.StringIO()
        write_text(listed, text_listed, color=color)
        write_text(lazy, text_lazy, color=color)
        assert text_lazy.getvalue() == text_listed.getvalue()
    assert list(lazy["actions"].encoded()) == [json.dumps(action_dict(c, LABELS), ensure_ascii=False)
                                               for c in actions]


def test_lazy_actions_index_like_a_list() -> None:
    actions = [Change("create", 1, 101, 11, "a", "declared", ORIGINS[1], system_id="reconciler:a"),
               Change("enroll", 2, 0, 0, "a", "migrated", None, coworker_id=7, name="New")]
    listed, lazy = documents(actions)
    entries = lazy["actions"]
    assert isinstance(entries, ActionEntries) and len(entries) == 2 and entries
    assert entries[1] == listed["actions"][1] and entries[-1]["action"] == "enroll"  # type: ignore[index]
    assert entries[:1] == listed["actions"][:1]  # type: ignore[index]
    assert entries != listed["actions"][:1] and not ActionEntries([], LABELS)  # type: ignore[index]


def test_text_of_interleaved_courses_groups_them_as_before() -> None:
    """A migration's source deletes sort beside its target creates: the groups are not runs, and the text
    still gathers each course and member once, in the order first seen."""
    record = Completion(5, 101, 11, "2026-01-01", "2026-01-01")
    actions = [Change("create", 2, 102, 12, "m", "migrated", None, system_id="reconciler:m", coworker_id=7),
               Change("delete", 1, 101, 11, "m", "migrated", None, record),
               Change("create", 2, 102, 13, "m", "migrated", None, system_id="reconciler:m", coworker_id=7)]
    listed, lazy = documents(actions)
    out = io.StringIO()
    write_text(lazy, out)
    text = out.getvalue()
    assert text.count("(course 2)") == 1 and text.count("(course 1)") == 1
    assert text.index("Safety") < text.index("+ create   lesson 13") < text.index("- delete")
    expected = io.StringIO()
    write_text(listed, expected)
    assert text == expected.getvalue()


def test_write_json_streams_the_same_bytes() -> None:
    actions = [Change("create", 1, 101, lesson, "a", "declared", ORIGINS[1], system_id="reconciler:a")
               for lesson in (11, 12, 13)]
    listed, lazy = documents(actions)
    out = io.StringIO()
    write_json(lazy, out)
    assert out.getvalue() == format_json(listed)
    assert json.loads(out.getvalue())["actions"] == listed["actions"]


def test_a_saved_plan_carries_the_digest_of_its_streamed_lines(demo: Path, capsys: pytest.CaptureFixture[str]
                                                                 ) -> None:
    code, out, _ = run_cli(capsys, "plan", "--format", "json", "--out", "plan.json")
    assert code == 0
    saved = json.loads((demo / "plan.json").read_text())
    assert saved["actions_digest"] == actions_digest(saved["actions"]) and saved["actions"]
    assert json.loads(out)["actions"] == saved["actions"]
    assert len(load_plan(demo / "plan.json").actions) == len(saved["actions"])
    code, shown, _ = run_cli(capsys, "show", "plan.json")
    _, planned, _ = run_cli(capsys, "plan")
    assert code == 0 and shown == planned  # the saved plan renders as the plan did


def test_records_by_id_keep_the_last_of_each_id_in_id_order() -> None:
    in_order: ById[str] = ById()
    for record_id, kept in [(1, "a"), (5, "b"), (9, "c")]:
        in_order.put(record_id, kept)
    assert in_order.in_order() == ["a", "b", "c"]
    shuffled: ById[str] = ById()
    for record_id, kept in [(5, "b"), (9, "c"), (1, "a"), (9, "c2"), (7, "d")]:
        shuffled.put(record_id, kept)
    assert shuffled.in_order() == ["a", "b", "d", "c2"]


def test_a_plan_saved_with_an_echo_prints_exactly_its_json_form(tmp_path: Path) -> None:
    actions = [Change("create", 1, 101, lesson, "a", "declared", ORIGINS[1], system_id="reconciler:a")
               for lesson in (11, 12, 13)]
    _, lazy = documents(actions)
    lazy["matrix"] = [{"course": {"id": 1, "title": "Course"}, "members": [{"id": 101, "kept": "0"}]}]
    echo = io.StringIO()
    save_plan(lazy, tmp_path / "plan.json", ["s.yaml"], echo=echo)
    alone = io.StringIO()
    write_json(lazy, alone)
    assert echo.getvalue() == alone.getvalue()
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert {k: v for k, v in saved.items()
            if k not in ("spec_paths", "actions_digest", "document_digest")} == json.loads(echo.getvalue())
    assert saved["document_digest"] == document_digest(saved)
    assert saved["actions_digest"] == actions_digest(saved["actions"])
