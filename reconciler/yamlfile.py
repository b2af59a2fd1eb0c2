"""Safe YAML reading that remembers where every key and value stood, for errors that point at the line.

Parsing goes through PyYAML's safe composer only (libyaml's, where PyYAML was built with it: it keeps
the marks and is several times faster on a large member list; else the pure-Python one); values are
built here from the node tree, so that duplicate keys are refused (PyYAML would silently keep the last
one), what aliases expand to is bounded (no "billion laughs", while a large honest file is not), and
every value's place is kept under its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import Problem

PathKey = tuple[Any, ...]
Place = tuple[int, int]

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ALIASED_NODES = 500_000  # nodes reached again through aliases; plain nodes are not counted
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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
    def __init__(self, problem: Problem, *, syntax: bool = False) -> None:
        super().__init__(problem.message)
        self.problem = problem
        self.syntax = syntax


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
    try:
        return _load_text(text, shown, SAFE_LOADER)
    except LoadError as e:
        if SAFE_LOADER is yaml.SafeLoader or not e.syntax:
            raise
    # libyaml's syntax messages are terser than the pure-Python parser's: a file that does not parse is
    # read again by the latter, for the message a person can act on.
    return _load_text(text, shown, yaml.SafeLoader)


def _load_text(text: str, shown: str, loader_class: type[yaml.SafeLoader]) -> list[Document]:
    documents: list[Document] = []
    try:
        loader = loader_class(text)
    except yaml.reader.ReaderError as e:
        raise LoadError(_reader_problem(e, text, shown), syntax=True) from e
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            document = Document(shown, None)
            document.data = _Builder(loader, document).build(node, (), 0, aliased=False)
            documents.append(document)
    except yaml.reader.ReaderError as e:
        raise LoadError(_reader_problem(e, text, shown), syntax=True) from e
    except yaml.MarkedYAMLError as e:
        raise LoadError(_syntax_problem(e, shown), syntax=True) from e
    except yaml.YAMLError as e:
        raise LoadError(Problem(shown, 1, 1, f"YAML error: {e}"), syntax=True) from e
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


class _Builder:
    """Values from one document's node tree, with the place of each; a node met a second time is an
    alias, and everything built under it counts against MAX_ALIASED_NODES."""

    def __init__(self, loader: yaml.SafeLoader, doc: Document) -> None:
        self.loader = loader
        self.doc = doc
        self.seen: set[int] = set()
        self.budget = MAX_ALIASED_NODES

    def fail(self, node: yaml.Node, message: str) -> LoadError:
        line, column = _place(node)
        return LoadError(Problem(self.doc.path, line, column, message))

    def build(self, node: yaml.Node, at: PathKey, depth: int, *, aliased: bool) -> Any:
        doc = self.doc
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in self.seen:
                aliased = True
            self.seen.add(id(node))
        if aliased:
            self.budget -= 1
            if self.budget < 0:
                raise self.fail(node, f"aliases expand to more than {MAX_ALIASED_NODES:,} nodes; refused")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"document is nested more than {MAX_DEPTH} levels deep")
        doc.values.setdefault(at, _place(node))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
            raise self.fail(node, f"YAML tag {node.tag!r} is not allowed")
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, "a mapping key must be a plain value")
                key = self.scalar(key_node)
                if not isinstance(key, str | int | bool | float) and key is not None:
                    raise self.fail(key_node, "a mapping key must be a plain value")
                if key in result:
                    first = doc.keys.get((*at, key), (0, 0))[0]
                    raise self.fail(key_node, f"duplicate key {key!r} (first defined on line {first})")
                doc.keys[(*at, key)] = _place(key_node)
                result[key] = self.build(value_node, (*at, key), depth + 1, aliased=aliased)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*at, i), depth + 1, aliased=aliased) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        if node.tag == "tag:yaml.org,2002:str":  # the common case, without the constructor's dispatch
            return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as e:
            raise self.fail(node, f"YAML: {e.problem}") from e
