"""`reconciler export`: the live state as spec files, which `plan` then shows as no changes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from reconciler.commands import Console, Outcome
from reconciler.config import load_config
from reconciler.errors import UsageError
from reconciler.export import duplicates_to_remove, export_specs, write_files
from reconciler.profile import export_mode
from reconciler.schemas import FOLDER as SCHEMA_FOLDER
from reconciler.schemas import write_schemas
from reconciler.state import StateReader
from reconciler.target import connect


def export(*, courses: list[str], out: Path, mode: Literal["owned", "additive", "authoritative"] | None = None,
           force: bool = False, config_file: Path | None, api: str | None, cache: bool = True,
           console: Console) -> Outcome:
    """Write one spec per course under `out` (paths printed on stdout) and the schemas they point at; the
    summary line (stderr) says what `plan` on them shows."""
    config = load_config(config_flag=config_file, api_flag=api, paths=[])
    with connect(config, cache=cache) as target:
        chosen, note = export_mode(mode, target.profile)
        records = StateReader(target.client, target.cache).snapshot(courses, columns=True)
        requests = target.client.stats.requests
        if "systemid-absent-from-lists" in target.client.observed and chosen == "owned":
            # What doctor would have found, seen by this read: owned specs would be refused by the plan on them.
            if mode == "owned":
                raise UsageError(f"--mode owned cannot work against {target.description}: its completion lists "
                                 "leave SystemId out, and owned mode knows its own records only by that marker; "
                                 "export with --mode additive or authoritative")
            chosen, note = "additive", ("exported in mode additive, not owned: the completion lists of "
                                        f"{target.description} leave SystemId out (owned mode knows its own records "
                                        "only by that marker)")
    if note:
        console.note(f"note: {note}")
    files = export_specs(records, mode=chosen, target=target.description)
    written = write_files(files, out, force=force)
    if not console.quiet:
        for path in written:
            print(path, file=console.stdout)
    # The exported specs' first line points editors here (relative to each spec).
    write_schemas(out / SCHEMA_FOLDER)
    cleanup = duplicates_to_remove(records, mode=chosen)
    outcome = "shows no changes"
    if cleanup:
        outcome += (f", except removing {sum(cleanup.values()):,} duplicate completion(s) that the exported specs' "
                    "own mode may delete (the oldest of each is kept): "
                    + ", ".join(f"{title}: {count:,}" for title, count in cleanup.items()))
    print(f"exported {len(written)} course(s) from {target.description} ({requests} requests); "
          f"`reconciler plan {out}` {outcome}", file=console.stderr)
    return Outcome.OK
