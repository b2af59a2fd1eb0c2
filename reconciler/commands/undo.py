"""`reconciler undo`: a plan, to review and apply, that restores what an apply deleted and removes what it
created (planned by undo.py from the journal and the live records)."""

from __future__ import annotations

from pathlib import Path

from reconciler.actions import action_to_dict
from reconciler.commands import Console, Outcome, check_journal_target
from reconciler.config import load_config
from reconciler.errors import UsageError
from reconciler.journal import read_journal
from reconciler.plan import estimate_writes
from reconciler.planning import save_plan
from reconciler.render import summary_line, write_text
from reconciler.state import StateReader
from reconciler.target import connect
from reconciler.undo import journal_history, plan_undo


def undo(journal: Path, *, out: Path | None = None, config_file: Path | None, api: str | None,
         console: Console) -> Outcome:
    state = read_journal(journal)
    history = journal_history(state)
    config = load_config(config_flag=config_file, api_flag=api, paths=[])
    with connect(config) as target:
        check_journal_target(state.start.get("target"), target.description)
        touched = [item.action for item in history if item.sent and item.action.lesson.id]
        lessons = {a.lesson.id or 0 for a in touched}
        members = {a.member.id for a in touched if a.member.id is not None}
        live, partial = StateReader(target.client).completion_records(lessons, members) if lessons else ([], [])
        if partial:
            raise UsageError("cannot read the records to undo in full: " + "; ".join(partial))
    undone = plan_undo(history, live, str(journal))
    estimate = estimate_writes(len(undone.actions), config.limits)
    entries = [action_to_dict(a) for a in undone.actions]
    doc = {"format_version": 1, "target": target.description, "spec_digest": state.start.get("spec_digest", ""),
           "undo_of": state.start["apply_id"], "limits": vars(config.limits),
           "summary": {"create": sum(a["action"] == "create" for a in entries),
                       "delete": sum(a["action"] == "delete" for a in entries), "enroll": 0, "unchanged": 0,
                       "existing_in_scope": 0, "writes": len(entries), "estimate": estimate.describe(),
                       "estimate_seconds": round(estimate.seconds, 1), "estimate_days": estimate.days,
                       "estimate_documented": None},
           "actions": entries, "warnings": undone.warnings, "drift": [], "partial": [], "blocked": None}
    if console.quiet:
        print(summary_line(doc), file=console.stdout)
    else:
        write_text(doc, console.stdout, color=console.color)
    if out:
        save_plan(doc, out)
        console.note(f"saved the undo plan to {out}; apply it with: reconciler apply --plan {out}")
    return Outcome.OK
