"""The journal read back after kills: cut lines, damage named by path:line, and the daily write budget."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import UsageError
from reconciler.journal import Journal, WriteBudget, read_journal, recent_write_ages, write_budget

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TARGET = "http://127.0.0.1:8123"
ACTIONS: list[dict[str, Any]] = [
    {"action": "create", "course_member": 50001, "lesson": 2001, "lesson_title": "Sécurité"},
    {"action": "create", "course_member": 50002, "lesson": 2001, "lesson_title": "Sécurité"},
]


def line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def start(target: str = TARGET) -> dict[str, Any]:
    return {"type": "start", "apply_id": "20260302T110000Z-abcdef", "target": target, "spec_digest": "d",
            "undo_of": None, "actions": ACTIONS}


def intent(seq: int, at: datetime = NOW - timedelta(hours=1)) -> dict[str, Any]:
    return {"type": "intent", "seq": seq, "attempt": 1, "at": at.isoformat(), "action": ACTIONS[seq]}


def outcome(seq: int, status: str = "created") -> dict[str, Any]:
    return {"type": "outcome", "seq": seq, "status": status, "at": NOW.isoformat(), "id": 9000 + seq}


def write(path: Path, *chunks: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(chunks))
    return path


def damaged(path: Path, number: int, what: str) -> str:
    return re.escape(f"{path}:{number}: the journal is damaged: {what}")


# --- Journal: a resume never glues its first entry onto a cut line ---------------------------------

def test_a_journal_reopened_after_a_cut_line_starts_a_fresh_line(tmp_path: Path) -> None:
    cut = line(intent(1))[:30]
    path = write(tmp_path / "j.jsonl", line(start()), line(intent(0)), line(outcome(0)), cut)
    with Journal(path) as journal:
        journal.write({"type": "resume", "remaining": 1})
        journal.write(intent(1))
        journal.write(outcome(1))
    raw = path.read_bytes()
    assert raw.split(b"\n")[3] == cut and raw.split(b"\n")[4].startswith(b'{"type":"resume"')
    state = read_journal(path)  # the cut line is now in the middle: still tolerated
    assert sorted(state.outcomes) == [0, 1] and [len(v) for v in state.intents.values()] == [1, 1]


@pytest.mark.parametrize("existing", [b"", b'{"type":"start"}\n'])
def test_a_journal_that_ends_cleanly_gets_no_extra_newline(tmp_path: Path, existing: bytes) -> None:
    path = write(tmp_path / "j.jsonl", existing)
    with Journal(path) as journal:
        journal.write({"type": "end", "summary": {}})
    assert path.read_bytes() == existing + b'{"type":"end","summary":{}}\n'


def test_a_new_journal_is_created_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "journal" / "new.jsonl"
    with Journal(path) as journal:
        journal.write(start())
    assert read_journal(path).start["apply_id"] == start()["apply_id"]


# --- read_journal: cut lines tolerated, damage named ------------------------------------------------

def test_a_cut_last_line_is_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path / "j.jsonl", line(start()), line(intent(0)), line(outcome(0))[:-9])
    state = read_journal(path)
    assert state.outcomes == {} and list(state.intents) == [0] and not state.ended


def test_a_line_cut_inside_a_character_is_a_cut_line(tmp_path: Path) -> None:
    whole = line(intent(1))
    cut = whole[:whole.index("é".encode()) + 1]  # half of a two-byte character
    path = write(tmp_path / "j.jsonl", line(start()), line(intent(0)), cut)
    assert list(read_journal(path).intents) == [0]
    with Journal(path) as journal:
        journal.write(intent(1))
    assert list(read_journal(path).intents) == [0, 1]


@pytest.mark.parametrize(("content", "number", "what"), [
    (line(start()) + b"hello\n" + line(intent(0)), 2, "not JSON"),
    (line(start()) + line(intent(0)) + b"hello", 3, "not JSON"),  # garbage is garbage, even last
    (line(start()) + b"[1, 2]\n" + line(intent(0)), 2, "a journal entry must be a JSON object, not [1, 2]"),
    (line(start()) + b'"intent"\n', 2, "a journal entry must be a JSON object, not 'intent'"),
    (line(start()) + line({**intent(0), "seq": None}), 2, "an intent without an integer seq"),
    (line(start()) + line({k: v for k, v in intent(0).items() if k != "seq"}), 2, "an intent without an integer seq"),
    (line(start()) + line({**intent(0), "seq": "0"}), 2, "an intent without an integer seq"),
    (line(start()) + line({**intent(0), "seq": True}), 2, "an intent without an integer seq"),
    (line(start()) + line({**outcome(0), "seq": 1.5}), 2, "an outcome without an integer seq"),
    (line(start()) + line(outcome(7)), 2, "an outcome for seq 7, but the journal has 2 action(s)"),
    (line(start()) + line({**intent(0), "action": None}), 2, "an intent without its action"),
    (line({**start(), "actions": None}), 1, "the start entry has no list of actions"),
    (line({k: v for k, v in start().items() if k != "actions"}), 1, "the start entry has no list of actions"),
    (line({**start(), "actions": [1]}), 1, "the start entry has no list of actions"),
    (line({**start(), "apply_id": 5}), 1, "the start entry has no apply_id"),
])
def test_damage_is_an_error_naming_the_line(tmp_path: Path, content: bytes, number: int, what: str) -> None:
    path = write(tmp_path / "j.jsonl", content)
    with pytest.raises(UsageError, match=damaged(path, number, what)):
        read_journal(path)


@pytest.mark.parametrize("content", [b"", b"\n\n", line(intent(0)), line(start())[:20]])
def test_what_is_not_a_journal_says_so(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path / "j.jsonl", content)
    with pytest.raises(UsageError, match=re.escape(f"{path} is not an apply journal")):
        read_journal(path)


def test_a_missing_journal_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no journal"):
        read_journal(tmp_path / "nope.jsonl")


# --- the daily write budget -------------------------------------------------------------------------

def fresh(path: Path) -> Path:
    os.utime(path, (NOW.timestamp(), NOW.timestamp()))
    return path


def test_the_budget_counts_intents_by_their_type_not_by_a_substring(tmp_path: Path) -> None:
    spaced = json.dumps(intent(1, NOW - timedelta(hours=2))).encode() + b"\n"  # `"type": "intent"`, spaced
    decoy = {**outcome(0), "record": {"type":"intent", "at": NOW.isoformat()}}  # nested: not an entry's type
    fresh(write(tmp_path / "a.jsonl", line(start()), line(intent(0)), line(outcome(0)), spaced, line(decoy)))
    budget = write_budget(tmp_path, TARGET, NOW)
    assert budget == WriteBudget([3600.0, 7200.0], [])
    assert recent_write_ages(tmp_path, TARGET, NOW) == [3600.0, 7200.0]


def test_the_budget_counts_only_the_last_day_of_this_target(tmp_path: Path) -> None:
    fresh(write(tmp_path / "a.jsonl", line(start()), line(intent(0, NOW - timedelta(hours=25))),
                line(intent(1, NOW - timedelta(minutes=1)))))
    fresh(write(tmp_path / "other.jsonl", line(start("local emulator")), line(intent(0))))
    old = write(tmp_path / "old.jsonl", line(start()), line(intent(0)))
    os.utime(old, (NOW.timestamp() - 90000, NOW.timestamp() - 90000))  # untouched for a day: not read
    assert write_budget(tmp_path, TARGET, NOW) == WriteBudget([60.0], [])
    assert write_budget(tmp_path / "none", TARGET, NOW) == WriteBudget([], [])


def test_the_budget_names_what_it_could_not_count(tmp_path: Path) -> None:
    cut = line(intent(1))[:25]
    fresh(write(tmp_path / "a.jsonl", line(start()), line(intent(0)), b"hello\n", cut + b"\n",
                line({**intent(1), "at": "yesterday"}), line({**intent(1), "at": "2026-03-02T11:00:00"})))
    fresh(write(tmp_path / "b.jsonl", b"garbage\n", line(start()), line(intent(0))))
    fresh(write(tmp_path / "c.jsonl", line(intent(0))))
    fresh(write(tmp_path / "d.jsonl", line(start())[:40]))  # killed while writing its start: spent nothing
    budget = write_budget(tmp_path, TARGET, NOW)
    assert budget.ages == [3600.0]
    assert budget.unreadable == [
        f"{tmp_path / 'a.jsonl'}:3: not JSON",
        f"{tmp_path / 'a.jsonl'}:5: an intent without a valid time ('at')",
        f"{tmp_path / 'a.jsonl'}:6: an intent without a valid time ('at')",  # no zone: not an instant
        f"{tmp_path / 'b.jsonl'}:1: not JSON",
        f"{tmp_path / 'c.jsonl'}:1: not an apply journal (no start entry)",
    ]


def test_an_unreadable_journal_is_named_with_its_reason(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = fresh(write(tmp_path / "a.jsonl", line(start()), line(intent(0))))
    path.chmod(0)
    try:
        budget = write_budget(tmp_path, TARGET, NOW)
    finally:
        path.chmod(0o600)
    assert budget == WriteBudget([], [f"{path}: cannot read it: Permission denied"])


def test_the_cap_note_says_when_a_write_is_allowed_again() -> None:
    hour = 3600.0
    assert WriteBudget([hour], []).cap_note(10, 20) is None  # they fit
    assert WriteBudget([], []).cap_note(10, 5) is None  # nothing spent here: the estimate holds
    at_cap = WriteBudget([20 * hour, 19 * hour, *[hour] * 3], []).cap_note(4, 5)
    assert at_cap is not None and "none of these 4 can go now" in at_cap and "in 14,400 s (4 h)" in at_cap
    # More spent than the cap (it was lowered): three must leave the window before one more is allowed.
    over = WriteBudget([20 * hour, 19 * hour, 18 * hour, *[hour] * 5], []).cap_note(1, 5)
    assert over is not None and "made 8 writes" in over and "in 82,800 s (23 h)" in over
    under = WriteBudget([20 * hour, hour], []).cap_note(5, 4)
    assert under is not None and "so 2 of these 5 can go now" in under and "after those is allowed in 14,400 s" in under
