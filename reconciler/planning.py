"""The read half of the loop, shared by plan and apply: catalog → resolve → fetch → plan → budgets → dict."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from reconciler import UNPAIRED
from reconciler.actions import (
    Action,
    ActionDicts,
    ActionsDigest,
    Create,
    Delete,
    Enroll,
    TypedPlan,
    action_from_dict,
    check_digest,
    check_document_digest,
    check_schema,
    document_digest,
    for_schema,
    guard_of,
    plain_action,
    plan_from_document,
)
from reconciler.config import DOCUMENTED_LIMITS, ClientLimits, Config
from reconciler.errors import PlanFileError, SpecError, UsageError
from reconciler.gc_pause import gc_paused
from reconciler.matrix import matrix_section
from reconciler.model import Catalog, SpecSet
from reconciler.plan import Plan, apply_budgets, estimate_writes, plan_changes
from reconciler.profile import refuse_owned
from reconciler.render import ChunkedWriter, Deferred, Labels, keyed_json_pieces, plan_dict, typed_action
from reconciler.resolve import Resolution, resolve
from reconciler.state import StateReader
from reconciler.target import Target


@dataclass
class Planned:
    plan: Plan
    doc: dict[str, Any]
    catalog: Catalog
    resolution: Resolution
    labels: Labels
    spec_files: tuple[str, ...] = ()

    @cached_property
    def typed(self) -> TypedPlan:
        """The plan as the write side's typed actions (made only when it is to be applied)."""
        return TypedPlan(self.doc, tuple(typed_action(a, self.labels) for a in self.plan.actions))


@gc_paused()  # reads, plan and document build millions of small acyclic objects (see gc_pause)
def make_plan(target: Target, specs: SpecSet, config: Config, *, allow_deletes: int | None = None,
              matrix: bool = True, confirm_creates: bool = False) -> Planned:
    """Read, resolve, plan and budget; the document carries the `matrix` section unless `matrix` is False. With
    `confirm_creates` (plan), a plan creating for a few members reads their completions again first
    (`StateReader.confirm_absent`): what the first read missed is not planned as a create."""
    refuse_owned(target.profile, specs)  # before any request: `doctor` found owned mode cannot work here
    reader = StateReader(target.client, target.cache)
    catalog = reader.catalog(specs)
    reader.release()  # the raw records behind the catalog are not needed again
    resolution = resolve(specs, catalog)
    lesson_ids = {lesson.id for course_id in resolution.course_ids for lesson in catalog.lessons_of(course_id)}
    named = set().union(*(r.named_members for r in resolution.completions)) if resolution.completions else set()
    markers = [r.spec.marker for r in resolution.completions if r.spec.mode == "owned"]
    # A migration needs every completion of both its courses; otherwise the named members may suffice.
    current, partial = reader.completions(lesson_ids, named_members=None if resolution.migrations else named,
                                          markers=markers, catalog=catalog)
    if markers:  # (whatever a profile says: a server can stop showing SystemId since it was measured)
        owned = [r for r in resolution.completions if r.spec.mode == "owned"]
        reader.check_markers_listed(current, {lesson.id for r in owned for lesson in catalog.lessons_of(r.course.id)},
                                    lambda pair: any(pair in r.desired for r in owned), markers)
    plan = plan_changes(resolution, current, catalog, partial=partial)
    if plan.errors:
        raise SpecError(plan.errors)
    if confirm_creates and not partial:
        _confirm_creates(reader, plan)
    apply_budgets(plan, config.safety, allow_deletes)
    labels = Labels.from_catalog(catalog)
    doc = plan_dict(plan, labels, target=target.description, spec_digest=specs.digest, limits=config.limits,
                    lazy=True)
    if matrix:  # rows: the members whose completions were read in full (all of them for a migration)
        doc["matrix"] = matrix_section(catalog, resolution.course_ids, current, plan.actions,
                                       None if resolution.migrations else named)
    return Planned(plan, doc, catalog, resolution, labels, specs.files)


def _confirm_creates(reader: StateReader, plan: Plan) -> None:
    """Drop the creates (of specs: a migration's go by their twins) whose pair a second read of their members finds,
    each then unchanged, with a warning saying why."""
    creates = {(c.member_id, c.lesson_id) for c in plan.actions
               if c.kind == "create" and c.member_id and c.reason != "migrated"}
    found = reader.confirm_absent(creates) if creates else set()
    if not found:
        return
    plan.actions[:] = [c for c in plan.actions if not (c.kind == "create" and c.reason != "migrated"
                                                       and (c.member_id, c.lesson_id) in found)]
    plan.unchanged += len(found)
    plan.existing_in_scope += len(found)
    plan.warnings.append(f"{len(found):,} completion(s) the read did not list were found by a second read of their "
                         "members, and are not created: another writer between the pages of a read at offsets shifts "
                         "records past it (the plan's deletes may miss such a record too; the next plan sees it)")


def check_migrations(reader: StateReader, resolution: Resolution, catalog: Catalog) -> Plan:
    """The resolution's migrations planned by the planner against the live completions of their courses (every
    one, as `make_plan` reads them for a migration), for `validate`: what plan finds only against the live state,
    each with its file, line and column (`Plan.errors`: members with progress to migrate who are not enrolled,
    a lesson left unmapped under `strict`, and with them the specs of their courses: a member to be enrolled who
    has nothing to carry, a pair both migrated and revoked), its warnings, and the reads that came back
    `partial`."""
    courses = Resolution(migrations=resolution.migrations).course_ids
    migrations = Resolution(completions=[r for r in resolution.completions if r.course.id in courses],
                            migrations=resolution.migrations)
    lesson_ids = {lesson.id for course_id in migrations.course_ids for lesson in catalog.lessons_of(course_id)}
    current, partial = reader.completions(lesson_ids, catalog=catalog)
    return plan_changes(migrations, current, catalog, partial=partial)


def write_document(doc: dict[str, Any], path: Path, *, on_action: Callable[[list[str]], None] | None = None,
                   echo: TextIO | None = None, echoed: Collection[str] = ()) -> None:
    """Write a JSON document atomically, piece by piece (a plan of a million actions is never one string);
    it holds no secret: the client never puts one in. With `echo`, the document made of its leading keys
    `echoed` goes there as it is written (the same pieces, encoded once)."""
    if path.is_dir():
        raise UsageError(f"{path} is a folder: name the file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", errors=UNPAIRED) as out:
            writer, copy = ChunkedWriter(out), ChunkedWriter(echo) if echo is not None else None
            for key, piece in keyed_json_pieces(doc, on_action=on_action):
                writer.write(piece)
                if copy is not None and (key is None or key in echoed):
                    copy.write(piece)
            writer.flush()
        os.replace(temporary, path)
        if copy is not None:
            copy.flush()
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_plan(doc: dict[str, Any], path: Path, spec_files: Sequence[str] = (), *, echo: TextIO | None = None) -> None:
    """Save a plan for `apply --plan`: with the spec files it was made from (relative to the plan file, so
    that it applies from any folder) and a digest of its actions and of the fields that block it (`blocked`,
    `partial`; so that an edited plan is refused), taken over the action lines as they are written. With
    `echo`, the plan's JSON form (`render.write_json` of `doc`) is written there at the same time, its actions
    encoded once for both."""
    saved = {key: value for key, value in doc.items() if key != "actions_digest"}  # due after the actions
    if spec_files:
        folder = path.resolve().parent
        saved["spec_paths"] = sorted(os.path.relpath(Path(f).resolve(), folder) for f in spec_files)
    digest = ActionsDigest()  # its value is taken once the action lines are written, with the guard fields
    saved["actions_digest"] = Deferred(lambda: digest.hexdigest(guard_of(saved)))
    saved["document_digest"] = document_digest(saved)
    try:
        write_document(saved, path, on_action=digest.add, echo=echo, echoed=doc.keys())
    finally:  # the digest refers back to `saved`: a cycle that would hold the plan until the collector ran
        saved.clear()


def spec_paths_of(doc: dict[str, Any], plan_file: Path) -> list[Path]:
    """The spec files a saved plan was made from, as paths from here."""
    return [plan_file.parent / p for p in doc.get("spec_paths") or []]


def load_plan(path: Path, *, lean: bool = False) -> TypedPlan:
    """A saved plan, validated against specs/plan.schema.json, its actions against its digest and its summary
    against its actions (`check_summary`), and typed; PlanFileError naming the field.

    `lean` (apply): the plan as apply needs it, read a line at a time: its document without the `matrix`,
    and with `actions` that read its typed actions (`ActionDicts`) instead of a dict each. Exactly the same
    checks, and for a plan that fails any of them, exactly the same error (such a plan is read whole)."""
    try:
        if lean:
            streamed = _stream_plan(path)
            if streamed is not None:
                return streamed
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise UsageError(f"no plan file {path}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise PlanFileError(f"{path} is not a saved plan (not JSON)") from e
    except RecursionError as e:
        raise PlanFileError(f"{path} is not a saved plan (JSON nested too deeply to read)") from e
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e
    typed = plan_from_document(doc, str(path), saved=True)
    check_summary(typed.document, typed.actions, str(path))
    check_document_digest(typed.document, str(path))  # (after the summary's own check, which names the field)
    return typed


LARGEST_LIMIT = 2**53
"""A limit above this is none a configuration gives (and its estimate would overflow a float)."""


def check_summary(document: dict[str, Any], actions: Sequence[Action], source: str) -> None:
    """PlanFileError unless a saved plan's `summary` is what its actions give: the creates, deletes, enrolments
    and writes they count, and the estimate of the writes under the plan's `limits` (`render.plan_dict`'s own
    sums). The digest covers the actions, not the summary, while show, the pull-request comment and apply print
    the summary: an edited one would stand beside actions that say otherwise. `unchanged` and
    `existing_in_scope` come from reads the plan does not carry, so they are not checked; `estimate_documented`
    may be null (an undo plan leaves it out), else it is checked too."""
    summary = document["summary"]
    kinds = Counter(map(type, actions))  # a type each: a plan of a million actions is counted in 30 ms
    writes = len(actions)
    wrong = [f"summary.{name} is {summary[name]!r}, but its actions give {found!r}"
             for name, found in (("create", kinds[Create]), ("delete", kinds[Delete]), ("enroll", kinds[Enroll]),
                                 ("writes", writes))
             if summary[name] != found]
    raw_limits: dict[str, Any] = document["limits"]
    for name, value in raw_limits.items():
        if value is not None and not 0 <= value <= LARGEST_LIMIT:
            raise PlanFileError(f"{source}: limits.{name} is {value!r}, a limit no configuration gives (was the plan "
                                "edited?); plan again and apply the plan as saved")
    limits = ClientLimits(**raw_limits)
    estimate = estimate_writes(writes, limits)
    documented = (estimate_writes(writes, DOCUMENTED_LIMITS).describe()
                  if limits != DOCUMENTED_LIMITS and writes else None)
    for name, found in (("estimate", estimate.describe()), ("estimate_seconds", round(estimate.seconds, 1)),
                        ("estimate_days", estimate.days), ("estimate_documented", documented)):
        recorded = summary[name]
        if recorded != found and not (name == "estimate_documented" and recorded is None):
            wrong.append(f"summary.{name} is {recorded!r}, but its {writes:,} writes under its limits give {found!r}")
    if wrong:
        raise PlanFileError(f"{source}: {'; '.join(wrong)}: the summary does not match the actions (was the plan "
                            "edited?); plan again and apply the plan as saved")


def _stream_plan(path: Path) -> TypedPlan | None:
    """A saved plan as `save_plan` lays it out (an action a line), read a line at a time into typed actions:
    each line parsed, digested and typed, then let go, so that a plan of a million actions is never held as
    text nor as dicts. None whenever anything is not as expected (another layout, an action whose shape the
    schema must judge, an action that does not agree with itself, a damaged file): the caller then reads the
    file whole, as before, and reports exactly what it always did."""
    import secrets

    source = str(path)
    placeholder = f"actions-{secrets.token_hex(8)}"  # where the actions were, in the rest of the document
    rest: list[str] = []
    first: dict[str, Any] | None = None
    actions: list[Action] = []
    shared: dict[Any, Any] = {}
    digest = ActionsDigest()
    encode = json.JSONEncoder(ensure_ascii=False).encode  # the action lines the digest was taken over
    batch: list[str] = []
    state = "before"  # → "actions" → "after"; "more": an action line ended with a comma
    with path.open("rb") as lines:
        for raw in lines:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
            if state in ("before", "after"):
                if line.strip() == '"actions": [':
                    if state == "after":
                        return None  # a second list of actions: the whole-file reading decides
                    rest.append(f'"actions": "{placeholder}"')
                    state = "actions"
                else:
                    rest.append(line)
                continue
            text = line.strip()
            if text in ("]", "],"):
                if state == "more":
                    return None
                rest.append(text[1:] + "\n")
                state = "after"
                continue
            if state == "actions" and actions:
                return None  # two actions without a comma between them
            state = "more" if text.endswith(",") else "actions"
            try:
                entry = json.loads(text.removesuffix(",") if state == "more" else text)
            except (ValueError, RecursionError):
                return None
            if not plain_action(entry):
                return None  # the schema explains it, reading the whole file
            try:
                actions.append(action_from_dict(entry, f"{source}: actions[{len(actions)}]", shared))
            except PlanFileError:
                return None  # reported after any schema error of the document, as the whole-file reading does
            first = first or entry
            batch.append(encode(entry))
            if len(batch) >= 2048:
                digest.add(batch)
                batch = []
    if state != "before" and state != "after":
        return None
    digest.add(batch)
    try:
        document = json.loads("".join(rest))
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    if state == "after" and document.get("actions") != placeholder:
        return None  # the list was not the document's own `actions` (or another one overrode it)
    if state == "after":
        document["actions"] = [first] if first is not None else []
    if not isinstance(document.get("actions"), list) or (state == "before" and document["actions"]):
        return None  # actions laid out otherwise: read the file whole
    check_schema(for_schema(document), source)  # the actions are plain: the schema sees the first, as before
    check_digest(document, lambda: digest.hexdigest(guard_of(document)), source, saved=True)
    typed = tuple(actions)
    check_summary(document, typed, source)
    check_document_digest(document, source)
    document.pop("matrix", None)  # apply does not show it
    document["actions"] = ActionDicts(typed)
    return TypedPlan(document, typed)
