"""The completions of a read held as columns: a few bytes a record instead of a Python object each.

A read of millions of completions kept as `Completion` values costs about 230 bytes a record (the object, its
Id, its UniqueId text, a list slot). `CompletionColumns` keeps the same records in parallel arrays (Ids as
machine integers, stamps and SystemIds as codes into small tables of distinct values, a UniqueId that is a
GUID as 16 bytes, titles and names looked up in the catalog's maps) and behaves as a `Sequence[Completion]`:
each record is made again, equal to what the reader's `compact` makes, when it is asked for. The planner and
the matrix read the columns directly and make a `Completion` only for a record that becomes a change.
"""

from __future__ import annotations

import operator
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

from reconciler.model import Completion

# Widths an integer column widens through when a code no longer fits.
_WIDER = {"B": "H", "H": "I", "I": "q"}
_MANY = 4096  # past this many distinct texts, a stamp column packs them (see `_Texts`)
_DIGIT_SLOTS = str.maketrans({"%": "%%", **{d: "%s" for d in "0123456789"}})
_NOT_DIGITS = re.compile(r"[^0-9]")
_MAX_DIGITS = 16  # a text's digits packed with its shape into one 63-bit code: 10**16 < 2**54
_UNSET = object()

# UniqueId kinds (one byte a row).
_NO_UID, _GUID, _GUID_UPPER, _OTHER_UID = 0, 1, 2, 3
_LOW = (1 << 64) - 1
# A GUID's text in one case (one of digits alone is both, and reads back lower-case: the same text).
_LOWER_GUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UPPER_GUID_TEXT = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")


def _append(column: array[int], value: int) -> array[int]:
    """`column` with `value` appended, widened first when the value does not fit its width."""
    try:
        column.append(value)
    except OverflowError:
        column = array(_WIDER[column.typecode], column)
        return _append(column, value)
    return column


class _Packer:
    """Texts as 63-bit codes: a text's ASCII digits as one number, beside its shape (the text with each digit a
    slot, from a table of distinct shapes): "2026-03-01T10:22:13Z" is 20260301102213 and the shape
    "%s%s%s%s-%s%s-…Z". A text with more digits, a shape past the 255th, or a value that is not a text is kept
    whole in a table of distinct values instead. Exact: `unpack(pack(v)) == v` for every value."""

    __slots__ = ("shape_index", "shapes", "value_index", "values")

    def __init__(self) -> None:
        self.shapes: list[tuple[str, int]] = []
        self.shape_index: dict[str, int] = {}
        self.values: list[Any] = []
        self.value_index: dict[Any, int] = {}

    def pack(self, value: Any) -> int:
        if type(value) is str:
            digits = _NOT_DIGITS.sub("", value)
            if len(digits) <= _MAX_DIGITS:
                shape = value.translate(_DIGIT_SLOTS)
                index = self.shape_index.get(shape)
                if index is None and len(self.shapes) < 256:
                    index = self.shape_index[shape] = len(self.shapes)
                    self.shapes.append((shape, len(digits)))
                if index is not None:
                    return ((int(digits or "0") << 8 | index) << 1)
        index = self.value_index.get(value)
        if index is None or type(self.values[index]) is not type(value):
            index = len(self.values)
            self.values.append(value)
            self.value_index.setdefault(value, index)
        return index << 1 | 1

    def unpack(self, code: int) -> Any:
        if code & 1:
            return self.values[code >> 1]
        code >>= 1
        shape, width = self.shapes[code & 255]
        return shape % tuple(str(code >> 8).zfill(width)) if width else shape % ()


class _Texts:
    """A column of texts (or None): codes into a table of the distinct values while they are few (a byte or
    two a row), and once they are many (stamps of records made one by one: nearly every one distinct) codes
    that pack each text (`_Packer`: 8 bytes a row, no string kept)."""

    __slots__ = ("_last", "_last_code", "codes", "index", "packer", "values")

    def __init__(self) -> None:
        self.codes: array[int] = array("B")
        self.values: list[Any] = []
        self.index: dict[Any, int] = {}
        self.packer: _Packer | None = None
        self._last: Any = _UNSET
        self._last_code = 0

    def add(self, value: Any) -> None:
        last = self._last
        if value is last or (type(value) is str and type(last) is str and value == last):
            self.codes = _append(self.codes, self._last_code)
            return
        if self.packer is not None:
            code = self.packer.pack(value)
        else:
            code = self.index.get(value, -1)
            if code < 0 or type(self.values[code]) is not type(value):  # 1 and True are one key, not one value
                code = len(self.values)
                self.values.append(value)
                self.index.setdefault(value, code)
                if code >= _MANY:
                    self._pack_all()
                    code = self.packer.pack(value) if self.packer is not None else code
        self._last, self._last_code = value, code
        self.codes = _append(self.codes, code)

    def _pack_all(self) -> None:
        packer = _Packer()
        packed = [packer.pack(value) for value in self.values]
        self.codes = array("q", (packed[code] for code in self.codes))
        self.packer, self.values, self.index = packer, [], {}
        self._last = _UNSET

    def get(self, row: int) -> Any:
        return self.decode(self.codes[row])

    def decode(self, code: int) -> Any:
        """The value a code in `codes` stands for."""
        return self.values[code] if self.packer is None else self.packer.unpack(code)

    def take(self, rows: Sequence[int]) -> _Texts:
        taken = _Texts()
        taken.codes = array(self.codes.typecode, map(self.codes.__getitem__, rows))
        taken.values, taken.index, taken.packer = self.values, self.index, self.packer
        return taken

    def nbytes(self) -> int:
        return len(self.codes) * self.codes.itemsize


class CompletionColumns(Sequence[Completion]):
    """Completions as columns, in the order they were added; a `Sequence[Completion]` whose items are made on
    access. Built a raw API record at a time (`add`, what the reader's `compact` takes), then `take` keeps the
    rows a read keeps, in the order it keeps them.

    `titles` (lesson Id → title) and `names` (CourseMember Id → full name) are the catalog's; a record's own
    title or name is kept only when the catalog has none (once per lesson or member, and per row only for a
    record that disagrees with the others of its lesson or member)."""

    def __init__(self, titles: Mapping[int, str] | None = None, names: Mapping[int, str] | None = None) -> None:
        self.ids: array[int] = array("q")
        self.member_ids: array[int] = array("q")
        self.lesson_ids: array[int] = array("q")
        self.created = _Texts()
        self.updated = _Texts()
        self.systems = _Texts()  # SystemId: a handful of distinct markers
        self._uid_kind: array[int] = array("B")
        self._uid_high: array[int] = array("Q")
        self._uid_low: array[int] = array("Q")
        self._uid_texts = _Packer()
        self.titles: Mapping[int, str] = titles if titles is not None else {}
        self.names: Mapping[int, str] = names if names is not None else {}
        # A lesson's (member's) title (name) from its records, when the catalog has none; and by row, a record
        # whose title (name) is not its lesson's (member's).
        self._lesson_titles: dict[int, str] = {}
        self._member_names: dict[int, str] = {}
        self._row_titles: dict[int, str] = {}
        self._row_names: dict[int, str] = {}

    @classmethod
    def of(cls, completions: Iterable[Completion], titles: Mapping[int, str] | None = None,
           names: Mapping[int, str] | None = None) -> CompletionColumns:
        """Completions already made, as columns (each equal to its original when read back, whatever the maps)."""
        columns = cls(titles, names)
        for c in completions:
            columns.add({"Id": c.id, "CourseMemberId": c.member_id, "CourseLessonId": c.lesson_id,
                         "CreatedOn": c.created_on, "UpdatedOn": c.updated_on, "SystemId": c.system_id,
                         "UniqueId": c.unique_id, "CourseLessonTitle": c.lesson_title,
                         "CourseMemberCoworkerFullName": c.member_name}, exact=True)
        return columns

    # --- building --------------------------------------------------------------------------------

    def add(self, record: Mapping[str, Any], *, exact: bool = False) -> int:
        """Append one raw CourseCompletedLesson record (as the API lists it); returns its row.

        The record read back is what the reader's `compact` makes of it: the catalog's lesson title and
        member name where it has them, else the record's own. `exact`: the record's title and name as they are
        (for completions already made, `of`)."""
        row = len(self.ids)
        lesson, member = record["CourseLessonId"], record["CourseMemberId"]
        self.ids.append(record["Id"])
        self.member_ids.append(member)
        self.lesson_ids.append(lesson)
        self.created.add(record["CreatedOn"])
        self.updated.add(record["UpdatedOn"])
        self.systems.add(record.get("SystemId"))
        self._add_uid(record.get("UniqueId"))
        if exact:
            title, name = record["CourseLessonTitle"], record["CourseMemberCoworkerFullName"]
        else:
            title = self.titles.get(lesson) or str(record.get("CourseLessonTitle") or "")
            name = self.names.get(member) or str(record.get("CourseMemberCoworkerFullName") or "")
        if title != (self.titles.get(lesson) or self._lesson_titles.setdefault(lesson, title)):
            self._row_titles[row] = title
        if name != (self.names.get(member) or self._member_names.setdefault(member, name)):
            self._row_names[row] = name
        return row

    def _add_uid(self, uid: Any) -> None:
        high = low = 0
        if uid is None:
            kind = _NO_UID
        elif type(uid) is str and (_LOWER_GUID_TEXT.fullmatch(uid) or _UPPER_GUID_TEXT.fullmatch(uid)):
            kind = _GUID if uid == uid.lower() else _GUID_UPPER
            number = int(uid.replace("-", ""), 16)
            high, low = number >> 64, number & _LOW
        else:
            kind = _OTHER_UID
            high = self._uid_texts.pack(uid)
        self._uid_kind.append(kind)
        self._uid_high.append(high)
        self._uid_low.append(low)

    def take(self, rows: Sequence[int]) -> CompletionColumns:
        """A store of just `rows`, in that order (the catalog maps shared): `self` itself when `rows` are every
        row in order, as they nearly always are (no second copy of a read of millions)."""
        if len(rows) == len(self.ids) and all(map(operator.eq, rows, range(len(rows)))):
            return self
        taken = CompletionColumns(self.titles, self.names)
        taken.ids = array("q", map(self.ids.__getitem__, rows))
        taken.member_ids = array("q", map(self.member_ids.__getitem__, rows))
        taken.lesson_ids = array("q", map(self.lesson_ids.__getitem__, rows))
        taken.created, taken.updated, taken.systems = (self.created.take(rows), self.updated.take(rows),
                                                       self.systems.take(rows))
        taken._uid_kind = array("B", map(self._uid_kind.__getitem__, rows))
        taken._uid_high = array("Q", map(self._uid_high.__getitem__, rows))
        taken._uid_low = array("Q", map(self._uid_low.__getitem__, rows))
        taken._uid_texts = self._uid_texts
        taken._lesson_titles, taken._member_names = self._lesson_titles, self._member_names
        if self._row_titles or self._row_names:
            for new, old in enumerate(rows):
                if old in self._row_titles:
                    taken._row_titles[new] = self._row_titles[old]
                if old in self._row_names:
                    taken._row_names[new] = self._row_names[old]
        return taken

    # --- reading ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> Completion: ...

    @overload
    def __getitem__(self, index: slice) -> list[Completion]: ...

    def __getitem__(self, index: int | slice) -> Completion | list[Completion]:
        if isinstance(index, slice):
            return [self.completion(row) for row in range(*index.indices(len(self.ids)))]
        if index < 0:
            index += len(self.ids)
        if not 0 <= index < len(self.ids):
            raise IndexError("completion row out of range")
        return self.completion(index)

    def __iter__(self) -> Iterator[Completion]:
        for row in range(len(self.ids)):
            yield self.completion(row)

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same completions in the same order (a list of them included)."""
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<CompletionColumns: {len(self):,} completions>"

    def completion(self, row: int) -> Completion:
        """Row `row` as a `Completion`."""
        lesson, member = self.lesson_ids[row], self.member_ids[row]
        title = self._row_titles.get(row)
        if title is None:
            title = self.titles.get(lesson) or self._lesson_titles.get(lesson, "")
        name = self._row_names.get(row)
        if name is None:
            name = self.names.get(member) or self._member_names.get(member, "")
        return Completion(self.ids[row], member, lesson, self.created.get(row), self.updated.get(row),
                          self.systems.get(row), self.unique_id(row), title, name)

    def system_id(self, row: int) -> str | None:
        value: str | None = self.systems.get(row)
        return value

    def unique_id(self, row: int) -> str | None:
        kind = self._uid_kind[row]
        if kind == _NO_UID:
            return None
        if kind == _OTHER_UID:
            value: str | None = self._uid_texts.unpack(self._uid_high[row])
            return value
        text = f"{self._uid_high[row]:016x}{self._uid_low[row]:016x}"
        if kind == _GUID_UPPER:
            text = text.upper()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def nbytes(self) -> int:
        """The bytes the columns hold (the arrays; not the small tables of distinct values)."""
        arrays = (self.ids, self.member_ids, self.lesson_ids, self._uid_kind, self._uid_high, self._uid_low)
        return (sum(len(a) * a.itemsize for a in arrays) + self.created.nbytes() + self.updated.nbytes()
                + self.systems.nbytes())
