"""The completions of a read held as columns: a few bytes a record instead of a Python object each.

A read of millions of completions kept as `Completion` values costs about 230 bytes a record (the object, its
Id, its UniqueId text, a list slot). `CompletionColumns` keeps the same records in parallel arrays (Ids as
machine integers, stamps and SystemIds as codes into small tables of distinct values, a UniqueId that is a
GUID as 16 bytes, titles and names looked up in the catalog's maps) and behaves as a `Sequence[Completion]`:
each record is made again, equal to what the reader's `compact` makes, when it is asked for. The planner and
the matrix read the columns directly and make a `Completion` only for a record that becomes a change.

`Values` is one column of any JSON values, exact, of the same means: what the read cache holds its records in.
"""

from __future__ import annotations

import binascii
import itertools
import operator
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

from reconciler.model import Completion

# Widths an integer column widens through when a code no longer fits.
_WIDER = {"B": "H", "H": "I", "I": "q"}
_MANY = 4096  # past this many distinct texts, a stamp column packs them (see `_Texts`)
_DIGIT_SLOTS = str.maketrans({"%": "%%", **{d: "%s" for d in "0123456789"}})
_NOT_DIGITS = re.compile(r"[^0-9]")
_MAX_DIGITS = 16  # a text's digits packed with its shape into one 63-bit code: 10**16 < 2**54
_NOT_DIGIT_BYTES = bytes(sorted(set(range(256)) - set(b"0123456789\n")))  # `_NOT_DIGITS` in ASCII, lines kept
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_UNSET = object()
_PLAIN = frozenset((str, type(None)))  # the values a page at a time takes (`add_page`); any other, `add` does

# UniqueId kinds (one byte a row).
_NO_UID, _GUID, _GUID_UPPER, _OTHER_UID = 0, 1, 2, 3
_LOW = (1 << 64) - 1
# A GUID's text in one case (one of digits alone is both, and reads back lower-case: the same text).
_LOWER_GUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UPPER_GUID_TEXT = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
_LOWER_HEX = b"0123456789abcdef"
_DASHES = (8, 13, 18, 23)  # where a GUID's text has its dashes (36 characters in all)
# Every field of a raw CourseCompletedLesson record `add` and `add_page` read: a read for the columns keeps only
# these (`NexudusClient.pages(keep=...)`).
READ_FIELDS = ("Id", "CourseMemberId", "CourseLessonId", "CreatedOn", "UpdatedOn", "SystemId", "UniqueId",
               "CourseLessonTitle", "CourseMemberCoworkerFullName")
_ID, _MEMBER, _LESSON = (operator.itemgetter(k) for k in ("Id", "CourseMemberId", "CourseLessonId"))
_CREATED, _UPDATED = operator.itemgetter("CreatedOn"), operator.itemgetter("UpdatedOn")


def _append(column: array[int], value: int) -> array[int]:
    """`column` with `value` appended, widened first when the value does not fit its width."""
    try:
        column.append(value)
    except OverflowError:
        column = array(_WIDER[column.typecode], column)
        return _append(column, value)
    return column


def extended(column: array[int], values: list[int], times: int = 1) -> array[int]:
    """`column` with `values` (`times` over) appended, widened first (as far as `_append` would) until they fit."""
    try:
        column.extend(array(column.typecode, values) * times)
    except OverflowError:
        return extended(array(_WIDER[column.typecode], column), values, times)
    return column


def _lower_guids(texts: list[str | None]) -> array[int] | None:
    """The numbers of `texts` (high and low 64 bits of each, in turn) when every one is a lower-case GUID's text
    (`_LOWER_GUID_TEXT` matches it whole), else None; each a str or None (not a subclass of str: the caller
    checks). Exactly the regex's test, a page at a time: the texts joined by newlines are checked once (every
    other character a lower-case hex digit, the dashes and newlines exactly where n GUIDs put theirs), in a
    tenth of the time the regex takes a text."""
    count = len(texts)
    try:
        joined = "\n".join(texts)  # type: ignore[arg-type]
    except TypeError:  # a None among them
        return None
    if not count or len(joined) != 37 * count - 1 or not joined.isascii():
        return None
    dashes, data = "-" * count, joined.encode()
    if (any(joined[at::37] != dashes for at in _DASHES) or joined[36::37] != "\n" * (count - 1)
            or data.translate(None, _LOWER_HEX) != (b"----\n" * count)[:-1]):
        return None
    numbers = array("Q")
    numbers.frombytes(binascii.unhexlify(data.translate(None, b"-\n")))
    if sys.byteorder == "little":  # the hex digits read big-endian
        numbers.byteswap()
    return numbers


def _optional(records: Sequence[Mapping[str, Any]], field: str) -> list[Any]:
    """`field` of every record, None where a record has none (`record.get`)."""
    try:
        return list(map(operator.itemgetter(field), records))
    except KeyError:
        return [record.get(field) for record in records]


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
                index = self._shape(value, len(digits))
                if index is not None:
                    return ((int(digits or "0") << 8 | index) << 1)
        return self._whole(value)

    def pack_many(self, values: list[str | None]) -> list[int]:
        """`pack` of each value in turn, each a str (not a subclass) or None. When they are all ASCII texts of a
        line each (stamps are), their digits and shapes are taken for all at once, from the texts joined (a
        tenth of the time `pack` takes a text), and each text's code is made from them."""
        try:
            joined = "\n".join(values)  # type: ignore[arg-type]
        except TypeError:  # a None among them
            return list(map(self.pack, values))
        if not joined.isascii() or joined.count("\n") != len(values) - 1:
            return list(map(self.pack, values))
        data = joined.encode()
        indexes: dict[bytes, int | None] = {}  # by the text with each digit a 0: its shape's index
        codes = []
        for value, digits, key in zip(values, data.translate(None, _NOT_DIGIT_BYTES).split(b"\n"),
                                      data.translate(_DIGITS_AS_ZERO).split(b"\n"), strict=True):
            if len(digits) <= _MAX_DIGITS:
                index = indexes.get(key, -1)
                if index == -1:
                    index = indexes[key] = self._shape(value, len(digits))  # type: ignore[arg-type]
                if index is not None:
                    codes.append((int(digits or b"0") << 8 | index) << 1)
                    continue
            codes.append(self._whole(value))
        return codes

    def _whole(self, value: Any) -> int:
        """The code of `value` kept whole, in the table of distinct values."""
        index = self.value_index.get(value)
        if index is None or type(self.values[index]) is not type(value):
            index = len(self.values)
            self.values.append(value)
            self.value_index.setdefault(value, index)
        return index << 1 | 1

    def _shape(self, text: str, width: int) -> int | None:
        """The index of `text`'s shape (its `width` digits each a slot), added while there are fewer than 256."""
        shape = text.translate(_DIGIT_SLOTS)
        index = self.shape_index.get(shape)
        if index is None and len(self.shapes) < 256:
            index = self.shape_index[shape] = len(self.shapes)
            self.shapes.append((shape, width))
        return index

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

    __slots__ = ("_last", "_last_code", "_plain", "codes", "index", "packer", "values")

    def __init__(self) -> None:
        self.codes: array[int] = array("B")
        self.values: list[Any] = []
        self.index: dict[Any, int] = {}
        self.packer: _Packer | None = None
        self._last: Any = _UNSET
        self._last_code = 0
        self._plain = True  # every value added a text or None: a value's code is then its key's (see `add_many`)

    def add(self, value: Any) -> None:
        last = self._last
        if value is last or (type(value) is str and type(last) is str and value == last):
            self.codes = _append(self.codes, self._last_code)
            return
        if type(value) not in _PLAIN:
            self._plain = False
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

    def add_many(self, values: list[str | None]) -> None:
        """`add` of each value in turn, every one a text or None (the caller checks: `add` takes any value).

        While every value ever added is a text or None, two are one key exactly when `add` gives them one code
        (no 1 and True, no NaN), so a page's codes are dictionary look-ups: the same value as the last one
        throughout (a page of one stamp, of no SystemId) at once, else each distinct value coded once."""
        if not values:
            return
        if not self._plain:
            for value in values:
                self.add(value)
            return
        if values.count(self._last) == len(values):
            self.codes = extended(self.codes, [self._last_code], len(values))
            return
        if self.packer is not None:
            distinct = list(dict.fromkeys(values))  # packed in the order first seen, as `add` packs them
            coded = dict(zip(distinct, self.packer.pack_many(distinct), strict=True))
            codes = list(map(coded.__getitem__, values))
        else:
            index = self.index
            fresh = [value for value in dict.fromkeys(values) if value not in index]
            if len(self.values) + len(fresh) > _MANY:  # a code past _MANY packs them all: as `add` does it
                for value in values:
                    self.add(value)
                return
            for value in fresh:
                index[value] = len(self.values)
                self.values.append(value)
            codes = list(map(index.__getitem__, values))
        self._last, self._last_code = values[-1], codes[-1]  # equal to what `add` leaves, and of its type
        self.codes = extended(self.codes, codes)

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
        taken.values, taken.index, taken.packer, taken._plain = self.values, self.index, self.packer, self._plain
        return taken

    def nbytes(self) -> int:
        return len(self.codes) * self.codes.itemsize


class CompletionColumns(Sequence[Completion]):
    """Completions as columns, in the order they were added; a `Sequence[Completion]` whose items are made on
    access. Built a raw API record at a time (`add`, what the reader's `compact` takes) or a page at a time
    (`add_page`, the same columns, as the full read builds them), then `take` keeps the rows a read keeps, in the
    order it keeps them.

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

    def add_page(self, records: Sequence[Mapping[str, Any]]) -> range:
        """`add` of each record in turn, a page at a time; returns their rows. The very same columns (to the last
        code) at a fraction of the cost a record, which matters on the full read (its pages are taken on the main
        thread while the next one is fetched: every µs is wall time): each field is taken for the whole page, the
        texts coded by `_Texts.add_many`, the UniqueIds tested and parsed by `_lower_guids`, titles and names
        looked at once per distinct lesson and member. A page it cannot take whole (a field missing, a value
        neither text nor None, an Id that is no machine integer) is left to `add`, which raises what it raises."""
        start = len(self.ids)
        fields = self._page_fields(records)
        if fields is None:
            for record in records:
                self.add(record)
            return range(start, len(self.ids))
        ids, members, lessons, created, updated, systems, uids, untitled, unnamed = fields
        self.ids.extend(ids)
        self.member_ids.extend(members)
        self.lesson_ids.extend(lessons)
        self.created.add_many(created)
        self.updated.add_many(updated)
        self.systems.add_many(systems)
        numbers = _lower_guids(uids)
        if numbers is not None:
            self._uid_kind.extend(array("B", [_GUID]) * len(uids))
            self._uid_high.extend(numbers[0::2])
            self._uid_low.extend(numbers[1::2])
        else:
            for uid in uids:
                self._add_uid(uid)
        if untitled or unnamed:  # the catalog has no title (name): the records' own, as `add` keeps them
            for row, record in enumerate(records, start):
                lesson, member = record["CourseLessonId"], record["CourseMemberId"]
                if lesson in untitled:
                    title = str(record.get("CourseLessonTitle") or "")
                    if title != self._lesson_titles.setdefault(lesson, title):
                        self._row_titles[row] = title
                if member in unnamed:
                    name = str(record.get("CourseMemberCoworkerFullName") or "")
                    if name != self._member_names.setdefault(member, name):
                        self._row_names[row] = name
        return range(start, len(self.ids))

    def _page_fields(self, records: Sequence[Mapping[str, Any]]) -> tuple[
            array[int], array[int], array[int], list[str | None], list[str | None], list[str | None],
            list[str | None], set[int], set[int]] | None:
        """A page's fields as `add_page` takes them (Ids, members, lessons; stamps, SystemIds, UniqueIds; the
        lessons and members the catalog has no title or name for), or None when the page is not one it can take
        whole. Nothing is changed here: a page found wanting is added from its first record."""
        try:
            ids = array("q", list(map(_ID, records)))
            member_list, lesson_list = list(map(_MEMBER, records)), list(map(_LESSON, records))
            members, lessons = array("q", member_list), array("q", lesson_list)
            created, updated = list(map(_CREATED, records)), list(map(_UPDATED, records))
            systems, uids = _optional(records, "SystemId"), _optional(records, "UniqueId")
            untitled = {lesson for lesson in set(lesson_list) if not self.titles.get(lesson)}
            unnamed = {member for member in set(member_list) if not self.names.get(member)}
        except Exception:  # whatever a record has wrong, `add` meets it again at that record and raises it there
            return None
        if not all(_PLAIN.issuperset(map(type, values)) for values in (created, updated, systems, uids)):
            return None
        return ids, members, lessons, created, updated, systems, uids, untitled, unnamed

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

    def some_system_id(self) -> bool:
        """Whether any record read showed a SystemId (any text), these rows or others of the same read: the lists
        carry it. (Many distinct ones are packed: texts.)"""
        return self.systems.packer is not None or any(self.systems.values)

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


_ODD = -1  # a value a column keeps by row (see `Values._code`)
_WHOLE = 255  # a packed text column's layout code for a value kept whole (in the table of distinct values)
_PACKED_DIGITS = 18  # a packed text's digits as one number: 10**18 < 2**63
_TABLED = frozenset((str, type(None), bool, int))  # the values a column codes into its table of distinct values
_INT_RANGE = range(-(1 << 63), 1 << 63)
_GUID_LAYOUT = b"00000000-0000-0000-0000-000000000000"  # a GUID's 32 hex digits in its text (see `_render`)


def _slots(column: array[int], rows: Sequence[int]) -> list[int]:
    """The numbers of `rows` in `column`: a run of rows (a range) in one slice."""
    if isinstance(rows, range) and rows.step == 1:
        return column[rows.start:rows.stop].tolist()
    return list(map(column.__getitem__, rows))


def _render(layout: bytes, digits: bytes, width: int, count: int) -> list[str]:
    """`count` texts of one ASCII layout (each of its `0` a slot), the slots filled in turn from `digits` (`width`
    characters a text, one after the other): each slot's characters of all the texts copied at once, a strided
    copy, rather than a text formatted at a time (a tenth of the time for a page of stamps)."""
    if not count:
        return []
    size = len(layout) + 1
    out = bytearray(b"\n") * (size * count)
    slot = 0
    for at, char in enumerate(layout):
        if char == 48:  # b"0": a slot
            out[at::size] = digits[slot::width]
            slot += 1
        else:
            out[at::size] = bytes((char,)) * count
    return out[:-1].decode().split("\n")


class Values:
    """One column of any JSON values, a slot a row, exact: each value comes back as it went in (its type, and
    the very object for a value neither a text nor an integer). By kind, chosen from the first values: `ints`,
    machine integers; `guids`, lower-case GUIDs as two 64-bit numbers; `texts`, texts (and None, bools, ints
    among them) as codes into their distinct values while they are few (a byte or two a row), then, once they
    are many (stamps, names), packed: each text's ASCII digits as one number beside its layout (the text with
    each digit a 0) from a table of at most 255 (9 bytes a row, no string kept). A value its kind cannot hold (a
    float, a list, an object, a text among GUIDs, an integer past 64 bits) is kept as it is, by row (`odd`)."""

    __slots__ = ("codes", "index", "kind", "layout_index", "layouts", "low", "odd", "shapes", "table")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.codes: array[int] = array("Q" if kind == "guids" else "B")  # ints: the value; guids: the high 64
        # bits; texts: a code
        self.low: array[int] = array("Q")  # guids: the low 64 bits
        self.layouts: array[int] | None = None  # texts once packed: each row's layout (`_WHOLE`: `codes` → table)
        self.shapes: list[tuple[bytes, int]] = []  # each layout with its number of digits
        self.layout_index: dict[bytes, int] = {}
        self.table: list[Any] = []  # texts: the distinct values coded (packed: those kept whole)
        self.index: dict[Any, int] = {}
        self.odd: dict[int, Any] = {}  # by row: a value kept as it is

    @classmethod
    def of(cls, values: list[Any]) -> Values:
        """An empty column of the kind that holds `values` (the first a column is given) best."""
        if values and set(map(type, values)) == {int} and min(values) in _INT_RANGE and max(values) in _INT_RANGE:
            return cls("ints")
        if values and _PLAIN.issuperset(map(type, values)) and _lower_guids(values) is not None:
            return cls("guids")
        return cls("texts")

    def __len__(self) -> int:
        return len(self.codes)

    def pad(self, count: int) -> None:
        """`count` rows of no value (rows of a record without this key: never read as a value, but readable)."""
        if count <= 0:
            return
        if self.kind == "texts":
            self.extend([None] * count)
            return
        self.codes = extended(self.codes, [0], count)
        if self.kind == "guids":
            self.low.extend(array("Q", [0]) * count)

    def extend(self, values: list[Any]) -> None:
        """Append a row for each value: a page at a time where the values fit the column's kind (as they do but
        for a rare one), else a value at a time."""
        if self.kind == "ints":
            if set(map(type, values)) == {int}:
                try:
                    array("q", values)
                except OverflowError:
                    pass
                else:
                    self.codes = extended(self.codes, values)
                    return
        elif self.kind == "guids":
            numbers = _lower_guids(values) if _PLAIN.issuperset(map(type, values)) else None
            if numbers is not None:
                self.codes = extended(self.codes, numbers[0::2].tolist())
                self.low.extend(numbers[1::2])
                return
        elif self._texts(values):
            return
        for value in values:
            self.append(value)

    def append(self, value: Any) -> None:
        row, code, low = len(self.codes), 0, 0
        if self.kind == "ints":
            if type(value) is int and value in _INT_RANGE:
                code = value
            else:
                self.odd[row] = value
        elif self.kind == "guids":
            numbers = _lower_guids([value]) if type(value) is str else None
            if numbers is not None:
                code, low = numbers
            else:
                self.odd[row] = value
        else:
            layout, code = self._code(value)
            if layout == _ODD:
                self.odd[row] = value
                layout, code = self._code(None)  # the slot of a value kept by row, never read, is readable
            if self.layouts is not None:
                self.layouts.append(layout)
        self.codes = _append(self.codes, code)
        if self.kind == "guids":
            self.low.append(low)

    def _texts(self, values: list[Any]) -> bool:
        """`append` of each value, a page at a time (False, nothing done, when the page is not one it takes so):
        into the table while the distinct values stay few (past `_MANY` they are packed), when each is a text,
        None, a bool or an int, and no two are one key of two types (1 and True); packed, when every one is an
        ASCII text of a line, its digits few enough and its layout known or room for it."""
        types = set(map(type, values))
        if not types <= _TABLED:
            return False
        if self.layouts is None:
            index, table = self.index, self.table
            distinct = dict.fromkeys(values)
            if {bool, int} <= types or any(type(table[index[value]]) is not type(value)
                                           for value in distinct if value in index):
                return False
            fresh = [value for value in distinct if value not in index]
            if len(table) + len(fresh) > _MANY:
                self._pack_all()
            else:
                for value in fresh:
                    index[value] = len(self.table)
                    self.table.append(value)
                self.codes = extended(self.codes, list(map(index.__getitem__, values)))
                return True
        try:
            joined = "\n".join(values)
        except TypeError:  # a value that is not a text
            return False
        if not joined.isascii() or joined.count("\n") != len(values) - 1:
            return False
        data = joined.encode()
        layouts = data.translate(_DIGITS_AS_ZERO).split(b"\n")
        found = {layout: self._layout(layout) for layout in dict.fromkeys(layouts)}
        if _WHOLE in found.values():
            return False
        digits = data.translate(None, _NOT_DIGIT_BYTES).split(b"\n")
        self.layouts.extend(array("B", map(found.__getitem__, layouts)))  # type: ignore[union-attr]
        self.codes.extend(array("q", [int(d) if d else 0 for d in digits]))
        return True

    def _layout(self, layout: bytes) -> int:
        """The code of an ASCII text's layout (its digits each a 0), added while there is room; `_WHOLE` when the
        text is to be kept whole (too many digits, no room, or a line break: `_render` splits at those)."""
        code = self.layout_index.get(layout)
        if code is None:
            width = layout.count(b"0")
            if width > _PACKED_DIGITS or len(self.shapes) >= _WHOLE or b"\n" in layout:
                return _WHOLE
            code = self.layout_index[layout] = len(self.shapes)
            self.shapes.append((layout, width))
        return code

    def _code(self, value: Any) -> tuple[int, int]:
        """A value's layout and code as `codes` holds it (`_WHOLE`: a code into the table; `_ODD`: the value is to
        be kept by row)."""
        if type(value) not in _TABLED:
            return _ODD, 0
        if self.layouts is not None and type(value) is str and value.isascii():
            layout = self._layout(value.encode().translate(_DIGITS_AS_ZERO))
            if layout != _WHOLE:
                return layout, int(_NOT_DIGITS.sub("", value) or "0")
        code = self.index.get(value)
        if code is None:
            code = self.index[value] = len(self.table)
            self.table.append(value)
            if self.layouts is None and code >= _MANY:
                self._pack_all()
                return self._code(value)
        elif type(self.table[code]) is not type(value):  # 1 and True are one key, not one value
            return _ODD, 0
        return _WHOLE, code

    def _pack_all(self) -> None:
        """From codes into the table to packed texts: each distinct value packed once."""
        table, codes = self.table, self.codes
        self.table, self.index, self.layouts, self.codes = [], {}, array("B"), array("q")
        packed = [self._code(value) for value in table]
        self.layouts = array("B", [packed[code][0] for code in codes])  # never `_ODD`: the table's values fit
        self.codes = array("q", [packed[code][1] for code in codes])

    def take(self, rows: Sequence[int]) -> list[Any]:
        """The values of `rows`, in that order, made a page at a time."""
        codes = _slots(self.codes, rows)
        values: list[Any]
        if self.kind == "ints":
            values = codes
        elif self.kind == "guids":
            halves = itertools.chain.from_iterable(zip(codes, map(self.low.__getitem__, rows), strict=True))
            hexes = ("%016x%016x" * len(codes) % tuple(halves)).encode()
            values = _render(_GUID_LAYOUT, hexes, 32, len(codes))
        elif self.layouts is None:
            values = list(map(self.table.__getitem__, codes))
        else:
            values = self._unpack(_slots(self.layouts, rows), codes)
        if self.odd:
            odd = self.odd
            for at, row in enumerate(rows):
                if row in odd:
                    values[at] = odd[row]
        return values

    def _unpack(self, layouts: list[int], codes: list[int]) -> list[Any]:
        """Packed texts (and values kept whole) from their layouts and codes: each layout's texts made at once."""
        if not layouts:
            return []
        if layouts.count(layouts[0]) == len(layouts):  # as a page of stamps has it
            return self._made(layouts[0], codes)
        groups: dict[int, list[int]] = {}
        for at, layout in enumerate(layouts):
            groups.setdefault(layout, []).append(at)
        values: list[Any] = [None] * len(codes)
        for layout, ats in groups.items():
            for at, value in zip(ats, self._made(layout, [codes[at] for at in ats]), strict=True):
                values[at] = value
        return values

    def _made(self, layout: int, codes: list[int]) -> list[Any]:
        """The values of one layout's codes."""
        if layout == _WHOLE:
            return list(map(self.table.__getitem__, codes))
        text, width = self.shapes[layout]
        digits = (f"%0{width}d" * len(codes) % tuple(codes)).encode() if width else b""
        return _render(text, digits, width, len(codes))

    def judged(self, rows: Sequence[int], judge: Callable[[Any], Any],
               head: Callable[[bytes], int | None]) -> list[Any]:
        """`judge` of each row's value, judged once per distinct value; a packed text once per distinct first `k`
        characters, when `head(layout)` says `judge` reads only those of a text of that layout (`k`; None: all)."""
        if self.kind != "texts" or self.odd:
            return list(map(judge, self.take(rows)))
        codes = _slots(self.codes, rows)
        if self.layouts is None:
            memo = [judge(value) for value in self.table]
            return list(map(memo.__getitem__, codes))
        layouts = _slots(self.layouts, rows)
        cuts: list[int | None] = []
        for text, width in self.shapes:
            first = head(text)
            cuts.append(None if first is None else 10 ** (width - text[:first].count(b"0")))
        if layouts and layouts.count(layouts[0]) == len(layouts) and layouts[0] != _WHOLE and \
                (cut := cuts[layouts[0]]) is not None:  # as a column of stamps has it: judged by their heads
            heads = [code // cut for code in codes]
            one = dict(zip(heads, codes, strict=True))  # a text of each head, all made at once
            by_head = dict(zip(one, map(judge, self._made(layouts[0], list(one.values()))), strict=True))
            return list(map(by_head.__getitem__, heads))
        keys = [(layout, code if cut is None else code // cut)
                for layout, code, cut in zip(layouts, codes, [None if layout == _WHOLE else cuts[layout]
                                                              for layout in layouts], strict=True)]
        one_of = dict(zip(keys, zip(layouts, codes, strict=True), strict=True))  # a value of each key
        made = self._unpack([layout for layout, _ in one_of.values()], [code for _, code in one_of.values()])
        verdicts = dict(zip(one_of, map(judge, made), strict=True))
        return list(map(verdicts.__getitem__, keys))

    def nbytes(self) -> int:
        """The bytes the column's arrays hold (not its tables, nor the values kept by row)."""
        arrays = [self.codes, self.low] + ([self.layouts] if self.layouts is not None else [])
        return sum(len(a) * a.itemsize for a in arrays)
