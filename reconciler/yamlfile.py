"""Safe YAML reading that remembers where every key and value stood, for errors that point at the line.

Values are built straight from the parser's events (libyaml's parser where PyYAML was built with it, else
the pure-Python one); no node tree is composed. Duplicate keys are refused (PyYAML would silently keep the
last one), what aliases expand to is bounded (no "billion laughs", while a large honest file is not), and
the place of every value and key is kept compactly: per document, one array of ints holding, container by
container, each entry's key place, value place and the number of the container it holds (if any), found
again by walking the data along a path.
"""

from __future__ import annotations

import errno
import math
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import Mark
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from reconciler.errors import Problem

PathKey = tuple[Any, ...]
Place = tuple[int, int]

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ALIASED_NODES = 500_000  # nodes reached again through aliases; plain nodes are not counted
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 200
FRIENDLY_SYNTAX_CHARS = 2_000_000  # a file that does not parse, up to this size, is read again for a clearer message
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_SHIFT = 32  # a place is packed into one int: line << 32 | column
_COLUMN = (1 << _SHIFT) - 1
_SMALL_MAP = 4  # a key is found in a larger mapping through an index built on first use
_SHORT, _REMEMBERED = 40, 4096


def _pack(mark: Any) -> int:
    return int(mark.line + 1) << _SHIFT | int(mark.column + 1)


def _unpack(packed: int) -> Place:
    return packed >> _SHIFT, packed & _COLUMN


unpack_place = _unpack  # a packed place (`Document.not_numbers`) as (line, column)


def _mark(packed: int) -> Mark:
    line, column = _unpack(packed)
    return Mark("<yaml>", 0, line - 1, column - 1, None, None)  # type: ignore[arg-type]


@dataclass
class Places:
    """Where one document's values and mapping keys stood.

    Container number c (in the order their ends were read) has its entries at cells[firsts[c]:], three
    ints per mapping entry (key place, value place, link) and two per sequence item (value place, link),
    in the order of the data; a link is the number of the container the entry holds, or -1. An alias holds
    the very container it names, so what it expands to costs no cell.
    """

    root: int = (1 << _SHIFT) | 1
    link: int = -1
    cells: array[int] = field(default_factory=lambda: array("q"))
    firsts: array[int] = field(default_factory=lambda: array("q"))
    indexes: dict[int, dict[Any, int]] = field(default_factory=dict)

    def locate(self, data: Any, at: PathKey, *, key: bool) -> Place:
        """The place of the value (or key) at `at` in `data`, else of its nearest ancestor that has one."""
        _, value_place, key_place, _ = self.walk(data, self.root, 0, self.link, at)
        return _unpack(key_place if key and key_place else value_place)

    def walk(self, node: Any, value_place: int, key_place: int, link: int, at: PathKey) -> tuple[Any, int, int, int]:
        """From a value (its data, packed places and container), along `at` as far as the data goes: the value
        reached, its places and container. Where the data ends the container is -1, so that no walk goes on
        from there."""
        cells = self.cells
        for part in at:
            if link < 0:
                break
            base = self.firsts[link]
            if type(node) is dict or isinstance(node, dict):
                index = -1
                if len(node) <= _SMALL_MAP:
                    for at_index, name in enumerate(node):
                        if name == part:
                            index = at_index
                            break
                else:
                    index = self._index(link, node, part)
                if index < 0:
                    link = -1
                    break
                base += 3 * index
                key_place, value_place, link = cells[base], cells[base + 1], cells[base + 2]
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                base += 2 * part
                key_place, value_place, link = 0, cells[base], cells[base + 1]
                node = node[part]
            else:
                link = -1
                break
        return node, value_place, key_place, link

    def _index(self, link: int, node: dict[Any, Any], part: Any) -> int:
        positions = self.indexes.get(link)
        if positions is None:
            positions = self.indexes[link] = {name: i for i, name in enumerate(node)}
        try:
            return positions.get(part, -1)
        except TypeError:  # an unhashable part names no key
            return -1


@dataclass
class Document:
    """One YAML document: its plain data, and the place of each value and key by path."""

    path: str
    data: Any
    places: Places = field(default_factory=Places)
    # The values NaN or infinity (`.nan`, `.inf`): places and texts. JSON has neither, and a limit compared with
    # NaN passes every bound, so the schema check refuses them (other tools' YAML may hold them).
    not_numbers: tuple[tuple[int, str], ...] = ()

    def place(self, at: PathKey, *, key: bool = False) -> Place:
        """The place of the value (or key) at `at`, else of its nearest ancestor that has one."""
        return self.places.locate(self.data, tuple(at), key=key)

    def problem(self, at: PathKey, message: str, *, key: bool = False) -> Problem:
        line, column = self.place(at, key=key)
        return Problem(self.path, line, column, message)

    def cursor(self, at: PathKey = ()) -> Cursor:
        """The value at `at`, to find the places of what it holds from there rather than from the root."""
        return Cursor(self.path, self.places, self.data, self.places.root, 0, self.places.link).child(at)

    def with_data(self, data: Any) -> Document:
        """The same document seeing other data of its shape: each mapping with the same keys in the same order,
        a list possibly cut short (the places are found by walking the data along a path)."""
        return replace(self, data=data)


class Cursor:
    """A value of a document, whose places (and those of what it holds) are found by walking from it: a loop
    over a long list steps to each entry once, instead of walking the whole path from the root for every
    place it asks for. It finds exactly what the document would: a path the data does not hold takes the
    place of its nearest ancestor, also when that ancestor is above the cursor."""

    __slots__ = ("key_place", "link", "node", "path", "places", "value_place")

    def __init__(self, path: str, places: Places, node: Any, value_place: int, key_place: int, link: int) -> None:
        self.path, self.places, self.node = path, places, node
        self.value_place, self.key_place, self.link = value_place, key_place, link

    def child(self, at: PathKey) -> Cursor:
        """The value at `at` below this one."""
        if not at:
            return self
        places = self.places
        node, value_place, key_place, link = places.walk(self.node, self.value_place, self.key_place, self.link, at)
        return Cursor(self.path, places, node, value_place, key_place, link)

    def items(self) -> Iterator[Cursor]:
        """A cursor at each item of the list here, in order, as `child((i,))` finds it but without a walk
        (none if there is no list here)."""
        node, link = self.node, self.link
        if link < 0 or not isinstance(node, list):
            return
        path, places, cells = self.path, self.places, self.places.cells
        at = places.firsts[link]
        for item in node:
            yield Cursor(path, places, item, cells[at], 0, cells[at + 1])
            at += 2

    def item_places(self) -> array[int]:
        """The place of each item of the list here, as `place((i,))` finds it, packed `line << 32 | column`: read
        off the cells at once (a member's list of lessons), not walked to one by one. Empty where no list is."""
        node, link = self.node, self.link
        if not isinstance(node, list):
            return array("q")
        if link < 0:  # its items have no places: each takes the list's own
            return array("q", [self.value_place]) * len(node)
        at = self.places.firsts[link]
        return self.places.cells[at:at + 2 * len(node):2]

    def place(self, at: PathKey = (), *, key: bool = False) -> Place:
        """The place of the value (or key) at `at` below this one, as `Document.place` finds it."""
        if at:
            _, value_place, key_place, _ = self.places.walk(self.node, self.value_place, self.key_place, self.link, at)
        else:
            value_place, key_place = self.value_place, self.key_place
        packed = key_place if key and key_place else value_place
        return packed >> _SHIFT, packed & _COLUMN

    def problem(self, at: PathKey, message: str, *, key: bool = False) -> Problem:
        line, column = self.place(at, key=key)
        return Problem(self.path, line, column, message)


class LoadError(Exception):
    def __init__(self, problem: Problem, *, syntax: bool = False) -> None:
        super().__init__(problem.message)
        self.problem = problem
        self.syntax = syntax


def broken_link(path: Path) -> str | None:
    """What is wrong with a symbolic link that leads to no file (None for anything else)."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link that loops"
    return f"a symbolic link to {os.readlink(path)}, which does not exist"


def read_text(path: Path, shown: str) -> str:
    """The file's text, refusing oversized and non-UTF-8 files with a problem that names the file."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LoadError(Problem(shown, 1, 1, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}"))
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:  # said where the byte is: what comes before it is UTF-8
        before = e.object[:e.start].decode("utf-8", errors="replace")
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        raise LoadError(Problem(shown, line, column, f"file is not UTF-8 text ({e.reason} at byte {e.start})")
                        ) from e
    except OSError as e:
        raise LoadError(Problem(shown, 1, 1, f"cannot read file: {broken_link(path) or e.strerror or e}")) from e


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
        # libyaml's message stands for a large file (the pure-Python parser reads about 0.7 MB a second)
        if SAFE_LOADER is yaml.SafeLoader or not e.syntax or len(text) > FRIENDLY_SYNTAX_CHARS:
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
        builder = _Builder(loader.get_event, shown)
        while True:
            event = loader.get_event()  # type: ignore[no-untyped-call]
            if isinstance(event, StreamEndEvent):
                break
            if isinstance(event, DocumentStartEvent):
                documents.append(builder.document())
    except yaml.reader.ReaderError as e:
        raise LoadError(_reader_problem(e, text, shown), syntax=True) from e
    except yaml.MarkedYAMLError as e:
        if _too_deep(e):  # libyaml's limit (1,000 levels); ours, said where it is passed, is lower
            mark = e.problem_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            raise LoadError(Problem(shown, line, column, f"document is nested more than {MAX_DEPTH} levels deep")
                            ) from e
        raise LoadError(_syntax_problem(e, shown), syntax=True) from e
    except yaml.YAMLError as e:
        raise LoadError(Problem(shown, 1, 1, f"YAML error: {e}"), syntax=True) from e
    except RecursionError as e:
        raise LoadError(Problem(shown, 1, 1, "document is nested too deeply")) from e
    finally:
        loader.dispose()
    return documents


def _too_deep(error: yaml.MarkedYAMLError) -> bool:
    """libyaml's refusal of a document nested past its own limit (not a syntax error: the pure-Python parser
    would take minutes to reach the same place in a file of brackets)."""
    return "nesting depth" in str(error.problem or "")


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


class _Refused(Exception):
    """A value the document may not hold; said once the rest of the document proved to parse (a syntax
    error anywhere in the document is said first, as when the whole document was composed before)."""

    def __init__(self, place: int, message: str, error: yaml.MarkedYAMLError | None = None) -> None:
        super().__init__(message)
        self.place = place
        self.message = message
        self.error = error  # said as a syntax error is


class _Anchored:
    """What an anchor names: its value, place, container (-1 for a scalar) and the start of its text."""

    __slots__ = ("link", "mark", "place", "value")

    def __init__(self, value: Any, place: int, link: int, mark: Any) -> None:
        self.value, self.place, self.link, self.mark = value, place, link, mark


class _Frame:
    """A mapping or sequence being read: its data, its entries' cells, and what it expands to so far."""

    __slots__ = (
        "anchor",
        "cells",
        "data",
        "depth",
        "height",
        "key",
        "key_place",
        "later",
        "mapping",
        "mark",
        "merges",
        "number",
        "place",
        "size",
    )

    def __init__(self, mapping: bool, depth: int, place: int, mark: Any, anchor: str | None, number: int) -> None:
        self.mapping = mapping
        self.data: Any = {} if mapping else []
        self.cells: list[int] = []
        self.depth, self.place, self.mark, self.anchor, self.number = depth, place, mark, anchor, number
        self.size, self.height = 1, 0  # nodes and levels it expands to (what an alias to it costs)
        self.key: Any = _NO_KEY
        self.key_place = 0
        self.merges: list[tuple[Any, int, int, bool]] = []  # value, place, link, through an alias
        self.later: set[Any] = set()  # keys whose alias is spent after what is merged, as PyYAML reads them


_NO_KEY = object()
_MERGE = object()
_READING = -2  # the link of an anchored container not yet read to its end


def _shown_text(text: str) -> str:
    """A scalar's text as a message quotes it: whole when short, else its start and length."""
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text):,} characters)"


class _Builder:
    """Values from the parser's events, one document at a time, with the place of each."""

    def __init__(self, next_event: Any, shown: str) -> None:
        self.next_event = next_event
        self.shown = shown
        self.constructor = SafeConstructor()
        self.resolver = Resolver()
        self.implicit = Resolver.yaml_implicit_resolvers
        self.wildcard = None in self.implicit
        self.key_texts: dict[str, str] = {}  # one str object for each distinct key text
        self.texts: dict[str, str] = {}  # and for the first few thousand short values (a lesson named often)
        self.tags: dict[str, str] = {}  # what the first few thousand plain texts resolved to

    # --- a document ------------------------------------------------------------------------------

    def document(self) -> Document:
        self.anchors: dict[str, _Anchored] = {}
        self.places = Places(cells=array("q"), firsts=array("q"))
        self.sizes: array[int] = array("q")  # by container: the nodes and levels it expands to
        self.heights: array[int] = array("q")
        self.merged_ids: dict[int, list[Any]] = {}  # the keys' identities of mappings that merged others
        self.merged_aliases: dict[int, set[int]] = {}  # in a list of mappings to merge, which are aliases
        self.budget = MAX_ALIASED_NODES
        self.not_numbers: list[tuple[int, str]] = []
        self.stack: list[_Frame] = []
        self.result: Any = None
        try:
            self.read_node()
        except _Refused as refused:
            try:
                self.drain()
            except yaml.MarkedYAMLError as e:  # libyaml's own depth limit, past ours: what was refused is said
                if not _too_deep(e):
                    raise
            if refused.error is not None:
                raise refused.error from None
            line, column = _unpack(refused.place)
            raise LoadError(Problem(self.shown, line, column, refused.message)) from None
        self.next_event()  # the document's end
        return Document(self.shown, self.result, self.places, tuple(self.not_numbers))

    def drain(self) -> None:
        """The rest of a refused document, read for the syntax errors that take precedence."""
        while True:
            event: Any = self.next_event()
            if isinstance(event, DocumentEndEvent):
                return
            if event.__class__ is AliasEvent:
                if event.anchor not in self.anchors:
                    mark: Any = event.start_mark
                    raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", mark)
            elif isinstance(event, ScalarEvent | MappingStartEvent | SequenceStartEvent) and event.anchor is not None:
                self.check_anchor(event)
                self.anchors[event.anchor] = _Anchored(None, 0, -1, event.start_mark)

    def check_anchor(self, event: Any) -> None:
        if event.anchor in self.anchors:
            raise ComposerError(f"found duplicate anchor {event.anchor!r}; first occurrence",
                                self.anchors[event.anchor].mark, "second occurrence", event.start_mark)

    def read_node(self) -> None:
        """Every event of one node (the document's root), building as it goes."""
        next_event, stack, scalar, open_, close = self.next_event, self.stack, self.scalar, self.open, self.close
        while True:
            event = next_event()
            kind = event.__class__
            if kind is ScalarEvent:
                scalar(event)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                open_(event, kind is MappingStartEvent)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                close(stack.pop())
            elif kind is AliasEvent:
                self.alias(event)
            if not stack:
                return

    # --- the events --------------------------------------------------------------------------------

    def scalar(self, event: Any) -> None:
        mark = event.start_mark
        place = (mark.line + 1) << _SHIFT | (mark.column + 1)  # _pack, inline: a file has a scalar a line or more
        if event.anchor is not None:
            self.check_anchor(event)
            self.anchors[event.anchor] = _Anchored(None, place, -1, mark)  # known, even if refused
        tag, value = event.tag, event.value
        if tag is None or tag == "!":
            implicit = event.implicit
            if implicit[0] and value and not self.wildcard and value[0] not in self.implicit:
                tag = _STR_TAG  # the common case, without trying every implicit resolver
            else:
                tag = self.resolve(value, implicit)
        stack = self.stack
        frame = stack[-1] if stack else None
        if frame is not None and frame.key is _NO_KEY and frame.mapping:
            if tag == _MERGE_TAG:
                key: Any = _MERGE
            elif tag == _STR_TAG or tag == _VALUE_TAG:
                key = self.key_texts.setdefault(value, value)
            else:
                key = self.construct(tag, event, place)
            if event.anchor is not None:
                self.anchors[event.anchor] = _Anchored(key, place, -1, mark)
            if type(key) is str and key not in frame.data:
                frame.key, frame.key_place = key, place  # set_key, inline for the keys that are most of a file
            else:
                self.set_key(frame, key, place)
            return
        if frame is not None and frame.depth >= MAX_DEPTH:
            raise _Refused(place, f"document is nested more than {MAX_DEPTH} levels deep")
        if tag == _STR_TAG:
            if len(value) <= _SHORT:
                texts = self.texts
                if len(texts) < _REMEMBERED:
                    value = texts.setdefault(value, value)
                else:
                    value = texts.get(value, value)
        else:
            value = self.construct(tag, event, place)
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchored(value, place, -1, mark)
        if frame is None or frame.key is _MERGE:
            self.add(value, place, -1, 1, 0)
            return
        # add(), inline for the values that are most of a file
        if frame.mapping:
            frame.data[frame.key] = value
            frame.cells += (frame.key_place, place, -1)
            frame.key = _NO_KEY
        else:
            frame.data.append(value)
            frame.cells += (place, -1)
        frame.size += 1
        if not frame.height:
            frame.height = 1

    def resolve(self, value: str, implicit: tuple[bool, bool]) -> str:
        if implicit == (True, False):
            tag = self.tags.get(value)
            if tag is None:
                tag = str(self.resolver.resolve(ScalarNode, value, implicit))  # type: ignore[no-untyped-call]
                if len(self.tags) < _REMEMBERED and len(value) <= _SHORT:
                    self.tags[value] = tag
            return tag
        return str(self.resolver.resolve(ScalarNode, value, implicit))  # type: ignore[no-untyped-call]

    def construct(self, tag: str, event: Any, place: int) -> Any:
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        try:
            value = self.constructor.construct_object(node, deep=True)
            if type(value) is float and not math.isfinite(value):
                self.not_numbers.append((place, event.value))
            return value
        except ConstructorError as e:
            raise _Refused(place, f"YAML: {e.problem}") from e
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError) as e:
            # PyYAML's constructors on text their tag or form promises but does not hold (a 30th of February, an
            # `!!int abc`, a number of more than 4,300 digits): its own error, not a YAML one
            kind = tag.rsplit(":", 1)[-1]
            why = f" ({e})" if kind == "timestamp" and isinstance(e, ValueError) else ""  # "month must be in 1..12"
            raise _Refused(place, f"YAML: {_shown_text(event.value)} is not a valid {kind}{why}") from e
        finally:
            self.constructor.constructed_objects.clear()

    def set_key(self, frame: _Frame, key: Any, place: int) -> None:
        if key is not _MERGE:
            if type(key) is not str and not isinstance(key, (str, int, bool, float)) and key is not None:
                raise _Refused(place, "a mapping key must be a plain value")
            if key in frame.data:
                first = frame.cells[3 * list(frame.data).index(key)] >> _SHIFT
                raise _Refused(place, f"duplicate key {key!r} (first defined on line {first})")
        frame.key, frame.key_place = key, place

    def wants_key(self) -> bool:
        return bool(self.stack) and self.stack[-1].key is _NO_KEY and self.stack[-1].mapping

    def open(self, event: Any, mapping: bool) -> None:
        mark = event.start_mark
        place = (mark.line + 1) << _SHIFT | (mark.column + 1)
        if event.anchor is not None:
            self.check_anchor(event)
            self.anchors[event.anchor] = _Anchored(None, place, _READING, mark)
        stack = self.stack
        frame = stack[-1] if stack else None
        if frame is not None and frame.key is _NO_KEY and frame.mapping:
            raise _Refused(place, "a mapping key must be a plain value")
        depth = frame.depth + 1 if frame is not None else 0
        if depth > MAX_DEPTH:
            raise _Refused(place, f"document is nested more than {MAX_DEPTH} levels deep")
        tag = event.tag
        if tag is not None and tag != "!" and tag != (_MAP_TAG if mapping else _SEQ_TAG):
            raise _Refused(place, f"YAML tag {tag!r} is not allowed")
        firsts = self.places.firsts
        number = len(firsts)
        firsts.append(0)
        self.sizes.append(0)
        self.heights.append(0)
        stack.append(_Frame(mapping, depth, place, mark, event.anchor, number))

    def close(self, frame: _Frame) -> None:
        if frame.merges:
            self.flatten(frame)
        number, cells = frame.number, self.places.cells
        self.places.firsts[number] = len(cells)
        cells.fromlist(frame.cells)
        self.sizes[number], self.heights[number] = frame.size, frame.height
        if frame.anchor is not None:
            self.anchors[frame.anchor] = _Anchored(frame.data, frame.place, number, frame.mark)
        stack = self.stack
        if not stack or stack[-1].key is _MERGE:
            self.add(frame.data, frame.place, number, frame.size, frame.height)
            return
        # add(), inline for the containers of a long list
        parent = stack[-1]
        if parent.mapping:
            parent.data[parent.key] = frame.data
            parent.cells += (parent.key_place, frame.place, number)
            parent.key = _NO_KEY
        else:
            parent.data.append(frame.data)
            parent.cells += (frame.place, number)
        parent.size += frame.size
        if frame.height >= parent.height:
            parent.height = frame.height + 1

    def alias(self, event: Any) -> None:
        if event.anchor not in self.anchors:
            raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
        anchored = self.anchors[event.anchor]
        if self.wants_key():
            if anchored.link != -1:
                raise _Refused(anchored.place, "a mapping key must be a plain value")
            self.set_key(self.stack[-1], anchored.value, anchored.place)
            return
        stack = self.stack
        merging = stack and (stack[-1].key is _MERGE or (isinstance(stack[-1].data, list) and len(stack) > 1
                                                         and stack[-2].key is _MERGE))
        if anchored.link == _READING:  # a container that holds itself: it would expand without end
            again = (stack[-1] if stack[-1].key is _MERGE else stack[-2]).place if merging else anchored.place
            raise _Refused(again, f"document is nested more than {MAX_DEPTH} levels deep")
        if merging:
            # What is merged is read when the mapping ends (flatten), entry by entry, not as one node here.
            if stack[-1].key is not _MERGE:
                self.merged_aliases.setdefault(stack[-1].number, set()).add(len(stack[-1].data))
            self.add(anchored.value, anchored.place, anchored.link, 0, 0, aliased=True)
            return
        if stack and stack[-1].merges and anchored.link >= 0:  # spent when the mapping ends, after the merged
            stack[-1].later.add(stack[-1].key)
            self.add(anchored.value, anchored.place, anchored.link, self.sizes[anchored.link],
                     self.heights[anchored.link], aliased=True)
            return
        depth = self.stack[-1].depth + 1 if self.stack else 0
        link = anchored.link
        if anchored.value is _MERGE:  # `<<` named as a value: no value at all
            raise _Refused(anchored.place, f"YAML: could not determine a constructor for the tag {_MERGE_TAG!r}")
        if link < 0:
            if depth > MAX_DEPTH:
                raise _Refused(anchored.place, f"document is nested more than {MAX_DEPTH} levels deep")
            self.add(anchored.value, anchored.place, -1, 1, 0)
            return
        size, height = self.sizes[link], self.heights[link]
        if size > self.budget or depth + height > MAX_DEPTH:
            self.expand(anchored.value, link, anchored.place, depth)  # spends node by node, to the one refused
        else:
            self.budget -= size
        self.add(anchored.value, anchored.place, link, size, height, aliased=True)

    def expand(self, value: Any, link: int, place: int, depth: int) -> None:
        """Walk what an alias expands to, node by node as if it were copied, to the node that breaks a limit."""
        self.budget -= 1
        if self.budget < 0:
            raise _Refused(place, f"aliases expand to more than {MAX_ALIASED_NODES:,} nodes; refused")
        if depth > MAX_DEPTH:
            raise _Refused(place, f"document is nested more than {MAX_DEPTH} levels deep")
        if link < 0:
            return
        cells, base = self.places.cells, self.places.firsts[link]
        step, offset = (3, 1) if isinstance(value, dict) else (2, 0)
        for i, item in enumerate(value.values() if isinstance(value, dict) else value):
            at = base + step * i + offset
            self.expand(item, cells[at + 1], cells[at], depth + 1)

    def add(self, value: Any, place: int, link: int, size: int, height: int, *, aliased: bool = False) -> None:
        """A finished value, into the container being read (or as the document's root)."""
        if not self.stack:
            self.result, self.places.root, self.places.link = value, place, link
            return
        frame = self.stack[-1]
        if isinstance(frame.data, list):
            frame.data.append(value)
            frame.cells += (place, link)
        elif frame.key is _MERGE:
            frame.merges.append((value, place, link, aliased))
            frame.key = _NO_KEY
            return
        else:
            frame.data[frame.key] = value
            frame.cells += (frame.key_place, place, link)
            frame.key = _NO_KEY
        frame.size += size
        if height >= frame.height:
            frame.height = height + 1

    def flatten(self, frame: _Frame) -> None:
        """`<<` merge keys, as PyYAML reads them: the merged entries first (an entry merged twice, once),
        then the mapping's own; a key both merged and written again is a duplicate, as any other."""
        cells = self.places.cells
        merged: list[tuple[Any, Any, int, int, int, Any]] = []  # key, value, key place, value place, link, id
        again: set[Any] = set()  # the identities of entries merged through an alias (read a second time)
        taken: set[Any] = set()
        for value, place, link, through_alias in frame.merges:
            if isinstance(value, dict):
                sources = [(value, link, through_alias)]
            elif isinstance(value, list):
                sources = []
                base = self.places.firsts[link]
                aliases = self.merged_aliases.get(link, set())
                for i, item in enumerate(value):
                    if not isinstance(item, dict):
                        raise _merge_error(frame.mark, ConstructorError(
                            "while constructing a mapping", frame.mark,
                            f"expected a mapping for merging, but found {_kind(item)}", _mark(cells[base + 2 * i])))
                    sources.append((item, cells[base + 2 * i + 1], i in aliases))
            else:
                raise _merge_error(frame.mark, ConstructorError(
                    "while constructing a mapping", frame.mark,
                    f"expected a mapping or list of mappings for merging, but found {_kind(value)}", _mark(place)))
            for source, source_link, aliased in sources:
                base = self.places.firsts[source_link]
                ids = self.merged_ids.get(source_link)
                for i, (key, item) in enumerate(source.items()):
                    identity = ids[i] if ids is not None else _identity(key, source_link, i)
                    if aliased:
                        again.add(identity)
                    if identity not in taken:
                        taken.add(identity)
                        at = base + 3 * i
                        merged.append((key, item, cells[at], cells[at + 1], cells[at + 2], identity))
        entries = merged + [(key, frame.data[key], frame.cells[3 * i], frame.cells[3 * i + 1],
                             frame.cells[3 * i + 2], _identity(key, frame.number, i))
                            for i, key in enumerate(frame.data)]
        own_from = len(merged)
        data: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        out: list[int] = []
        size, height = 1, 0
        for n, (key, value, key_place, value_place, link, identity) in enumerate(entries):
            if key in data:
                raise _Refused(key_place, f"duplicate key {key!r} (first defined on line {lines[key]})")
            lines[key] = key_place >> _SHIFT
            nodes, levels = (self.sizes[link], self.heights[link]) if link >= 0 else (1, 0)
            if link >= 0 and (identity in again if n < own_from else key in frame.later):  # read a second time
                if nodes > self.budget or frame.depth + 1 + levels > MAX_DEPTH:
                    self.expand(value, link, value_place, frame.depth + 1)
                else:
                    self.budget -= nodes
            data[key] = value
            out += (key_place, value_place, link)
            size += nodes
            height = max(height, levels + 1)
        frame.data, frame.cells, frame.size, frame.height = data, out, size, height
        self.merged_ids[frame.number] = [identity for *_, identity in entries]


def _identity(key: Any, link: int, index: int) -> Any:
    """Which merged entries PyYAML takes for one: the same key node (here, the same entry), or keys of one
    character, whose text Python holds once."""
    if isinstance(key, str) and len(key) <= 1 and key < "\u0100":
        return ("text", key)
    return (link, index)


def _merge_error(mark: Any, error: ConstructorError) -> _Refused:
    return _Refused(_pack(mark), str(error.problem), error)


def _kind(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "sequence" if isinstance(value, list) else "scalar"
