"""`conforms`, the one validation pass a document gets before jsonschema is ever imported, decides exactly as
jsonschema does: on documents generated from every schema we ship (most of them a slip away from valid), on
every spec, configuration and plan in the repository, and on the edges of the keywords it reads."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from reconciler.schema_check import conforms
from reconciler.schemas import names, schema, validator
from reconciler.yamlfile import load_file

from .conftest import ROOT

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["", "all", "x", "a@b.co", "reconciler/v1", "Completions"]), st.text(max_size=4))
ANY_JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                        max_leaves=6)


def near(node: Any, root: dict[str, Any], depth: int = 0, *, slips: bool = True) -> st.SearchStrategy[Any]:
    """Values shaped by the schema `node`: what it asks for, and with `slips` sometimes a slip (a wrong type, a
    key missing or unknown, a number past a bound, any JSON at all)."""
    if depth > 8 or not isinstance(node, dict):
        return ANY_JSON
    if "$ref" in node:
        target = root["$defs"][node["$ref"].removeprefix("#/$defs/")]
        return st.deferred(lambda: near(target, root, depth + 1, slips=slips))
    options: list[st.SearchStrategy[Any]] = []
    if "oneOf" in node:
        options += [near(branch, root, depth + 1, slips=slips) for branch in node["oneOf"]]
    if "const" in node:
        options.append(st.just(node["const"]))
    elif "enum" in node:
        options.append(st.sampled_from(node["enum"]))
    else:
        kinds = node.get("type", [])
        for kind in kinds if isinstance(kinds, list) else [kinds]:
            options.append(of_kind(kind, node, root, depth, slips))
    if not options:
        return ANY_JSON
    return st.one_of(*options, *options, *options, ANY_JSON) if slips else st.one_of(*options)


def of_kind(kind: str, node: dict[str, Any], root: dict[str, Any], depth: int, slips: bool) -> st.SearchStrategy[Any]:
    if kind == "object":
        properties = node.get("properties", {})
        required = [k for k in node.get("required", []) if k in properties]
        extra = node.get("additionalProperties", True)
        spare = st.dictionaries(st.sampled_from(["zz", "Through", "id", "name"]), ANY_JSON, max_size=1)
        if isinstance(extra, dict):
            spare = st.dictionaries(st.sampled_from(["k1", "k2", "some key"]),
                                    near(extra, root, depth + 1, slips=slips), max_size=2)
        body = st.fixed_dictionaries({k: near(properties[k], root, depth + 1, slips=slips) for k in required},
                                     optional={k: near(v, root, depth + 1, slips=slips) for k, v in properties.items()
                                               if k not in required and depth < 4})
        if not slips:
            return st.tuples(body, spare).map(lambda t: {**t[1], **t[0]} if isinstance(extra, dict) else t[0])
        return st.tuples(body, spare, st.integers(0, 9)).map(lambda t: slip_object(t[0], t[1], t[2], required))
    if kind == "array":
        least = node.get("minItems", 0)
        return st.lists(near(node.get("items", True), root, depth + 1, slips=slips),
                        min_size=max(0, least - 1) if slips else least, max_size=max(least, 2))
    if kind == "string":
        least = 0 if slips else node.get("minLength", 0)
        strings = [st.text(min_size=least, max_size=4),
                   st.sampled_from(["", " ", "a@b.co", "Lesson 1", "x" * 40]).filter(lambda t: len(t) >= least)]
        if "pattern" in node:
            pattern = st.from_regex(node["pattern"], fullmatch=False).map(lambda t: t[:40])
            strings = [pattern] if not slips else [*strings, pattern]
        return st.one_of(*strings)
    if kind in ("integer", "number"):
        bounds = [node[k] for k in ("minimum", "maximum", "exclusiveMinimum") if k in node]
        around = [st.integers(b - 1, b + 1) for b in bounds if isinstance(b, int)]
        if not slips:
            low = node.get("minimum", node.get("exclusiveMinimum", -1) + 1)
            return st.integers(low, node.get("maximum", low + 5))
        return st.one_of(st.integers(-2, 5), st.sampled_from([0.0, 1.0, 2.5, -1.0, math.nan, math.inf]), *around)
    if kind == "boolean":
        return st.booleans()
    return SCALARS


def slip_object(body: dict[str, Any], spare: dict[str, Any], roll: int, required: list[str]) -> dict[str, Any]:
    if roll == 0 and required:
        body.pop(required[0], None)
    if roll in (1, 2):
        body.update(spare)
    return body


def agrees(document: Any, name: str) -> bool:
    """`conforms` answers as jsonschema does (the package's own validator of the schema); that answer."""
    authority = validator(name).is_valid(document)
    assert conforms(document, schema(name)) == authority, (name, document)
    return authority


@pytest.mark.parametrize("name", names())
def test_it_decides_as_jsonschema_on_documents_made_from_each_schema(name: str) -> None:
    root = schema(name)
    seen = {True: 0, False: 0}

    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(near(root, root), near(root, root, slips=False)))
    def check(document: Any) -> None:
        seen[agrees(document, name)] += 1

    check()
    assert seen[True] > 0 and seen[False] > 0, seen  # both answers were met, not one of them only


def test_it_decides_as_jsonschema_on_every_document_in_the_repository() -> None:
    kinds = {"Completions": "completions", "Migration": "migration"}
    checked = 0
    for path in sorted([*ROOT.glob("examples/**/*.yaml"), *ROOT.glob("tests/**/*.yaml"),
                        *ROOT.glob("docs/**/*.yaml")]):
        documents, problems = load_file(path)
        for document in documents if not problems else []:
            data = document.data
            if isinstance(data, dict) and data.get("kind") in kinds:
                agrees(data, kinds[data["kind"]])
                checked += 1
            elif path.name.startswith("reconciler") and isinstance(data, dict):
                agrees(data, "config")
                checked += 1
    for path in sorted(ROOT.glob("tests/**/expected.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "actions" in data:
            agrees(data, "plan")
            checked += 1
    assert checked > 50


@pytest.mark.parametrize(("value", "node", "valid"), [
    (True, {"type": "integer"}, False),  # a boolean is not a number
    (1.0, {"type": "integer"}, True),  # 1.0 is an integer
    (1.5, {"type": "integer"}, False),
    (1, {"const": 1.0}, True),
    (True, {"const": 1}, False),
    (math.nan, {"type": "number", "minimum": 0}, True),  # NaN is below nothing
    (math.nan, {"type": "number", "exclusiveMinimum": 0}, True),
    ("", {"type": "string", "minLength": 1}, False),
    ("é", {"type": "string", "minLength": 1}, True),  # code points, not bytes
    ([], {"type": "array", "items": False}, True),
    ([1], {"type": "array", "items": False}, False),
    ({"a": 1}, {"type": "object", "additionalProperties": False}, False),
    ({"a": 1}, {"type": "object", "properties": {"a": {}}, "additionalProperties": False}, True),
    ("ab", {"oneOf": [{"type": "string"}, {"minLength": 1}]}, False),  # both fit: not one of
    (3, {"oneOf": [{"type": "string"}, {"minLength": 1}]}, True),  # minLength passes what is not a string
    ("x", {"required": ["a"], "minProperties": 2}, True),  # object keywords pass a string
])
def test_the_edges_of_the_keywords_it_reads(value: Any, node: dict[str, Any], valid: bool) -> None:
    assert Draft202012Validator(node).is_valid(value) is valid  # the table is jsonschema's own answer
    assert conforms(value, node) is valid


@pytest.mark.parametrize(("value", "node"), [
    ("x", {"type": "string", "maxLength": 0}),  # a keyword it does not read
    ({"a": 1}, {"type": "object", "patternProperties": {"^a": {"type": "string"}}}),
    (Path("x"), {}),  # not a JSON value
    ({"a": 1}, {"$ref": "https://example.com/other.json"}),
    ("x", {"$ref": "#/$defs/a/b", "$defs": {"a/b": {"type": "string"}, "a": {"b": {"type": "integer"}}}}),  # a pointer
])
def test_what_it_cannot_tell_goes_to_jsonschema(value: Any, node: dict[str, Any]) -> None:
    assert conforms(value, node) is False  # never a guess that it conforms
