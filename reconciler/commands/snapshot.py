"""`reconciler snapshot`: the raw API records of the scope as a JSON snapshot, which `emulator seed` loads."""

from __future__ import annotations

from pathlib import Path

from reconciler.commands import Console, Outcome
from reconciler.config import load_config
from reconciler.planning import write_document
from reconciler.render import write_json
from reconciler.snapshot import snapshot_document
from reconciler.state import StateReader
from reconciler.target import connect


def snapshot(*, courses: list[str], out: Path | None, config_file: Path | None, api: str | None,
             cache: bool = True, console: Console) -> Outcome:
    config = load_config(config_flag=config_file, api_flag=api, paths=[])
    with connect(config, cache=cache) as target:
        records = StateReader(target.client, target.cache).snapshot(courses)
        requests = target.client.stats.requests
    document = snapshot_document(records)
    if out:
        write_document(document, out)
        counts = ", ".join(f"{len(v):,} {k}" for k, v in records.items())
        console.note(f"saved a snapshot of {target.description} to {out}: {counts} ({requests} requests)")
    else:
        write_json(document, console.stdout)
    return Outcome.OK
