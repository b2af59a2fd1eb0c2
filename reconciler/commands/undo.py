"""`reconciler undo`: a plan, to review and apply, that restores what an apply deleted and removes what it
created (planned by undo.py from the journal and the live records)."""

from __future__ import annotations

from pathlib import Path

from reconciler.actions import Delete, action_to_dict
from reconciler.commands import Console, Outcome, check_journal_target
from reconciler.config import load_config
from reconciler.errors import UsageError
from reconciler.journal import read_journal
from reconciler.plan import estimate_writes
from reconciler.planning import save_plan
from reconciler.render import apply_hint, blocked_of, quiet_lines, write_text
from reconciler.state import StateReader
from reconciler.target import connect
from reconciler.undo import journal_history, plan_undo, undo_budgets


def undo(journal: Path, *, out: Path | None = None, allow_deletes: int | None = None, config_file: Path | None,
         api: str | None, console: Console) -> Outcome:
    """Plan the inverse of the journal's apply; OK, or BLOCKED when its deletes exceed a delete budget that
    `allow_deletes` does not cover (as a plan is; a saved blocked undo plan is refused by `apply --plan` alike)."""
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
    # The scope the budgets measure: the apply's members' completions of its lessons (the read may bring more,
    # depending on how it filtered; counting only these keeps the fraction the same on every target).
    # (with the members the apply enrolled, whose Ids only the records it made know)
    scope_members = members | {a.record.member_id for a in undone.actions if isinstance(a, Delete)}
    in_scope = sum(1 for r in live if r["CourseLessonId"] in lessons and r["CourseMemberId"] in scope_members)
    budgeted = undo_budgets(undone, in_scope, config.safety, allow_deletes)
    estimate = estimate_writes(len(undone.actions), config.limits)
    entries = [action_to_dict(a) for a in undone.actions]
    doc = {"format_version": 1, "target": target.description, "spec_digest": state.start.get("spec_digest", ""),
           "undo_of": state.start["apply_id"], "limits": vars(config.limits),
           "summary": {"create": sum(a["action"] == "create" for a in entries),
                       "delete": sum(a["action"] == "delete" for a in entries), "enroll": 0, "unchanged": 0,
                       "existing_in_scope": budgeted.existing_in_scope, "writes": len(entries),
                       "estimate": estimate.describe(), "estimate_seconds": round(estimate.seconds, 1),
                       "estimate_days": estimate.days, "estimate_documented": None},
           "actions": entries, "warnings": undone.warnings, "drift": [], "partial": [],
           "blocked": blocked_of(budgeted)}
    if console.quiet:
        print("\n".join(quiet_lines(doc)), file=console.stdout)
    else:
        write_text(doc, console.stdout, color=console.color)
    if out:
        save_plan(doc, out)
        console.note(apply_hint(doc, out, "undo plan"))
    return Outcome.BLOCKED if budgeted.blocked else Outcome.OK
