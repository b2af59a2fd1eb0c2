"""`reconciler apply` (from specs, a saved plan, or a journal to resume) and `reconciler undo`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from reconciler.actions import Action, TypedPlan, action_to_dict, describe, plan_from_document
from reconciler.apply import DONE, Executor, Fresh, Result, read_fresh, stale_reason, verify
from reconciler.config import Config, load_config
from reconciler.errors import EXIT_BLOCKED, EXIT_FAILED, EXIT_OK, UsageError
from reconciler.foreign_yaml import load_spec_set
from reconciler.journal import Journal, JournalState, new_apply_id, read_journal, write_budget
from reconciler.lock import target_lock
from reconciler.plan import estimate_writes
from reconciler.planning import load_plan, make_plan, save_plan, spec_paths_of
from reconciler.render import write_text
from reconciler.spec import load_specs
from reconciler.state import StateReader
from reconciler.target import Target, connect
from reconciler.target import describe as describe_target
from reconciler.undo import Sent, plan_undo


def run_apply(args: argparse.Namespace, *, color: bool) -> int:
    if args.resume and (args.plan_file or args.paths):
        raise UsageError("--resume takes the journal alone, without PATH or --plan")
    saved = load_plan(args.plan_file) if args.plan_file else None
    # A saved plan names its spec files (relative to itself), so it applies from any folder.
    paths = args.paths or (spec_paths_of(saved.document, args.plan_file) if saved and args.plan_file else [])
    config = load_config(config_flag=args.config, api_flag=args.api, paths=paths)
    command = "reconciler " + " ".join(getattr(args, "argv", []) or ["apply"])
    with target_lock(config.state_dir, describe_target(config), command), \
            connect(config, cache=not args.no_cache) as target:  # the plan may use it; preconditions never do
        _bound(target, args)
        if args.resume:
            return _resume(args, config, target)
        if saved is not None:
            problem = _saved_plan_problem(saved, paths, config, target)
            if problem:
                print(f"error: stale plan: {problem}", file=args.stderr)
                return EXIT_BLOCKED
            plan = saved
        else:
            specs = load_spec_set(args.paths or [Path(".")], [config.seed] if config.seed else [])
            plan = make_plan(target, specs, config, allow_deletes=args.allow_deletes, matrix=False).typed
        doc = plan.document
        write_text(doc, args.stdout, color=color)
        if _still_blocked(doc, args.allow_deletes):
            return EXIT_BLOCKED
        if not plan.actions:
            return EXIT_OK
        _confirm(args, len(plan.actions), target.description)
        fresh = None
        if saved is not None:  # time has passed since the plan: re-check every precondition
            fresh = read_fresh(target.client, plan.actions)
            stale = [(a, r) for a in plan.actions if (r := stale_reason(a, fresh)) is not None]
            if stale and args.strict:
                for action, reason in stale[:20]:
                    print(f"  {describe(action)}: {reason}", file=args.stderr)
                print(f"error: stale plan: {len(stale)} of {len(plan.actions)} actions no longer hold (--strict)",
                      file=args.stderr)
                return EXIT_BLOCKED
        result, journal_path = execute_plan(target, config, plan, fresh=fresh, fail_fast=args.fail_fast,
                                            progress_out=args.stderr)
        return _finish(args, target, journal_path, list(enumerate(plan.actions)), result)


def _bound(target: Target, args: argparse.Namespace) -> None:
    """The waits and the run time the user allows (a server asking for more stops the run cleanly)."""
    if getattr(args, "max_wait", None) is not None:
        target.client.max_wait = float(args.max_wait)
    if getattr(args, "max_duration", None) is not None:
        target.client.deadline = target.client.clock() + float(args.max_duration)


def execute_plan(target: Target, config: Config, plan: TypedPlan | dict[str, Any], *, fresh: Fresh | None = None,
                 fail_fast: bool = False, progress_out: TextIO | None = None) -> tuple[Result, Path]:
    """Run a plan's actions under a new journal; returns the result and the journal's path."""
    if not isinstance(plan, TypedPlan):
        plan = plan_from_document(plan, "the plan")
    apply_id = new_apply_id()
    journal_path = config.state_dir / "journal" / f"{apply_id}.jsonl"
    _count_earlier_writes(target, journal_path.parent, progress_out or sys.stderr)
    with Journal(journal_path) as journal:
        journal.write({"type": "start", "apply_id": apply_id, "target": target.description,
                       "spec_digest": plan.document.get("spec_digest", ""), "undo_of": plan.document.get("undo_of"),
                       "actions": [action_to_dict(a) for a in plan.actions]})
        executor = Executor(target.client, journal, fail_fast=fail_fast, progress_out=progress_out)
        result = executor.run(list(enumerate(plan.actions)), fresh)
        if not result.stopped:
            journal.write({"type": "end", "summary": dict(result.counts)})
    return result, journal_path


def _count_earlier_writes(target: Target, folder: Path, out: TextIO) -> None:
    """The daily write cap belongs to the account: what earlier runs spent today counts."""
    budget = write_budget(folder, target.description)
    for problem in budget.unreadable:
        print(f"warning: the daily write budget may be undercounted: {problem}", file=out)
    target.client.pacer.note_past_writes(budget.ages)


def _saved_plan_problem(saved: TypedPlan, paths: list[Path], config: Config, target: Target) -> str | None:
    doc = saved.document
    if saved.target != target.description:
        return f"it was made against {saved.target}, but the target is {target.description}"
    undo_of = doc.get("undo_of")
    if undo_of:
        journal = config.state_dir / "journal" / f"{undo_of}.jsonl"
        if not journal.is_file():
            return f"it undoes apply {undo_of}, whose journal {journal} is not here; make the undo plan again"
        if read_journal(journal).start.get("target") != target.description:
            return f"it undoes apply {undo_of}, which was not made against {target.description}"
        return None
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        return f"the spec file(s) it was made from are gone: {', '.join(missing)}; plan again"
    specs = load_specs(paths or [Path(".")], exclude=[config.seed] if config.seed else [], require_any=False)
    if specs.digest != doc.get("spec_digest"):
        return "the spec files changed since it was made; plan again"
    return None


def _still_blocked(doc: dict[str, Any], allow_deletes: int | None) -> bool:
    """Whether a plan stays blocked: an incomplete read always; a delete budget unless --allow-deletes
    covers the number the plan named (the deletes its budget counts, a migration's conserved ones not)."""
    blocked = doc.get("blocked")
    if not blocked:
        return False
    needed = blocked.get("allow_deletes")
    if doc.get("partial") or needed is None:
        return True
    return allow_deletes is None or allow_deletes < needed


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


def _finish(args: argparse.Namespace, target: Target, journal_path: Path, actions: list[tuple[int, Action]],
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
                print(f"  {describe(action)}: {reason}", file=out)
            if len(items) > 20:
                print(f"  … {len(items) - 20:,} more in {journal_path}", file=out)
    for warning in result.warnings:
        print(f"warning: {warning}", file=out)
    print(f"Journal: {journal_path}", file=out)
    if result.stopped:
        print(f"Stopped: {result.stopped}", file=out)
        print(f"Resume with: reconciler apply --resume {journal_path}", file=out)
        return result.stop_code
    state = read_journal(journal_path)
    checked = verify(target.client, actions, state.outcomes)
    if checked.converged:
        print(f"Converged: all {len(actions):,} planned changes are in place.", file=out)
    for line in checked.missing[:50]:
        print(f"  not in place: {line}", file=out)
    if checked.missing:
        print(f"Not converged: {len(checked.missing):,} of {len(actions):,} planned changes are not in place "
              "(see above); `reconciler plan` shows what is left.", file=out)
    if checked.duplicates:
        print("Duplicates made by a concurrent writer:", file=out)
        for line in checked.duplicates[:50]:
            print(f"  {line}", file=out)
        print(f"{len(checked.duplicates):,} duplicate(s): the next `reconciler plan` keeps the oldest of each pair "
              "and deletes the others its mode may delete (in owned mode, those carrying the spec's marker); "
              "the rest it reports as drift.", file=out)
    return EXIT_FAILED if result.failed or not checked.converged else EXIT_OK


def _resume(args: argparse.Namespace, config: Config, target: Target) -> int:
    state: JournalState = read_journal(args.resume)
    if state.start.get("target") != target.description:
        raise UsageError(f"the journal is of an apply to {state.start.get('target')}, not {target.description}")
    actions = state.typed_actions()
    remaining = [(seq, a) for seq, a in enumerate(actions) if state.outcomes.get(seq, {}).get("status") not in DONE]
    print(f"Resuming apply {state.start['apply_id']} on {target.description}: {len(remaining):,} of "
          f"{len(actions):,} actions left.", file=args.stdout)
    if not remaining:
        return EXIT_OK
    _confirm(args, len(remaining), target.description)
    fresh = read_fresh(target.client, [a for _, a in remaining])
    _count_earlier_writes(target, args.resume.parent, args.stderr)
    with Journal(args.resume) as journal:
        journal.write({"type": "resume", "remaining": len(remaining)})
        result = Executor(target.client, journal, fail_fast=args.fail_fast, progress_out=args.stderr).run(
            remaining, fresh)
        if not result.stopped:
            journal.write({"type": "end", "summary": dict(result.counts)})
    return _finish(args, target, args.resume, list(enumerate(actions)), result)


# --- undo ----------------------------------------------------------------------------------------

def journal_history(state: JournalState) -> list[Sent]:
    """What the journal says of each action: as last sent, when, and its last outcome."""
    history = []
    for seq, planned in enumerate(state.typed_actions()):
        intents = state.intents.get(seq, [])
        outcome = state.outcomes.get(seq, {})
        new_id = outcome.get("id")
        history.append(Sent(seq, state.last_sent(seq) or planned, bool(intents),
                            str(intents[0].get("at")) if intents else None, outcome.get("status"),
                            new_id if isinstance(new_id, int) else None))
    return history


def run_undo(args: argparse.Namespace, *, color: bool) -> int:
    """A plan that recreates what an apply deleted and deletes what it created."""
    state = read_journal(args.journal)
    history = journal_history(state)
    config = load_config(config_flag=args.config, api_flag=args.api, paths=[])
    with connect(config) as target:
        if state.start.get("target") != target.description:
            raise UsageError(f"the journal is of an apply to {state.start.get('target')}, not {target.description}")
        touched = [item.action for item in history if item.sent and item.action.lesson.id]
        lessons = {a.lesson.id or 0 for a in touched}
        members = {a.member.id for a in touched if a.member.id is not None}
        live, partial = StateReader(target.client).completion_records(lessons, members) if lessons else ([], [])
        if partial:
            raise UsageError("cannot read the records to undo in full: " + "; ".join(partial))
    undone = plan_undo(history, live, str(args.journal))
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
    write_text(doc, args.stdout, color=color)
    if args.out:
        save_plan(doc, args.out)
        print(f"saved the undo plan to {args.out}; apply it with: reconciler apply --plan {args.out}",
              file=args.stderr)
    return EXIT_OK
