"""Golden plan cases (see tests/golden.py). RECONCILER_REGENERATE=1 rewrites the expected files for review."""

from __future__ import annotations

import json
import os

import pytest
from jsonschema import Draft202012Validator

from reconciler.schemas import schema

from .golden import CASES, plan_case, render_case

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


@pytest.mark.parametrize("name", NAMES)
def test_the_direct_json_form_is_the_typed_actions_json_form(name: str) -> None:
    """render.action_dict builds the JSON form straight from the planner's change; the write side reads it
    back typed. Both ways must give one and the same document."""
    from reconciler.actions import action_from_dict, action_to_dict
    from reconciler.render import Labels, action_dict, typed_action

    plan, catalog = plan_case(CASES / name)
    labels = Labels.from_catalog(catalog)
    for change in plan.actions:
        direct = action_dict(change, labels)
        assert direct == action_to_dict(typed_action(change, labels))
        assert action_to_dict(action_from_dict(direct, name)) == direct
