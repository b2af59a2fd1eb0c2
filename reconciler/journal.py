"""The apply journal: `.reconciler/journal/<apply-id>.jsonl`, one JSON object a line, fsynced.

    {"type": "start", "apply_id", "target", "spec_digest", "undo_of", "started", "actions": [plan actions]}
    {"type": "intent", "seq", "attempt", "at", "action"}    before each write is sent; a delete's also
                                                            "record": the whole record, read by Id just before
    {"type": "outcome", "seq", "status", "at", "id", "message"}   after it: created | deleted | gone |
                                                            enrolled | skipped | failed | waiting (a
                                                            source delete kept for its twin: not done)
    {"type": "stop", "why", "at"}                           why the apply stopped before its end (the daily cap,
                                                            a long wait, an outage, an interruption, ...)
    {"type": "resume", "remaining"}                         `apply --resume` carries on in the same file
    {"type": "end", "summary"}

`seq` is the action's index in the start entry's `actions`; `at` is an ISO 8601 instant.

A delete's intent carries the full record it removes: the plan's in its action, so that `undo` can recreate it,
and every field the server holds in `record` (when the read by Id could be made), the evidence of what was removed.

A kill can cut the line being written. Reading back, a *cut line* is a line that starts with `{` and does
not parse (nor, cut inside a character, decode): it is skipped, at the end of the file or before more
lines, because `Journal` ends a cut line with a newline before a resume appends to the file. Any other
line that is not a JSON object (`hello`, `[1]`) is damage, and an error that names `path:line`.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

from reconciler import UNPAIRED
from reconciler.actions import Action, action_from_dict
from reconciler.config import same_target
from reconciler.errors import PlanFileError, ReconcilerError, UsageError
from reconciler.pacing import duration
from reconciler.redact import scrub


def new_apply_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class JournalBusy(ReconcilerError):
    """Another run is writing this journal (its apply, or a resume of it, from this folder or any other)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"another run is writing the journal {path} right now (its apply, or a resume of it, "
                         "perhaps from another folder): nothing was written. Wait for that run to end; resume it "
                         "then, if it stopped")


class Journal:
    """Appends lines and makes each durable before returning. The file is the owner's alone (0600: it holds
    members' records whole), and a credential a server echoed into a record is blanked out of it (`scrub`).

    One writer at a time: the journal is held (flock) while it is open, so that two runs can never carry out the
    same actions at once (an apply and a resume of it from another folder, whose lock is another folder's): the
    second is refused with JournalBusy before it writes anything. The operating system drops the hold when the
    writer ends, however it ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise JournalBusy(path) from None
        self._out: IO[str] = os.fdopen(handle, "a", encoding="utf-8", errors=UNPAIRED)
        if _ends_mid_line(path):
            # The last run was killed while writing a line: end it, so the next entry starts a line of its
            # own instead of being glued onto the cut one (and lost with it).
            self._out.write("\n")
            self._out.flush()
            os.fsync(self._out.fileno())

    def write(self, entry: dict[str, Any]) -> None:
        self._out.write(scrub(json.dumps(entry, ensure_ascii=False, separators=(",", ":"))) + "\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def write_start(self, header: dict[str, Any], actions: Iterable[dict[str, Any]]) -> None:
        """The start entry: `header` with `"actions"` last, the line `write` would make of it, written a batch of
        actions at a time (a plan of a million actions is never one string nor one list of dicts), then made
        durable. A kill while it is written leaves a cut line, as `write` would."""
        if "actions" in header:
            raise ValueError("the start entry's actions are given apart from its header")
        encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        head = scrub(encode(header)[:-1])
        self._out.write(head + ("," if len(head) > 1 else "") + '"actions":[')
        entries = iter(actions)
        separator = ""
        while batch := list(islice(entries, 2048)):
            self._out.write(separator + scrub(",".join(map(encode, batch))))
            separator = ","
        self._out.write("]}\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class JournalState:
    """What a journal says happened: its plan, and the last word on each action."""

    start: dict[str, Any]
    outcomes: dict[int, dict[str, Any]] = field(default_factory=dict)
    intents: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    ended: bool = False

    @property
    def actions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.start["actions"]
        return found

    path: Path = field(default_factory=Path)

    def typed_actions(self) -> list[Action]:
        """The plan the apply ran, typed and checked like a saved plan (PlanFileError naming the line)."""
        shared: dict[Any, Any] = {}  # one Ref, and one text, for what many actions name alike
        return [_typed(entry, f"{self.path}: start.actions[{seq}]", shared) for seq, entry in enumerate(self.actions)]

    def last_sent(self, seq: int) -> Action | None:
        """The action as its last intent sent it (a completion for a member enrolled during the apply
        carries that member's Id there, not in the plan), or None if nothing was sent."""
        sent = self.intents.get(seq)
        if not sent:
            return None
        return _typed(sent[-1]["action"], f"{self.path}: intent of action {seq}")


def _typed(entry: dict[str, Any], where: str, shared: dict[Any, Any] | None = None) -> Action:
    """`action_from_dict` of an action a journal holds, which no schema checked: one that is not the shape an apply
    writes (a field missing or of another type: a damaged or edited journal) is a PlanFileError naming it."""
    try:
        return action_from_dict(entry, where, shared)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise PlanFileError(f"{where}: the journal is damaged: not an action as an apply writes it "
                            f"({type(e).__name__}: {e})") from e


def _ends_mid_line(path: Path) -> bool:
    with path.open("rb") as existing:
        end = existing.seek(0, os.SEEK_END)
        if end == 0:
            return False
        existing.seek(end - 1)
        return existing.read(1) != b"\n"


@dataclass(frozen=True)
class _Line:
    """One non-blank line of a journal: its entry, or the damage that left it without one (a cut line has
    neither, and is skipped)."""

    number: int
    entry: dict[str, Any] | None
    damage: str = ""


def _lines(raw: bytes) -> list[_Line]:
    """Every non-blank line of a journal's bytes, parsed; see the module docstring for cut lines."""
    found = []
    for number, data in enumerate(raw.split(b"\n"), start=1):
        if not data.strip():
            continue
        try:
            entry = json.loads(data.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            cut = data.lstrip().startswith(b"{")  # every entry is one object: a cut one still opens with {
            found.append(_Line(number, None, damage="" if cut else "not JSON"))
            continue
        except RecursionError:
            found.append(_Line(number, None, damage="JSON nested too deeply to read"))
            continue
        if not isinstance(entry, dict):
            found.append(_Line(number, None, damage=f"a journal entry must be a JSON object, not {entry!r:.40}"))
            continue
        found.append(_Line(number, entry))
    return found


def _entry_problem(entry: dict[str, Any], *, first: bool, action_count: int) -> str:
    """What is wrong with one entry that later code would trip on, or ''."""
    kind = entry.get("type")
    if first:  # the caller has seen that it is a start entry
        actions = entry.get("actions")
        if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
            return "the start entry has no list of actions"
        if not isinstance(entry.get("apply_id"), str):
            return "the start entry has no apply_id"
        return ""
    if kind in ("intent", "outcome"):
        seq = entry.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return f"an {kind} without an integer seq"
        if not 0 <= seq < action_count:
            return f"an {kind} for seq {seq}, but the journal has {action_count} action(s)"
        if kind == "intent" and not isinstance(entry.get("action"), dict):
            return "an intent without its action"
    return ""


@dataclass(frozen=True)
class WriteBudget:
    """What earlier runs spent of a target's daily write budget, as far as their journals can tell.

    `ages`: seconds since each write intent of the last 24 hours. `unreadable`: `path: reason` for each
    journal (or part of one) that could not be counted; the caller should say so, since the budget may
    then be spent more than `ages` shows.
    """

    ages: list[float]
    unreadable: list[str]

    def cap_note(self, writes: int, per_day: int | None) -> str | None:
        """What the daily write cap leaves for `writes` more once the writes of earlier runs in the last 24 hours
        are counted (as the apply's pacer counts them), in a sentence: None when they all fit (or the journals
        show none; the plan's estimate then holds)."""
        if not per_day or not writes or not self.ages:
            return None
        spent = len(self.ages)
        left = max(0, per_day - spent)
        if writes <= left:
            return None
        # Once the cap is reached, a write is allowed again when the count in the window drops below it: when the
        # oldest leaves, or (more spent than the cap allows now, as after it was lowered) the one `spent - per_day`
        # places after the oldest.
        frees = sorted(self.ages, reverse=True)[max(0, spent - per_day)]
        now = f"{left:,} of these {writes:,} can go now, then an apply" if left else f"none of these {writes:,} " \
            "can go now: an apply"
        return (f"the daily write cap: earlier applies against this target made {spent:,} writes in the last 24 "
                f"hours (the cap is {per_day:,} a day), so {now} stops cleanly (resumable); the next write "
                f"{'after those ' if left else ''}is allowed in {duration(86400 - frees)}")


def write_budget(folder: Path, target: str, now: datetime | None = None) -> WriteBudget:
    """The write intents of the last 24 hours in the journals of `target` under `folder`.

    The daily write cap belongs to the account, not to one process: a resumed or repeated apply must
    count what earlier runs already spent today.
    """
    now = now or datetime.now(UTC)
    budget = WriteBudget([], [])
    if not folder.is_dir():
        return budget
    for path in sorted(folder.glob("*.jsonl")):
        try:
            if now.timestamp() - path.stat().st_mtime > 86400:
                continue  # nothing written to it for a day: none of its intents is that recent
            lines = _budget_lines(path.read_bytes())
        except OSError as e:
            budget.unreadable.append(f"{path}: cannot read it: {e.strerror or e}")
            continue
        damaged = [line for line in lines if line.damage]
        entries = [(line.number, line.entry) for line in lines if line.entry is not None]
        if not entries or (damaged and damaged[0].number < entries[0][0]):
            # Whose journal it is cannot be told. (A file holding nothing but a cut line was killed while
            # writing its start entry, before any write.)
            budget.unreadable.extend(f"{path}:{line.number}: {line.damage}" for line in damaged[:1])
            continue
        number, start = entries[0]
        if start.get("type") != "start":
            budget.unreadable.append(f"{path}:{number}: not an apply journal (no start entry)")
            continue
        if not same_target(start.get("target"), target):
            continue
        budget.unreadable.extend(f"{path}:{line.number}: {line.damage}" for line in damaged)
        for number, entry in entries[1:]:
            if entry.get("type") != "intent":
                continue
            at = _instant(entry.get("at"))
            if at is None:
                budget.unreadable.append(f"{path}:{number}: an intent without a valid time ('at')")
                continue
            age = (now - at).total_seconds()
            if 0 <= age < 86400:
                budget.ages.append(age)
    return budget


_ACTIONS = b'"actions":['
_OUTCOME = b'{"type":"outcome",'


def _budget_lines(raw: bytes) -> list[_Line]:
    """`_lines` as the write budget needs them, without the cost of what it does not read: of the start entry (a
    line as long as the plan) only its header, before its actions, which `Journal.write_start` writes last (a
    line that does not end as a whole start entry does is cut); outcome lines not at all."""
    head, _, rest = raw.lstrip(b"\n").partition(b"\n")
    at = head.find(_ACTIONS)
    if at < 0 or not head.rstrip().endswith(b"]}"):
        return _lines(raw)
    lines = _lines(head[:at].rstrip(b",") + b"}")
    skipped = raw.count(b"\n", 0, len(raw) - len(rest))  # the lines up to the start entry's end
    kept = b"\n".join(b"" if line.startswith(_OUTCOME) else line for line in rest.split(b"\n"))
    lines.extend(_Line(line.number + skipped, line.entry, line.damage) for line in _lines(kept))
    return lines


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def recent_write_ages(folder: Path, target: str, now: datetime | None = None) -> list[float]:
    """Seconds since each write intent of the last 24 hours in the journals of `target` (see write_budget)."""
    return write_budget(folder, target, now).ages


def read_journal(path: Path) -> JournalState:
    """A journal's plan and the last word on each action; UsageError naming `path:line` if it is damaged.

    Cut lines (see the module docstring) are skipped: the writes they announced are re-checked on resume.
    """
    try:
        lines = _lines(path.read_bytes())
    except FileNotFoundError as e:
        raise UsageError(f"no journal {path}") from e
    except OSError as e:
        raise UsageError(f"cannot read the journal {path}: {e}") from e
    for line in lines:
        if line.damage:
            raise UsageError(f"{path}:{line.number}: the journal is damaged: {line.damage}")
    entries = [(line.number, line.entry) for line in lines if line.entry is not None]
    if not entries or entries[0][1].get("type") != "start":
        raise UsageError(f"{path} is not an apply journal")
    (number, start), rest = entries[0], entries[1:]
    problem = _entry_problem(start, first=True, action_count=0)
    if problem:
        raise UsageError(f"{path}:{number}: the journal is damaged: {problem}")
    state = JournalState(start, path=path)
    for number, entry in rest:
        problem = _entry_problem(entry, first=False, action_count=len(state.actions))
        if problem:
            raise UsageError(f"{path}:{number}: the journal is damaged: {problem}")
        kind = entry.get("type")
        if kind == "intent":
            state.intents.setdefault(entry["seq"], []).append(entry)
        elif kind == "outcome":
            state.outcomes[entry["seq"]] = entry
        elif kind == "end":
            state.ended = True
    cut = [line.number for line in lines if line.entry is None]  # (cut by a kill: the intent being written)
    if cut:
        # A write is journaled (its intent, with the record a delete removes) before it is sent: an action done
        # without an intent lost it to a line cut otherwise than by a kill, and with it what undo must restore.
        done = ("created", "deleted", "gone", "enrolled")
        lost = sorted(seq for seq, outcome in state.outcomes.items()
                      if outcome.get("status") in done and seq not in state.intents)
        if lost:
            raise UsageError(f"{path}:{cut[0]}: the journal is damaged: a line cut short where the intent of action "
                             f"{lost[0]} must have been (its outcome, {state.outcomes[lost[0]].get('status')}, "
                             "follows): what it carried cannot be restored from this journal")
    return state
