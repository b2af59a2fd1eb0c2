"""`reconciler apply` (from specs, a saved plan, or a journal to resume) and `reconciler undo`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from reconciler.apply import DONE, Action, Executor, Fresh, Result, read_fresh, stale_reason, verify
from reconciler.config import Config, load_config
from reconciler.errors import EXIT_BLOCKED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from reconciler.journal import Journal, JournalState, new_apply_id, read_journal, recent_write_ages
from reconciler.plan import estimate_writes
from reconciler.planning import load_plan, make_plan, save_plan
from reconciler.render import record_dict, write_text
from reconciler.spec import load_specs
from reconciler.state import StateReader, completion_from
from reconciler.target import Target, connect


def run_apply(args: argparse.Namespace, *, color: bool) -> int:
    if args.resume and (args.plan_file or args.paths):
        raise UsageError("--resume takes the journal alone, without PATH or --plan")
    config = load_config(config_flag=args.config, api_flag=args.api, paths=args.paths)
    with connect(config) as target:
        if args.resume:
            return _resume(args, config, target)
        if args.plan_file:
            doc = load_plan(args.plan_file)
            problem = _saved_plan_problem(doc, args, config, target)
            if problem:
                print(f"error: stale plan: {problem}", file=args.stderr)
                return EXIT_BLOCKED
        else:
            specs = load_specs(args.paths or [Path(".")], exclude=[config.seed] if config.seed else [])
            doc = make_plan(target, specs, config, allow_deletes=args.allow_deletes).doc
        write_text(doc, args.stdout, color=color)
        if _still_blocked(doc, args.allow_deletes):
            return EXIT_BLOCKED
        actions: list[Action] = doc["actions"]
        if not actions:
            return EXIT_OK
        _confirm(args, len(actions), target.description)
        fresh = None
        if args.plan_file:  # time has passed since the plan: re-check every precondition
            fresh = read_fresh(target.client, actions)
            stale = [(a, r) for a in actions if (r := stale_reason(a, fresh)) is not None]
            if stale and args.strict:
                for action, reason in stale[:20]:
                    print(f"  {_describe(action)}: {reason}", file=args.stderr)
                print(f"error: stale plan: {len(stale)} of {len(actions)} actions no longer hold (--strict)",
                      file=args.stderr)
                return EXIT_BLOCKED
        result, journal_path = execute_plan(target, config, doc, fresh=fresh, fail_fast=args.fail_fast,
                                            progress_out=args.stderr)
        return _finish(args, target, journal_path, actions, result)


def execute_plan(target: Target, config: Config, doc: dict[str, Any], *, fresh: Fresh | None = None,
                 fail_fast: bool = False, progress_out: TextIO | None = None) -> tuple[Result, Path]:
    """Run a plan's actions under a new journal; returns the result and the journal's path."""
    actions: list[Action] = doc["actions"]
    apply_id = new_apply_id()
    journal_path = config.state_dir / "journal" / f"{apply_id}.jsonl"
    target.client.pacer.note_past_writes(recent_write_ages(journal_path.parent, target.description))
    with Journal(journal_path) as journal:
        journal.write({"type": "start", "apply_id": apply_id, "target": target.description,
                       "spec_digest": doc["spec_digest"], "undo_of": doc.get("undo_of"), "actions": actions})
        executor = Executor(target.client, journal, fail_fast=fail_fast, progress_out=progress_out)
        result = executor.run(list(enumerate(actions)), fresh)
        if not result.stopped:
            journal.write({"type": "end", "summary": dict(result.counts)})
    return result, journal_path


def _saved_plan_problem(doc: dict[str, Any], args: argparse.Namespace, config: Config, target: Target) -> str | None:
    if doc.get("target") != target.description:
        return f"it was made against {doc.get('target')}, but the target is {target.description}"
    if doc.get("undo_of"):
        return None
    paths = args.paths or [Path(".")]
    specs = load_specs(paths, exclude=[config.seed] if config.seed else [])
    if specs.digest != doc.get("spec_digest"):
        return "the spec files changed since it was made; plan again"
    return None


def _still_blocked(doc: dict[str, Any], allow_deletes: int | None) -> bool:
    blocked = doc.get("blocked")
    if not blocked:
        return False
    if doc.get("partial"):
        return True
    deletes = sum(1 for a in doc["actions"] if a["action"] == "delete")
    return allow_deletes is None or deletes > allow_deletes


def _confirm(args: argparse.Namespace, count: int, description: str) -> None:
    if args.yes:
        return
    stdin: TextIO = getattr(args, "stdin", None) or sys.stdin
    if not stdin.isatty():
        raise UsageError("refusing to apply without confirmation: there is no terminal to ask on; pass --yes")
    print(f"\nApply {count:,} change{'s' if count != 1 else ''} to {description}? Type 'yes' to go on: ",
          end="", file=args.stderr, flush=True)
    if stdin.readline().strip().lower() != "yes":
        raise UsageError("not applied: the confirmation was declined")


def _describe(action: Action) -> str:
    return f"{action['action']} {action['lesson']['title'] or action['lesson']['id']} for " \
           f"{action['member']['name'] or action['member']['id']}"


def _finish(args: argparse.Namespace, target: Target, journal_path: Path, actions: list[Action],
            result: Result) -> int:
    out = args.stdout
    counts = result.counts
    print(f"\nApplied to {target.description}:", file=out)
    rows = [("created", counts["created"]), ("deleted", counts["deleted"] + counts["gone"]),
            ("enrolled", counts["enrolled"]), ("skipped", len(result.skipped)), ("failed", len(result.failed))]
    for name, count in rows:
        print(f"  {name:<9}{count:>7,}", file=out)
    for title, items in (("Skipped", result.skipped), ("Failed", result.failed)):
        if items:
            print(f"{title}:", file=out)
            for action, reason in items[:20]:
                print(f"  {_describe(action)}: {reason}", file=out)
            if len(items) > 20:
                print(f"  … {len(items) - 20:,} more in {journal_path}", file=out)
    for warning in result.warnings:
        print(f"warning: {warning}", file=out)
    print(f"Journal: {journal_path}", file=out)
    if result.stopped:
        print(f"Stopped ({result.stopped}). Resume with: reconciler apply --resume {journal_path}", file=out)
        return EXIT_INTERRUPTED if result.stopped == "interrupted" else EXIT_BLOCKED
    state = read_journal(journal_path)
    done = [(action, outcome.get("id")) for _, action, outcome in state.applied()]
    problems = verify(target.client, actions, done)
    if problems:
        print("Not converged:", file=out)
        for line in problems:
            print(f"  {line}", file=out)
    else:
        print("Verified: every applied change is in place.", file=out)
    return EXIT_FAILED if result.failed or problems else EXIT_OK


def _resume(args: argparse.Namespace, config: Config, target: Target) -> int:
    state: JournalState = read_journal(args.resume)
    if state.start.get("target") != target.description:
        print(f"error: the journal is of an apply to {state.start.get('target')}, not {target.description}",
              file=args.stderr)
        return EXIT_BLOCKED
    actions: list[Action] = state.actions
    remaining = [(seq, a) for seq, a in enumerate(actions) if state.outcomes.get(seq, {}).get("status") not in DONE]
    print(f"Resuming apply {state.start['apply_id']} on {target.description}: {len(remaining):,} of "
          f"{len(actions):,} actions left.", file=args.stdout)
    if not remaining:
        return EXIT_OK
    _confirm(args, len(remaining), target.description)
    fresh = read_fresh(target.client, [a for _, a in remaining])
    target.client.pacer.note_past_writes(recent_write_ages(args.resume.parent, target.description))
    with Journal(args.resume) as journal:
        journal.write({"type": "resume", "remaining": len(remaining)})
        result = Executor(target.client, journal, fail_fast=args.fail_fast, progress_out=args.stderr).run(
            remaining, fresh)
        if not result.stopped:
            journal.write({"type": "end", "summary": dict(result.counts)})
    return _finish(args, target, args.resume, actions, result)


def run_undo(args: argparse.Namespace, *, color: bool) -> int:
    """A plan that recreates what an apply deleted and deletes what it created."""
    state = read_journal(args.journal)
    config = load_config(config_flag=args.config, api_flag=args.api, paths=[])
    with connect(config) as target:
        if state.start.get("target") != target.description:
            raise UsageError(f"the journal is of an apply to {state.start.get('target')}, not {target.description}")
        actions: list[Action] = []
        created: list[tuple[Action, int]] = []
        for seq, action, outcome in state.applied(("created", "deleted")):
            if action["action"] == "delete" and outcome.get("status") == "deleted":
                record = action["record"]
                actions.append({**_base(action, "create"), "system_id": record.get("SystemId"),
                                "note": f"restores #{record['Id']}, completed {record.get('CreatedOn') or '?'}; "
                                        "the new record is dated today",
                                "origin": f"{args.journal}:{seq}",
                                "precondition": {"absent": {"CourseMemberId": record["CourseMemberId"],
                                                            "CourseLessonId": record["CourseLessonId"]}}})
            elif action["action"] == "create" and outcome.get("status") == "created":
                created.append((action, int(outcome["id"])))
        if created:
            lessons = {a["lesson"]["id"] for a, _ in created}
            members = {a["member"]["id"] for a, _ in created}
            records, partial = StateReader(target.client).completion_records(lessons, members)
            if partial:
                raise UsageError("cannot read the records to undo: " + "; ".join(partial))
            by_id = {r["Id"]: r for r in records}
            for action, new_id in created:
                record = by_id.get(new_id)
                if record is None:
                    continue  # already gone: nothing to undo
                actions.append({**_base(action, "delete"), "record": record_dict(completion_from(record)),
                                "origin": f"{args.journal}", "note": f"undoes the create of #{new_id}",
                                "precondition": {"exists": {"Id": new_id, "UpdatedOn": record.get("UpdatedOn")}}})
        actions.sort(key=lambda a: (a["course"]["id"], a["member"]["id"] or 0, a["action"] != "create",
                                    a["lesson"]["id"]))
    enrolled = sum(1 for seq, a in enumerate(state.actions)
                   if a["action"] == "enroll" and state.outcomes.get(seq, {}).get("status") == "enrolled")
    warnings = ["recreated completions get today's date: the original completion dates cannot be restored"]
    if enrolled:
        warnings.append(f"{enrolled} enrolment(s) the apply made are kept")
    estimate = estimate_writes(len(actions), config.limits)
    doc = {"format_version": 1, "target": target.description, "spec_digest": state.start.get("spec_digest", ""),
           "undo_of": state.start["apply_id"], "limits": vars(config.limits),
           "summary": {"create": sum(a["action"] == "create" for a in actions),
                       "delete": sum(a["action"] == "delete" for a in actions), "enroll": 0, "unchanged": 0,
                       "existing_in_scope": 0, "writes": len(actions), "estimate": estimate.describe(),
                       "estimate_seconds": round(estimate.seconds, 1), "estimate_days": estimate.days,
                       "estimate_documented": None},
           "actions": actions, "warnings": warnings, "drift": [], "partial": [], "blocked": None}
    write_text(doc, args.stdout, color=color)
    if args.out:
        save_plan(doc, args.out)
        print(f"saved the undo plan to {args.out}; apply it with: reconciler apply --plan {args.out}",
              file=args.stderr)
    return EXIT_OK


def _base(action: Action, kind: str) -> Action:
    return {"action": kind, "course": action["course"], "member": action["member"], "lesson": action["lesson"],
            "spec": action["spec"], "reason": "undo"}
