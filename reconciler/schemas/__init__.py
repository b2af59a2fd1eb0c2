"""The JSON Schemas (draft 2020-12) that are the authority on the shape of every file we read."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator


@cache
def schema(name: str) -> dict[str, Any]:
    """The schema `name` (for example "completions") as a dict."""
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name))

