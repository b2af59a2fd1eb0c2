"""Safe YAML reading that remembers where every key and value stood, for errors that point at the line.

Parsing goes through PyYAML's SafeLoader composer only; values are built here from the node tree, so
that duplicate keys are refused (PyYAML would silently keep the last one), alias expansion is bounded
(no "billion laughs"), and every value's place is kept under its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import Problem

PathKey = tuple[Any, ...]
Place = tuple[int, int]

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_NODES = 500_000
MAX_DEPTH = 200
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


@dataclass
class Document:
    """One YAML document: its plain data, and the place of each value and key by path."""

    path: str
    data: Any
    values: dict[PathKey, Place] = field(default_factory=dict)
    keys: dict[PathKey, Place] = field(default_factory=dict)

    def place(self, at: PathKey, *, key: bool = False) -> Place:
        """The place of the value (or key) at `at`, else of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        probe = tuple(at)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def problem(self, at: PathKey, message: str, *, key: bool = False) -> Problem:
        line, column = self.place(at, key=key)
        return Problem(self.path, line, column, message)


class LoadError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def read_text(path: Path, shown: str) -> str:
    """The file's text, refusing oversized and non-UTF-8 files with a problem that names the file."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LoadError(Problem(shown, 1, 1, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}"))
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise LoadError(Problem(shown, 1, 1, f"file is not UTF-8 text ({e.reason} at byte {e.start})")) from e
    except OSError as e:
        raise LoadError(Problem(shown, 1, 1, f"cannot read file: {e.strerror or e}")) from e


def load_file(path: Path, shown: str | None = None) -> tuple[list[Document], list[Problem]]:
    """Every document in the file, or the problems that stopped it from being read."""
    shown = shown or str(path)
    try:
        return load_text(read_text(path, shown), shown), []
    except LoadError as e:
        return [], [e.problem]


def load_text(text: str, shown: str) -> list[Document]:
    """Parse `text` (named `shown` in problems); raises LoadError on the first syntax problem."""
    documents: list[Document] = []
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as e:
        raise LoadError(_reader_problem(e, text, shown)) from e
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            document = Document(shown, None)
            budget = [MAX_NODES]
            document.data = _build(loader, node, (), document, budget, 0)
            documents.append(document)
    except yaml.reader.ReaderError as e:
        raise LoadError(_reader_problem(e, text, shown)) from e
    except yaml.MarkedYAMLError as e:
        raise LoadError(_syntax_problem(e, shown)) from e
    except yaml.YAMLError as e:
        raise LoadError(Problem(shown, 1, 1, f"YAML error: {e}")) from e
    except RecursionError as e:
        raise LoadError(Problem(shown, 1, 1, "document is nested too deeply")) from e
    finally:
        loader.dispose()
    return documents


def _reader_problem(error: yaml.reader.ReaderError, text: str, shown: str) -> Problem:
    before = text[: max(0, error.position)]
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    character = error.character if isinstance(error.character, int) else ord(str(error.character)[:1] or "?")
    return Problem(shown, line, column, f"YAML: the character U+{character:04X} is not allowed in YAML text")


def _syntax_problem(error: yaml.MarkedYAMLError, shown: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = error.problem or "invalid YAML"
    if "\t" in problem or "'\\t'" in problem:
        problem = "a tab character is not allowed here; indent with spaces"
    elif error.context:
        problem = f"{error.context}, {problem}"
        started = error.context_mark
        if started is not None and mark is not None and started.line != mark.line:
            problem += f" (it started on line {started.line + 1}, column {started.column + 1})"
    return Problem(shown, line, column, f"YAML syntax: {problem}")


def _place(node: yaml.Node) -> Place:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(loader: yaml.SafeLoader, node: yaml.Node, at: PathKey, doc: Document, budget: list[int],
           depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        line, column = _place(node)
        raise LoadError(Problem(doc.path, line, column,
                                 f"document expands to more than {MAX_NODES:,} nodes (aliases?); refused"))
    if depth > MAX_DEPTH:
        line, column = _place(node)
        raise LoadError(Problem(doc.path, line, column, f"document is nested more than {MAX_DEPTH} levels deep"))
    doc.values.setdefault(at, _place(node))
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
        line, column = _place(node)
        raise LoadError(Problem(doc.path, line, column, f"YAML tag {node.tag!r} is not allowed"))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, column = _place(key_node)
                raise LoadError(Problem(doc.path, line, column, "a mapping key must be a plain value"))
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | bool | float) and key is not None:
                line, column = _place(key_node)
                raise LoadError(Problem(doc.path, line, column, "a mapping key must be a plain value"))
            if key in result:
                line, column = _place(key_node)
                first = doc.keys.get((*at, key), (0, 0))[0]
                raise LoadError(Problem(doc.path, line, column,
                                         f"duplicate key {key!r} (first defined on line {first})"))
            doc.keys[(*at, key)] = _place(key_node)
            result[key] = _build(loader, value_node, (*at, key), doc, budget, depth + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*at, i), doc, budget, depth + 1) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as e:
        line, column = _place(node)
        raise LoadError(Problem(doc.path, line, column, f"YAML: {e.problem}")) from e
