"""`reconciler apply`: from specs, a saved plan (`--plan`), or the journal of an interrupted apply (`--resume`).

One apply per target at a time (the lock), a confirmation unless `--yes`, the actions run paced and
journaled (apply.py's Executor), then the end table and a re-read of every planned change (converged or
not).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from reconciler.actions import Action, TypedPlan, action_to_dict, describe, plan_from_document
from reconciler.apply import DONE, Executor, Numbered, Result
from reconciler.commands import Console, Outcome, check_journal_target
from reconciler.config import Config, load_config, same_target
from reconciler.errors import EXIT_FAILED, EXIT_INTERRUPTED, StalePlan, StopRun, UsageError
from reconciler.foreign_yaml import load_spec_set
from reconciler.fresh import Fresh, read_fresh, replaced_records, stale_reason
from reconciler.journal import Journal, JournalState, new_apply_id, read_journal, write_budget
from reconciler.lock import target_lock
from reconciler.planning import load_plan, make_plan, spec_paths_of, write_document
from reconciler.profile import with_ownership_lost
from reconciler.render import quiet_lines, shown, write_text
from reconciler.spec import load_specs
from reconciler.target import Target, connect
from reconciler.target import describe as describe_target
from reconciler.verify import verify


def apply(paths: list[Path], *, plan_file: Path | None = None, resume: Path | None = None, yes: bool = False,
          allow_deletes: int | None = None, fail_fast: bool = False, strict: bool = False,
          max_wait: float | None = 300.0, max_duration: float | None = None, config_file: Path | None,
          api: str | None, cache: bool = True, console: Console) -> Outcome:
    """Apply what a plan shows; OK when every planned change is in place, FAILED when an action failed or the
    target did not converge, STOPPED when the run stopped cleanly (resumable), BLOCKED by a safety budget.
    A stale saved plan raises StalePlan."""
    if resume and (plan_file or paths):
        raise UsageError("--resume takes the journal alone, without PATH or --plan")
    if plan_file and paths:  # the plan names the spec files it was made from: PATH would only contradict them
        raise UsageError("--plan takes the saved plan alone, without PATH (the plan names its own spec files)")
    saved = load_plan(plan_file, lean=True) if plan_file else None
    # A saved plan names its spec files (relative to itself), so it applies from any folder.
    paths = paths or (spec_paths_of(saved.document, plan_file) if saved and plan_file else [])
    config = load_config(config_flag=config_file, api_flag=api, paths=paths)
    if saved is not None and not same_target(saved.target, describe_target(config)):
        # Before anything is made here (the local target's store, the lock): a plan of another target.
        raise StalePlan(f"stale plan: it was made against {saved.target}, but the target is "
                        f"{describe_target(config)}")
    command = "reconciler " + " ".join(console.argv or ["apply"])
    with target_lock(config.state_dir, describe_target(config), command), \
            connect(config, cache=cache) as target:  # the plan may use it; preconditions never do
        if max_wait is not None:  # the waits and the run time the user allows (beyond: a clean stop)
            target.client.max_wait = float(max_wait)
        if max_duration is not None:
            target.client.deadline = target.client.clock() + float(max_duration)
        if resume:
            return _resume(resume, target, fail_fast=fail_fast, yes=yes, console=console,
                           again=_target_words(api, config_file), state_dir=config.state_dir)
        if saved is not None:
            problem = _saved_plan_problem(saved, paths, config, target)
            if problem:
                raise StalePlan(f"stale plan: {problem}")
            plan = saved
        else:
            specs = load_spec_set(paths or [Path(".")], [config.seed] if config.seed else [])
            plan = make_plan(target, specs, config, allow_deletes=allow_deletes, matrix=False).typed
        doc = plan.document
        blocked = still_blocked(doc, allow_deletes)
        # A saved plan blocked by a delete budget that --allow-deletes covers is not shown as "Blocked" just before
        # it is applied: what lifted it is said instead.
        shown_doc = doc if blocked or not doc.get("blocked") else {**doc, "blocked": None}
        if console.quiet:
            print("\n".join(quiet_lines(shown_doc)), file=console.stdout)
        else:
            write_text(shown_doc, console.stdout, color=console.color)
        if shown_doc is not doc:
            reasons = "; ".join(doc["blocked"]["reasons"])
            print(f"Lifted by --allow-deletes {allow_deletes}: {shown(reasons)}.", file=console.stdout)
        if blocked:
            return Outcome.BLOCKED
        if not plan.actions:
            return Outcome.OK
        per_day = target.client.pacer.limits.writes_per_day
        capped = write_budget(config.state_dir / "journal", target.description).cap_note(
            doc["summary"]["writes"], per_day) if per_day else None
        if capped:  # said before the question: the apply will not get through today
            console.warn(capped)
        _confirm(console, len(plan.actions), target.description, yes=yes)
        fresh = None
        if saved is not None:  # time has passed since the plan: re-check every precondition
            fresh = read_fresh(target.client, plan.actions)
            # Without --strict the executor checks each action's precondition just before it runs.
            replaced = replaced_records(plan.actions) if strict else frozenset()
            stale = [(a, r) for a in plan.actions if (r := stale_reason(a, fresh, replaced)) is not None] \
                if strict else []
            if stale:
                for action, reason in stale[:20]:
                    print(f"  {shown(describe(action))}: {shown(reason)}", file=console.stderr)
                raise StalePlan(f"stale plan: {len(stale)} of {len(plan.actions)} actions no longer hold (--strict)")
        result, journal_path = execute_plan(target, config, plan, fresh=fresh, fail_fast=fail_fast,
                                            progress_out=console.progress(), warnings_out=console.stderr)
        return _finish(console, target, journal_path, Numbered(plan.actions), result,
                       again=_target_words(api, config_file), yes=yes)


def _target_words(api: str | None, config_file: Path | None) -> str:
    """The options of this run that chose its target, as a command to resume it must give them again (a journal
    is resumed only against the target it was made against)."""
    words = [*(["--config", str(config_file)] if config_file else []), *(["--api", api] if api else [])]
    return "".join(f" {shlex.quote(word)}" for word in words)


def execute_plan(target: Target, config: Config, plan: TypedPlan | dict[str, Any], *, fresh: Fresh | None = None,
                 fail_fast: bool = False, progress_out: TextIO | None = None,
                 warnings_out: TextIO | None = None) -> tuple[Result, Path]:
    """Run a plan's actions under a new journal; returns the result and the journal's path. Progress goes to
    `progress_out`, warnings to `warnings_out` (both default to stderr)."""
    if not isinstance(plan, TypedPlan):
        plan = plan_from_document(plan, "the plan")
    apply_id = new_apply_id()
    journal_path = config.state_dir / "journal" / f"{apply_id}.jsonl"
    _count_earlier_writes(target, journal_path.parent, warnings_out or progress_out or sys.stderr)
    with Journal(journal_path) as journal:
        journal.write_start({"type": "start", "apply_id": apply_id, "target": target.description,
                             "spec_digest": plan.document.get("spec_digest", ""),
                             "undo_of": plan.document.get("undo_of")}, map(action_to_dict, plan.actions))
        executor = Executor(target.client, journal, fail_fast=fail_fast, progress_out=progress_out)
        result = executor.run(Numbered(plan.actions), fresh)
        if not result.stopped:
            journal.write({"type": "end", "summary": dict(result.counts)})
    _remember_ownership_lost(executor, target, config.state_dir)
    return result, journal_path


def _remember_ownership_lost(executor: Executor, target: Target, state_dir: Path) -> None:
    """An apply that saw the target drop (or hide) the SystemId it wrote records it in the target profile: later
    plans refuse owned specs then, rather than plan "No writes" over records they cannot tell are theirs."""
    seen = with_ownership_lost(state_dir, target.description, set(target.client.observed),
                               datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")) if executor.ownership_lost else None
    if seen is not None:
        write_document(*seen)


def still_blocked(doc: dict[str, Any], allow_deletes: int | None) -> bool:
    """Whether a plan stays blocked: an incomplete read always; a delete budget unless --allow-deletes
    covers the number the plan named (the deletes its budget counts, a migration's conserved ones not)."""
    blocked = doc.get("blocked")
    if not blocked:
        return False
    needed = blocked.get("allow_deletes")
    if doc.get("partial") or needed is None:
        return True
    return allow_deletes is None or allow_deletes < needed


def _count_earlier_writes(target: Target, folder: Path, out: TextIO) -> None:
    """The daily write cap belongs to the account: what earlier runs spent today counts."""
    budget = write_budget(folder, target.description)
    for problem in budget.unreadable:
        print(f"warning: the daily write budget may be undercounted: {problem}", file=out)
    target.client.pacer.note_past_writes(budget.ages)


def _saved_plan_problem(saved: TypedPlan, paths: list[Path], config: Config, target: Target) -> str | None:
    doc = saved.document  # (made against this target: `apply` checked that before anything else)
    undo_of = doc.get("undo_of")
    if undo_of:
        journal = config.state_dir / "journal" / f"{undo_of}.jsonl"
        if not journal.is_file():
            return f"it undoes apply {undo_of}, whose journal {journal} is not here; make the undo plan again"
        if not same_target(read_journal(journal).start.get("target"), target.description):
            return f"it undoes apply {undo_of}, which was not made against {target.description}"
        return None
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        return f"the spec file(s) it was made from are gone: {', '.join(missing)}; plan again"
    specs = load_specs(paths or [Path(".")], exclude=[config.seed] if config.seed else [], require_any=False)
    if specs.digest != doc.get("spec_digest"):
        return "the spec files changed since it was made; plan again"
    return None


def _confirm(console: Console, count: int, description: str, *, yes: bool) -> None:
    if yes:
        return
    stdin = console.input()
    if not stdin.isatty():
        raise UsageError("refusing to apply without confirmation: there is no terminal to ask on; pass --yes")
    print(f"\nApply {count:,} change{'s' if count != 1 else ''} to {description}? Type 'yes' to go on: ",
          end="", file=console.stderr, flush=True)
    if stdin.readline().strip().lower() != "yes":
        raise UsageError("not applied: the confirmation was declined")


def _finish(console: Console, target: Target, journal_path: Path, actions: Sequence[tuple[int, Action]],
            result: Result, *, again: str = "", yes: bool = False) -> Outcome:
    out = console.stdout
    counts = result.counts
    rows = [("created", counts["created"]), ("deleted", counts["deleted"] + counts["gone"]),
            ("enrolled", counts["enrolled"]), ("skipped", len(result.skipped)), ("failed", len(result.failed))]
    if console.quiet:
        print(f"Applied to {target.description}: " + ", ".join(f"{count:,} {name}" for name, count in rows),
              file=out)
    else:
        print(f"\nApplied to {target.description}:", file=out)
        for name, count in rows:
            print(f"  {name:<9}{count:>7,}", file=out)
    listed = (("Failed", result.failed),) if console.quiet else (("Skipped", result.skipped), ("Failed", result.failed))
    for title, items in listed:
        if items:
            print(f"{title}:", file=out)
            for action, reason in items[:20]:
                print(f"  {shown(describe(action))}: {shown(reason)}", file=out)
            if len(items) > 20:
                print(f"  … {len(items) - 20:,} more in {journal_path}", file=out)
    for warning in result.warnings:
        print(f"warning: {shown(warning)}", file=out)
    print(f"Journal: {journal_path}", file=out)
    if result.stopped:
        print(f"Stopped: {result.stopped}", file=out)
        # Given as this run was (a run with --yes, in CI say, has no terminal to confirm on)
        print(f"Resume with: reconciler{again} apply --resume {shlex.quote(str(journal_path))}"
              f"{' --yes' if yes else ''}", file=out)
        return stop_outcome(result.stop_code)
    state = read_journal(journal_path)
    checked = verify(target.client, actions, state.outcomes, result.before)
    if checked.converged:
        print(f"Converged: all {len(actions):,} planned changes are in place.", file=out)
    if not console.quiet:
        for line in checked.missing[:50]:
            print(f"  not in place: {shown(line)}", file=out)
    if checked.missing:
        print(f"Not converged: {len(checked.missing):,} of {len(actions):,} planned changes are not in place"
              + ("" if console.quiet else " (see above)") + "; `reconciler plan` shows what is left.", file=out)
    if checked.returned:
        if not console.quiet:
            for line in checked.returned[:50]:
                print(f"  made again: {shown(line)}", file=out)
        print(f"{len(checked.returned):,} deleted pair(s) made again since (drift, not this run's failure: the "
              "Members Portal completes a lesson its member opens); the next `reconciler plan` shows them.", file=out)
    if checked.duplicates:
        if not console.quiet:
            print("Duplicates made by a concurrent writer:", file=out)
            for line in checked.duplicates[:50]:
                print(f"  {shown(line)}", file=out)
        print(f"{len(checked.duplicates):,} duplicate(s): the next `reconciler plan` keeps the oldest of each pair "
              "and deletes the others its mode may delete (in owned mode, those carrying the spec's marker); "
              "the rest it reports as drift.", file=out)
    return Outcome.FAILED if result.failed or not checked.converged else Outcome.OK


def stop_outcome(stop_code: int) -> Outcome:
    """The outcome of a run the executor stopped, from the code it gave the stop."""
    if stop_code == EXIT_INTERRUPTED:
        return Outcome.INTERRUPTED
    if stop_code == EXIT_FAILED:
        return Outcome.FAILED  # --fail-fast after a failed action
    if stop_code == StopRun.exit_code:
        return Outcome.STOPPED
    return Outcome.ERROR


def _resume(journal_path: Path, target: Target, *, fail_fast: bool, yes: bool, console: Console,
            again: str = "", state_dir: Path = Path(".reconciler")) -> Outcome:
    if not journal_path.is_file():
        read_journal(journal_path)  # its error: no such journal (the Journal below would make one)
    # Held from here to the end (JournalBusy if another run writes it, from whatever folder), and read once held:
    # what that run did until it ended is then in it.
    with Journal(journal_path) as journal:
        state: JournalState = read_journal(journal_path)
        check_journal_target(state.start.get("target"), target.description)
        actions = state.typed_actions()
        remaining = [(seq, a) for seq, a in enumerate(actions)
                     if state.outcomes.get(seq, {}).get("status") not in DONE]
        print(f"Resuming apply {state.start['apply_id']} on {target.description}: {len(remaining):,} of "
              f"{len(actions):,} actions left.", file=console.stdout)
        if not remaining:
            return Outcome.OK
        _confirm(console, len(remaining), target.description, yes=yes)
        fresh = read_fresh(target.client, [a for _, a in remaining])
        progress = console.progress()
        _count_earlier_writes(target, journal_path.parent, console.stderr)
        journal.write({"type": "resume", "remaining": len(remaining)})
        executor = Executor(target.client, journal, fail_fast=fail_fast, progress_out=progress)
        # The actions an earlier run sent and did not finish (stopped while one was in flight, or failed after it
        # was sent, which the server may have acted on), by when first sent.
        sent = {seq: str(state.intents[seq][0].get("at") or "") for seq, _ in remaining if state.intents.get(seq)}
        result = executor.run(remaining, fresh, sent)
        if not result.stopped:
            journal.write({"type": "end", "summary": dict(result.counts)})
    _remember_ownership_lost(executor, target, state_dir)
    return _finish(console, target, journal_path, Numbered(actions), result, again=again, yes=yes)
