"""JSON Schema validation of a located YAML document, as problems that name file, line and column.

A document is validated once, by `conforms`: an exact reading of the few keywords our schemas use. Only a
document it does not find valid is handed to jsonschema, the authority, which says what is wrong (importing
jsonschema and building its validator cost a command about 40 ms)."""

from __future__ import annotations

import numbers
import re
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from reconciler.errors import Problem
from reconciler.schemas import schema, validator
from reconciler.yamlfile import Document, PathKey, unpack_place

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError


def schema_problems(document: Document, name: str, explained: Collection[PathKey] = ()) -> list[Problem]:
    """Every way `document` breaks the schema `name`, one problem each, at the offending key or value.

    `explained` holds paths whose problems the caller has already reported in its own, better words:
    schema errors at or below them are left out rather than said twice. NaN and infinity are refused first (JSON
    has neither, and every bound passes NaN: `max_delete_fraction: .nan` would switch the budget off).
    """
    problems = [Problem(document.path, *unpack_place(place), f"{text!r} is not a value these files take: NaN and "
                        "infinity are not numbers here (every bound passes NaN); write a number")
                for place, text in document.not_numbers]
    if not problems and conforms(document.data, schema(name)):
        return []
    said = {(p.line, p.column) for p in problems}  # a schema error there too says less
    for error in validator(name).iter_errors(document.data):
        problems.extend(p for p in _explain(document, error, explained) if (p.line, p.column) not in said)
    return sorted(set(problems))


class _Undecided(Exception):
    """Something `conforms` does not read (a keyword, a reference, a value that is not JSON's): jsonschema decides."""


def conforms(instance: Any, root: dict[str, Any]) -> bool:
    """True when `instance` certainly conforms to the draft 2020-12 schema `root`, as jsonschema's
    Draft202012Validator (without a format checker) decides; False when it does not, or when this reading cannot
    tell (a keyword or value outside the few it reads exactly). A test holds it to jsonschema on generated
    documents of every schema we ship."""
    try:
        return _valid(instance, root, root)
    except (_Undecided, RecursionError):
        return False


_ANNOTATIONS = frozenset({"$schema", "$comment", "$defs", "title", "description", "default", "examples", "format",
                          "deprecated", "readOnly", "writeOnly"})
_JSON_SCALARS = (str, int, float, bool, type(None))
_JSON_VALUES = (*_JSON_SCALARS, dict, list)


def _is(instance: Any, kind: str) -> bool:
    """jsonschema's type checks (draft 2020-12): a bool is not a number, 1.0 is an integer."""
    if kind == "object":
        return isinstance(instance, dict)
    if kind == "array":
        return isinstance(instance, list)
    if kind == "string":
        return isinstance(instance, str)
    if kind == "boolean":
        return isinstance(instance, bool)
    if kind == "null":
        return instance is None
    if isinstance(instance, bool):
        return False
    if kind == "integer":
        return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())
    if kind == "number":
        return isinstance(instance, numbers.Number)
    raise _Undecided(kind)


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's equality for `const` and `enum`, for scalars: 1 == 1.0, but True is not 1."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if not isinstance(one, _JSON_SCALARS) or not isinstance(two, _JSON_SCALARS):
        raise _Undecided("a list or an object compared")
    if isinstance(one, bool) or isinstance(two, bool):
        return type(one) is type(two) and one == two
    return bool(one == two)


def _valid(instance: Any, node: Any, root: dict[str, Any]) -> bool:
    if node is True or node is False:
        return node
    if not isinstance(node, dict):
        raise _Undecided("a schema that is not an object")
    if not isinstance(instance, _JSON_VALUES):
        raise _Undecided(type(instance).__name__)
    for keyword, rule in node.items():
        if keyword in _ANNOTATIONS:
            continue
        if not _keyword(keyword, rule, instance, node, root):
            return False
    return True


def _keyword(keyword: str, rule: Any, instance: Any, node: dict[str, Any], root: dict[str, Any]) -> bool:
    """Whether `instance` passes one keyword of `node` (one that does not apply to its type passes)."""
    if keyword == "type":
        return any(_is(instance, kind) for kind in (rule if isinstance(rule, list) else [rule]))
    if keyword == "$ref":  # only `#/$defs/NAME` of a plain name (a pointer with more steps or escapes: jsonschema)
        name = rule.removeprefix("#/$defs/") if isinstance(rule, str) and rule.startswith("#/$defs/") else ""
        definitions = root.get("$defs")
        if not name or any(c in name for c in "/~%") or not isinstance(definitions, dict) or name not in definitions:
            raise _Undecided(str(rule))
        return _valid(instance, definitions[name], root)
    if keyword == "oneOf":
        return sum(_valid(instance, branch, root) for branch in rule) == 1
    if keyword == "const":
        return _equal(instance, rule)
    if keyword == "enum":
        return any(_equal(instance, each) for each in rule)
    if isinstance(instance, dict):
        if keyword == "properties":
            return all(_valid(instance[name], sub, root) for name, sub in rule.items() if name in instance)
        if keyword == "additionalProperties":
            if "patternProperties" in node:
                raise _Undecided("patternProperties")
            known = node.get("properties", {})
            return all(_valid(value, rule, root) for key, value in instance.items() if key not in known)
        if keyword == "required":
            return all(name in instance for name in rule)
        if keyword == "minProperties":
            return not len(instance) < rule
        if keyword == "maxProperties":
            return not len(instance) > rule
    elif isinstance(instance, list):
        if keyword == "items":
            if "prefixItems" in node:
                raise _Undecided("prefixItems")
            return all(_valid(item, rule, root) for item in instance)
        if keyword == "minItems":
            return not len(instance) < rule
    elif isinstance(instance, str):
        if keyword == "minLength":
            return not len(instance) < rule
        if keyword == "pattern":
            return re.search(rule, instance) is not None
    elif _is(instance, "number"):
        if keyword == "minimum":  # each as jsonschema words it (NaN passes them all)
            return not instance < rule
        if keyword == "maximum":
            return not instance > rule
        if keyword == "exclusiveMinimum":
            return not instance <= rule
    if keyword in _APPLIES_TO_OTHER_TYPES:
        return True
    raise _Undecided(keyword)


# Keywords read above for one type of value, which every value of another type passes.
_APPLIES_TO_OTHER_TYPES = frozenset({"properties", "additionalProperties", "required", "minProperties",
                                     "maxProperties", "items", "minItems", "minLength", "pattern", "minimum",
                                     "maximum", "exclusiveMinimum"})


def near_miss(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'X'?' for the closest choice, or '' when nothing is close."""
    found = closest(word, choices)
    return f"; did you mean {found!r}?" if found is not None else ""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `word` (case aside), or None when nothing is close."""
    folded = {c.casefold(): c for c in choices}
    import difflib  # (imported only for a word that is not known)

    found = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return folded[found[0]] if found else None


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
            # Each problem where it is deepest: not a value's again where a part of it says more (two bad entries of
            # a list are two problems, each said).
            paths = [tuple(e.absolute_path) for e in unexplained]
            kept = [e for e, path in zip(unexplained, paths, strict=True)
                    if not any(len(other) > len(path) and other[:len(path)] == path for other in paths)]
            return [p for e in kept for p in _explain(document, e, explained)]
        kinds = [_KIND.get(str(b["type"]), str(b["type"])) for b in branches if "type" in b]
        kinds += [repr(c) for c in constants]
        # A word close to one of the allowed words ('al' for 'all') is a typo, not a wrong shape.
        hint = near_miss(instance, [c for c in constants if isinstance(c, str)]) if isinstance(instance, str) else ""
        return [document.problem(at, f"{_subject(at)} must be {' or '.join(kinds)}, not "
                                     f"{_describe_value(instance)}{hint}")]
    if keyword in ("enum", "const"):
        options = rule if keyword == "enum" else [rule]
        hint = near_miss(instance, [str(o) for o in options]) if isinstance(instance, str) else ""
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
    """A value as the YAML that wrote it reads: `null`, `true`, `'text'`, `3` (not Python's `None`, `True`)."""
    if value is None:
        return "null"
    if isinstance(value, str | int | float | bool):
        return repr(value) if not isinstance(value, bool) else str(value).lower()
    return _type_name(value)
