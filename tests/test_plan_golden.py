"""Golden plan cases (see tests/golden.py). RECONCILER_REGENERATE=1 rewrites the expected files for review."""

from __future__ import annotations

import json
import os

import pytest
from jsonschema import Draft202012Validator

from reconciler.schemas import schema

from .golden import CASES, render_case

NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


@pytest.mark.parametrize("name", NAMES)
def test_golden_case(name: str) -> None:
    folder = CASES / name
    rendered = render_case(folder)
    for filename, actual in rendered.items():
        expected_file = folder / filename
        if os.environ.get("RECONCILER_REGENERATE"):
            expected_file.write_text(actual)
        expected = expected_file.read_text()
        assert actual == expected, f"{name}/{filename}\n--- expected\n{expected}\n--- actual\n{actual}"
    Draft202012Validator(schema("plan")).validate(json.loads(rendered["expected.json"]))
