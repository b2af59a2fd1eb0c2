"""`reconciler schemas`: the JSON Schemas, written where editors can load them."""

from __future__ import annotations

from pathlib import Path

from reconciler.commands import Console, Outcome
from reconciler.errors import UsageError
from reconciler.schemas import write_schemas


def schemas(out: Path, *, console: Console) -> Outcome:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: name a folder to write the schemas into")
    for path in write_schemas(out):
        print(path, file=console.stdout)
    console.note(f"wrote the JSON Schemas to {out}; a spec names its schema on its first line, relative to itself: "
                 f"# yaml-language-server: $schema=<path to {out}>/completions.schema.json")
    return Outcome.OK
