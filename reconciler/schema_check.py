"""JSON Schema validation of a located YAML document, as problems that name file, line and column."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from reconciler.errors import Problem
from reconciler.yamlfile import Document, PathKey


def schema_problems(document: Document, validator: Draft202012Validator,
                    explained: Collection[PathKey] = ()) -> list[Problem]:
    """Every way `document` breaks the schema, one problem each, at the offending key or value.

    `explained` holds paths whose problems the caller has already reported in its own, better words:
    schema errors at or below them are left out rather than said twice.
    """
    problems: list[Problem] = []
    for error in validator.iter_errors(document.data):
        problems.extend(_explain(document, error, explained))
    return sorted(set(problems))


def near_miss(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'X'?' for the closest choice, or '' when nothing is close."""
    options = list(choices)
    folded = {c.casefold(): c for c in options}
    found = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return f"; did you mean {folded[found[0]]!r}?" if found else ""


def _covered(at: PathKey, explained: Collection[PathKey]) -> bool:
    return any(at[:len(path)] == path for path in explained)


def _explain(document: Document, error: ValidationError, explained: Collection[PathKey] = ()) -> list[Problem]:
    at: PathKey = tuple(error.absolute_path)
    if _covered(at, explained):
        return []
    keyword = error.validator
    instance: Any = error.instance
    schema: Any = error.schema
    rule: Any = error.validator_value
    where = _describe(at)
    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        extra = [k for k in instance if k not in allowed]
        problems = []
        for key in extra:
            hint = near_miss(str(key), allowed) or f" (allowed: {', '.join(allowed)})"
            problems.append(document.problem((*at, key), f"unknown key {key!r}{where}{hint}", key=True))
        return problems
    if keyword == "required":
        missing = [k for k in rule if isinstance(instance, dict) and k not in instance]
        return [document.problem(at, f"missing required key {key!r}{where}") for key in missing]
    if keyword == "type":
        wanted = rule
        names = " or ".join(_KIND.get(str(w), str(w)) for w in (wanted if isinstance(wanted, list) else [wanted]))
        return [document.problem(at, f"{_subject(at)} must be {names}, not {_type_name(instance)}")]
    if keyword in ("oneOf", "anyOf") and all(isinstance(b, dict) and set(b) == {"required"} for b in rule):
        choices = [name for branch in rule for name in branch["required"]]
        present = [name for name in choices if isinstance(instance, dict) and name in instance]
        if not present:
            return [document.problem(at, f"{_subject(at)} needs one of {', '.join(choices)}")]
        return [document.problem((*at, present[1]), f"{_subject(at)} has both {present[0]} and {present[1]}; "
                                                    "name it one way only", key=True)]
    if keyword in ("oneOf", "anyOf"):
        branches: list[Any] = rule
        fitting = [i for i, branch in enumerate(branches) if _fits(instance, branch)]
        context = [e for e in error.context or [] if e.schema_path and e.schema_path[0] in fitting]
        constants = [b["const"] for b in branches if "const" in b]
        only_constants = all("const" in branches[i] for i in fitting)
        if len(fitting) == 1 and context and not only_constants:
            unexplained = [e for e in context if not _covered(tuple(e.absolute_path), explained)]
            if not unexplained:
                return []
            deepest = max(len(e.absolute_path) for e in unexplained)
            return [p for e in unexplained if len(e.absolute_path) == deepest for p in _explain(document, e, explained)]
        kinds = [_KIND.get(str(b["type"]), str(b["type"])) for b in branches if "type" in b]
        kinds += [repr(c) for c in constants]
        # A word close to one of the allowed words ('al' for 'all') is a typo, not a wrong shape.
        hint = near_miss(instance, [c for c in constants if isinstance(c, str)]) if isinstance(instance, str) else ""
        return [document.problem(at, f"{_subject(at)} must be {' or '.join(kinds)}, not "
                                     f"{_describe_value(instance)}{hint}")]
    if keyword in ("enum", "const"):
        options = rule if keyword == "enum" else [rule]
        hint = near_miss(str(instance), [str(o) for o in options])
        return [document.problem(at, f"{_subject(at)} must be one of {', '.join(map(repr, options))}, "
                                     f"not {_describe_value(instance)}{hint}")]
    if keyword == "minLength":
        return [document.problem(at, f"{_subject(at)} must not be empty")]
    if keyword == "minItems":
        return [document.problem(at, f"{_subject(at)} must have at least {rule} item(s)")]
    if keyword == "pattern":
        return [document.problem(at, f"{_subject(at)} {instance!r} does not match the pattern {rule}")]
    if keyword == "minimum":
        return [document.problem(at, f"{_subject(at)} must be at least {rule}")]
    if keyword == "minProperties":
        return [document.problem(at, f"{_subject(at)} must not be empty")]
    if keyword == "maxProperties":
        return [document.problem(at, f"{_subject(at)} must have exactly one key, not {len(instance)}")]
    return [document.problem(at, f"{_subject(at)}: {error.message}")]


def _fits(instance: Any, branch: Any) -> bool:
    """Whether a oneOf branch is the one this value was meant for, judged by its JSON type alone."""
    if "type" in branch:
        return _matches_type(instance, branch["type"])
    if "const" in branch:
        return type(instance) is type(branch["const"])
    return True


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_JSON_TYPES = {"string": str, "object": dict, "array": list, "boolean": bool, "integer": int, "number": int | float,
               "null": type(None)}


def _matches_type(value: Any, wanted: Any) -> bool:
    names = wanted if isinstance(wanted, list) else [wanted]
    for name in names:
        kind = _JSON_TYPES.get(name)
        if kind is None:
            continue
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, kind):
            return True
    return False


_KIND = {"string": "a string", "object": "a mapping", "array": "a list", "boolean": "true or false",
         "integer": "a whole number", "number": "a number", "null": "null"}


def _describe(at: PathKey) -> str:
    return f" in {dotted(at)}" if at else ""


def _subject(at: PathKey) -> str:
    return dotted(at) if at else "the document"


def dotted(at: PathKey) -> str:
    """A path as people write it: members[0].completed."""
    text = ""
    for part in at:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe_value(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return repr(value) if not isinstance(value, bool) else str(value).lower()
    return _type_name(value)
