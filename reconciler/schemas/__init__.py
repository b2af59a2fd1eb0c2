"""The JSON Schemas (draft 2020-12) that are the authority on the shape of every file we read."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator


@cache
def schema(name: str) -> dict[str, Any]:
    """The schema `name` (for example "completions") as a dict."""
    from importlib import resources  # (imported only when a schema is read: most runs read none)

    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def validator(name: str) -> Draft202012Validator:
    """jsonschema's validator of the schema `name`, imported only now (see `schema_check`)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(name))



# The folder, beside the specs, that `export`, `init` and `schemas --out` fill and the specs' first line names.
FOLDER = "schemas"


def names() -> list[str]:
    """Every schema this package holds, by name ("completions", "config", ...)."""
    from importlib import resources

    return sorted(entry.name.removesuffix(".schema.json") for entry in resources.files(__package__).iterdir()
                  if entry.name.endswith(".schema.json"))


def write_schemas(folder: Path) -> list[Path]:
    """Write every schema into `folder` (made if missing), as editors load them; the files written."""
    from importlib import resources

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names():
        path = folder / f"{name}.schema.json"
        text = resources.files(__package__).joinpath(path.name).read_text(encoding="utf-8")
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
