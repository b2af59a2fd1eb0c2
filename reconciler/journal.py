"""The apply journal: `.reconciler/journal/<apply-id>.jsonl`, one JSON object a line, fsynced.

    {"type": "start", "apply_id", "target", "spec_digest", "undo_of", "started", "actions": [plan actions]}
    {"type": "intent", "seq", "attempt", "action"}          before each write is sent
    {"type": "outcome", "seq", "status", "id", "message"}   after it: created | deleted | gone | enrolled |
                                                            skipped | failed
    {"type": "stop", "why"}                                 the daily cap, or an interruption
    {"type": "end", "summary"}

A delete's intent carries the full record it removes, so that `undo` can recreate it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from reconciler.errors import UsageError


def new_apply_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class Journal:
    """Appends lines and makes each durable before returning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out: IO[str] = path.open("a", encoding="utf-8")

    def write(self, entry: dict[str, Any]) -> None:
        self._out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
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

    def applied(self, statuses: tuple[str, ...] = ("created", "deleted", "gone")) -> list[tuple[int, dict[str, Any],
                                                                                               dict[str, Any]]]:
        """(seq, action, outcome) of what was done, each action as its last intent sent it: a completion
        for a member enrolled during the apply carries that member's Id there, not in the plan."""
        done = []
        for seq, action in enumerate(self.actions):
            outcome = self.outcomes.get(seq, {})
            if outcome.get("status") in statuses:
                sent = self.intents.get(seq)
                done.append((seq, sent[-1]["action"] if sent else action, outcome))
        return done


def recent_write_ages(folder: Path, target: str, now: datetime | None = None) -> list[float]:
    """Seconds since each write intent of the last 24 hours in the journals of `target`.

    The daily write cap belongs to the account, not to one process: a resumed or repeated apply must
    count what earlier runs already spent today.
    """
    now = now or datetime.now(UTC)
    ages: list[float] = []
    if not folder.is_dir():
        return ages
    for path in folder.glob("*.jsonl"):
        try:
            if now.timestamp() - path.stat().st_mtime > 86400:
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        try:
            if json.loads(lines[0]).get("target") != target:
                continue
        except (ValueError, IndexError):
            continue
        for line in lines[1:]:
            if '"type":"intent"' not in line:
                continue
            try:
                at = datetime.fromisoformat(json.loads(line)["at"])
            except (ValueError, KeyError, TypeError):
                continue
            age = (now - at).total_seconds()
            if 0 <= age < 86400:
                ages.append(age)
    return ages


def read_journal(path: Path) -> JournalState:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise UsageError(f"no journal {path}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the journal {path}: {e}") from e
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # a line cut short by a kill: the write it announced is re-checked
                break
            raise UsageError(f"{path}:{number}: the journal is damaged (not JSON)") from None
    if not entries or entries[0].get("type") != "start":
        raise UsageError(f"{path} is not an apply journal")
    state = JournalState(entries[0])
    for entry in entries[1:]:
        kind = entry.get("type")
        if kind == "intent":
            state.intents.setdefault(entry["seq"], []).append(entry)
        elif kind == "outcome":
            state.outcomes[entry["seq"]] = entry
        elif kind == "end":
            state.ended = True
    return state
