"""The read half of the loop, shared by plan and apply: catalog → resolve → fetch → plan → budgets → dict."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.config import Config
from reconciler.errors import SpecError, UsageError
from reconciler.model import Catalog, SpecSet
from reconciler.plan import Plan, apply_budgets, plan_changes
from reconciler.render import Labels, format_json, plan_dict
from reconciler.resolve import Resolution, resolve
from reconciler.state import StateReader
from reconciler.target import Target


@dataclass
class Planned:
    plan: Plan
    doc: dict[str, Any]
    catalog: Catalog
    resolution: Resolution


def make_plan(target: Target, specs: SpecSet, config: Config, *, allow_deletes: int | None = None) -> Planned:
    reader = StateReader(target.client)
    catalog = reader.catalog(specs)
    resolution = resolve(specs, catalog)
    lesson_ids = {lesson.id for course_id in resolution.course_ids for lesson in catalog.lessons_of(course_id)}
    named = set().union(*(r.named_members for r in resolution.completions)) if resolution.completions else set()
    markers = [r.spec.marker for r in resolution.completions if r.spec.mode == "owned"]
    # A migration needs every completion of both its courses; otherwise the named members may suffice.
    current, partial = reader.completions(lesson_ids, named_members=None if resolution.migrations else named,
                                          markers=markers)
    plan = plan_changes(resolution, current, catalog, partial=partial)
    if plan.errors:
        raise SpecError(plan.errors)
    apply_budgets(plan, config.safety, allow_deletes)
    doc = plan_dict(plan, Labels.from_catalog(catalog), target=target.description, spec_digest=specs.digest,
                    limits=config.limits)
    return Planned(plan, doc, catalog, resolution)


def save_plan(doc: dict[str, Any], path: Path) -> None:
    """Write a plan (or any JSON document) atomically; it holds no secret: the client never puts one in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(format_json(doc))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_plan(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise UsageError(f"no plan file {path}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not a saved plan (not JSON)") from e
    if not isinstance(doc, dict) or doc.get("format_version") != 1 or not isinstance(doc.get("actions"), list):
        raise UsageError(f"{path} is not a saved plan of format_version 1")
    return doc
