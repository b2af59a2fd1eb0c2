"""The YAML loader: values built from the parser's events, with the place of every value and key, and every
guard (duplicate keys, what aliases expand to, tags, depth, merge keys), with libyaml and in pure Python."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import reconciler.yamlfile as yamlfile
from reconciler.yamlfile import Document, LoadError, load_file, load_text

from .conftest import run_cli

HEAD = "apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: s1}\ncourse: Onboarding\n"


@pytest.fixture(params=["libyaml", "pure Python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test below runs with libyaml's parser (where PyYAML has it) and with the pure-Python one."""
    if request.param == "pure Python":
        monkeypatch.setattr(yamlfile, "SAFE_LOADER", yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    yield str(request.param)


def one(text: str) -> Document:
    (document,) = load_text(text, "s.yaml")
    return document


def refusal(text: str) -> str:
    with pytest.raises(LoadError) as caught:
        load_text(text, "s.yaml")
    return str(caught.value.problem)


def test_every_value_and_key_has_its_place(parser: str) -> None:
    doc = one("top:\n  name: x\n  list:\n    - {a: 1, b: [p, q]}\n    - plain\nflow: {k: v}\n")
    assert doc.data == {"top": {"name": "x", "list": [{"a": 1, "b": ["p", "q"]}, "plain"]}, "flow": {"k": "v"}}
    assert doc.place(()) == (1, 1)
    assert doc.place(("top",)) == (2, 3) and doc.place(("top",), key=True) == (1, 1)
    assert doc.place(("top", "name")) == (2, 9) and doc.place(("top", "name"), key=True) == (2, 3)
    assert doc.place(("top", "list", 0)) == (4, 7)
    assert doc.place(("top", "list", 0, "b", 1)) == (4, 21)
    assert doc.place(("top", "list", 0, "b"), key=True) == (4, 14)
    assert doc.place(("top", "list", 1)) == (5, 7)
    assert doc.place(("flow", "k")) == (6, 11) and doc.place(("flow", "k"), key=True) == (6, 8)


def test_a_path_that_is_not_there_takes_the_place_of_its_nearest_ancestor(parser: str) -> None:
    doc = one("a:\n  b: [1, 2]\n")
    assert doc.place(("a", "b", 5)) == (2, 6)
    assert doc.place(("a", "missing", "deeper")) == (2, 3)
    assert doc.place(("a", "missing"), key=True) == (1, 1)  # the nearest key: the ancestor's
    assert doc.place(("a", "b", 0, "x"), key=True) == (2, 7)
    assert doc.place(("nothing",)) == (1, 1)
    assert doc.problem(("a", "b", 1), "no good") == doc.problem(("a", "b", 1, "x"), "no good")
    assert str(doc.problem(("a", "b", 1), "no good")) == "s.yaml:2:10: no good"


def test_a_large_mapping_finds_its_keys_places(parser: str) -> None:
    doc = one("".join(f"key{n}: {n}\n" for n in range(500)))
    assert doc.place(("key0",)) == (1, 7)
    assert doc.place(("key499",)) == (500, 9) and doc.place(("key499",), key=True) == (500, 1)
    assert doc.place(("key500",)) == (1, 1)


def test_data_of_the_same_shape_keeps_the_places(parser: str) -> None:
    doc = one("members:\n  - {email: a@b.co}\n  - {email: c@d.co}\nother: 1\n")
    trimmed = doc.with_data({**doc.data, "members": doc.data["members"][:1]})
    assert trimmed.place(("members", 0, "email")) == (2, 13)
    assert trimmed.place(("other",)) == (4, 8)
    assert trimmed.place(("members", 1, "email")) == (2, 3)  # no longer in its data: the list's place
    assert doc.place(("members", 1, "email")) == (3, 13)


def test_scalars_are_read_as_yaml_1_1_says(parser: str) -> None:
    doc = one("s: text\ni: 12\nh: 0x1F\nf: 1.5\nb: [yes, off, true]\nn: ~\nq: '12'\nt: !!str 12\n"
              "e: ''\nk: {1: one, false: yes, ~: nothing}\n")
    assert doc.data == {"s": "text", "i": 12, "h": 31, "f": 1.5, "b": [True, False, True], "n": None, "q": "12",
                        "t": "12", "e": "", "k": {1: "one", False: True, None: "nothing"}}


def test_several_documents_each_with_their_places(parser: str) -> None:
    first, empty, third = load_text("a: 1\n---\n---\n- x\n- {y: 2}\n", "s.yaml")
    assert (first.data, empty.data, third.data) == ({"a": 1}, None, ["x", {"y": 2}])
    assert third.place((1, "y")) == (5, 7) and third.place((1, "y"), key=True) == (5, 4)
    assert load_text("", "s.yaml") == []


def test_duplicate_keys_are_refused_where_they_stand(parser: str) -> None:
    assert refusal("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n") == "s.yaml:5:3: duplicate key 'c' (first defined on line 3)"
    assert refusal("{1: a, 1: b}") == "s.yaml:1:8: duplicate key 1 (first defined on line 1)"


def test_a_syntax_error_later_in_the_document_is_said_first(parser: str) -> None:
    # As when the whole document was composed before any value was built.
    assert refusal("a: 1\na: 2\nb: [unclosed\n") == ("s.yaml:4:1: YAML syntax: while parsing a flow sequence, "
                                                     "expected ',' or ']', but got '<stream end>' "
                                                     "(it started on line 3, column 4)")
    assert refusal("a: 1\na: 2\nb: *nowhere\n") == "s.yaml:3:4: YAML syntax: found undefined alias 'nowhere'"
    # A document is read whole before the next: its own problem comes before the next one's syntax error.
    assert refusal("a: {c: 1, c: 2}\n---\n[\n") == "s.yaml:1:11: duplicate key 'c' (first defined on line 1)"


def test_anchors_must_be_defined_once_and_before_use(parser: str) -> None:
    assert refusal("a: &x 1\nb: &x 2\n") == ("s.yaml:2:4: YAML syntax: found duplicate anchor 'x'; first occurrence, "
                                             "second occurrence (it started on line 1, column 4)")
    assert refusal("a: *x\nb: &x 1\n") == "s.yaml:1:4: YAML syntax: found undefined alias 'x'"


def test_an_alias_is_its_anchors_value_and_place(parser: str) -> None:
    doc = one("base: &b {x: 1, y: [2]}\ncopy: *b\nname: &n text\nagain: *n\n")
    assert doc.data["copy"] == {"x": 1, "y": [2]} and doc.data["again"] == "text"
    assert doc.place(("copy",)) == (1, 7)
    assert doc.place(("copy", "y", 0)) == (1, 21)
    assert doc.place(("copy", "x"), key=True) == (1, 11)
    assert doc.place(("again",)) == (3, 7)


def test_aliases_are_counted_by_what_they_expand_to(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlfile, "MAX_ALIASED_NODES", 7)
    text = "a: &a [x, y, z]\nb: [*a, *a]\n"
    # The first *a expands to 4 nodes (the list and its 3 items), the second to 4 more: the 8th, z, is refused.
    assert refusal(text) == "s.yaml:1:14: aliases expand to more than 7 nodes; refused"
    monkeypatch.setattr(yamlfile, "MAX_ALIASED_NODES", 8)
    assert one(text).data["b"] == [["x", "y", "z"], ["x", "y", "z"]]
    # Nested aliases count in full: *b is its list (1) and two expansions of *a (4 each).
    monkeypatch.setattr(yamlfile, "MAX_ALIASED_NODES", 9 + 8)
    assert one("a: &a [x, y, z]\nb: &b [*a, *a]\nc: *b\n").data["c"] == [["x", "y", "z"]] * 2
    monkeypatch.setattr(yamlfile, "MAX_ALIASED_NODES", 9 + 8 - 1)
    assert refusal("a: &a [x, y, z]\nb: &b [*a, *a]\nc: *b\n") == \
        "s.yaml:1:14: aliases expand to more than 16 nodes; refused"


def test_the_alias_bomb_is_refused_quickly(parser: str) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    assert refusal("\n".join(levels) + "\n") == "s.yaml:1:14: aliases expand to more than 500,000 nodes; refused"


def test_a_list_that_holds_itself_is_refused(parser: str) -> None:
    assert refusal("x: &a [*a]\n") == "s.yaml:1:4: document is nested more than 200 levels deep"


def test_nesting_is_bounded_also_through_aliases(parser: str) -> None:
    assert one("[" * 201 + "]" * 201) is not None
    assert refusal("[" * 202 + "]" * 202) == "s.yaml:1:202: document is nested more than 200 levels deep"
    assert refusal("[" * 201 + "x" + "]" * 201) == "s.yaml:1:202: document is nested more than 200 levels deep"
    deep = "a: &d " + "[" * 150 + "]" * 150 + "\nb: " + "[" * 60 + "*d" + "]" * 60 + "\n"
    assert refusal(deep).endswith("document is nested more than 200 levels deep")
    assert refusal(deep).startswith("s.yaml:1:")  # inside what the alias expands to


def test_only_plain_tags_and_keys(parser: str) -> None:
    assert refusal("members: !!python/object/apply:os.system ['true']\n") == \
        "s.yaml:1:10: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"
    assert refusal("a: !!set {x}\n") == "s.yaml:1:4: YAML tag 'tag:yaml.org,2002:set' is not allowed"
    assert refusal("a: !local 1\n") == "s.yaml:1:4: YAML: could not determine a constructor for the tag '!local'"
    assert refusal("? [1]\n: 2\n") == "s.yaml:1:3: a mapping key must be a plain value"
    assert refusal("2020-01-01: x\n") == "s.yaml:1:1: a mapping key must be a plain value"
    assert one("a: !!binary QUJD\nb: 2020-01-02\n").data["a"] == b"ABC"


def test_merge_keys_merge_first_and_refuse_a_key_written_again(parser: str) -> None:
    doc = one("base: &b {x: 1, y: [2]}\nmore: &m {z: 3}\nuse: {<<: [*b, *m], w: 4}\n")
    assert doc.data["use"] == {"x": 1, "y": [2], "z": 3, "w": 4}
    assert list(doc.data["use"]) == ["x", "y", "z", "w"]
    assert doc.place(("use", "x"), key=True) == (1, 11) and doc.place(("use", "w"), key=True) == (3, 21)
    assert doc.place(("use", "y", 0)) == (1, 21)
    assert refusal("base: &b {x: 1}\nuse: {<<: *b, x: 2}\n") == \
        "s.yaml:2:15: duplicate key 'x' (first defined on line 1)"
    assert refusal("use: {<<: 1}\n") == ("s.yaml:1:11: YAML syntax: while constructing a mapping, "
                                         "expected a mapping or list of mappings for merging, but found scalar")


def test_the_file_size_limit_and_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"".join(b"k%02d: 1\n" % n for n in range(25)))
    monkeypatch.setattr(yamlfile, "MAX_FILE_BYTES", 100)
    documents, problems = load_file(path, "s.yaml")
    assert documents == [] and [str(p) for p in problems] == ["s.yaml:1:1: file is 175 bytes; the limit is 100"]
    monkeypatch.setattr(yamlfile, "MAX_FILE_BYTES", 175)
    documents, problems = load_file(path, "s.yaml")
    assert problems == [] and len(documents[0].data) == 25
    path.write_bytes(b"a: \xff\n")
    assert [str(p) for p in load_file(path, "s.yaml")[1]] == [
        "s.yaml:1:4: file is not UTF-8 text (invalid start byte at byte 3)"]
    path.write_bytes("k: caf\u00e9\nname: Zo\u00eb\ndescription: caf".encode() + b"\xe9\n")  # Latin-1 on line 3
    assert [str(p) for p in load_file(path, "s.yaml")[1]] == [
        "s.yaml:3:17: file is not UTF-8 text (invalid continuation byte at byte 36)"]


def test_a_document_nested_past_libyamls_own_limit_is_refused_as_too_deep() -> None:
    """libyaml stops at 1,000 levels with a syntax error; that is our depth problem, not a file to read again with
    the pure-Python parser (which took 100 s to reach the same place in 200 KB of brackets)."""
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    for text in (HEAD + "members: " + "[" * 100_000 + "]" * 100_000, HEAD + "members: " + "[" * 100_000):
        assert refusal(text).startswith("s.yaml:5:") and refusal(text).endswith(
            ": document is nested more than 200 levels deep")


def test_a_large_file_that_does_not_parse_keeps_libyamls_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that does not parse is read again by the pure-Python parser for a clearer message, unless it is
    large (that parser reads about 0.7 MB a second)."""
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    text = HEAD + "members: [unclosed\n"
    clearer = refusal(text)
    monkeypatch.setattr(yamlfile, "FRIENDLY_SYNTAX_CHARS", len(text) - 1)
    terser = refusal(text)
    assert clearer != terser and clearer.startswith("s.yaml:6:") and terser.startswith("s.yaml:")
    assert "YAML syntax:" in clearer and "YAML syntax:" in terser


def test_both_parsers_read_the_same_values_and_places(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    text = (HEAD + "base: &b {through: Lesson 2}\nmembers:\n"
            + "".join(f"  - {{email: m{n}@example.com, completed: *b}}\n" for n in range(50))
            + "  - email: last@example.com\n    completed: [A, {id: 3}]\n")

    def everything(document: Document) -> list[Any]:
        found: list[Any] = []

        def walk(value: Any, at: tuple[Any, ...]) -> None:
            found.append((at, document.place(at), document.place(at, key=True)))
            items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
            for name, item in items:
                walk(item, (*at, name))

        walk(document.data, ())
        return found

    with_libyaml = one(text)
    monkeypatch.setattr(yamlfile, "SAFE_LOADER", yaml.SafeLoader)
    pure = one(text)
    assert pure.data == with_libyaml.data
    assert everything(pure) == everything(with_libyaml)
    assert with_libyaml.place(("members", 50, "completed", 1, "id")) == (58, 25)


def test_a_large_member_list_loads_with_a_place_for_each_member(parser: str) -> None:
    members = 20_000
    text = HEAD + "members:\n" + "".join(f"  - {{email: m{n}@example.com, completed: {{through: Lesson 12}}}}\n"
                                         for n in range(members))
    doc = one(text)
    assert len(doc.data["members"]) == members
    last, line = ("members", members - 1), text.splitlines()[-1]
    assert doc.place((*last, "email")) == (HEAD.count("\n") + 1 + members, line.index("m19999") + 1)
    assert doc.place((*last, "completed", "through"), key=True) == (HEAD.count("\n") + 1 + members,
                                                                     line.index("through") + 1)
    # The places are a few ints a value (three for each mapping entry, two for each list item), not an object
    # for each node: 11 for each member here.
    assert len(doc.places.cells) <= 11 * members + 100


def test_validate_names_the_place_of_a_duplicate_key_in_a_member(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    members = "".join(f"  - {{email: m{n}@example.com, completed: all}}\n" for n in range(300))
    twice = "  - {email: x@y.co, completed: all, email: z@y.co}\n"
    (tmp_path / "s.yaml").write_text(HEAD + "members:\n" + members + twice)
    code, out, err = run_cli(capsys, "validate", "--offline", "s.yaml")
    assert code == 1 and out == ""
    assert "s.yaml:306:37: duplicate key 'email' (first defined on line 306)" in err and "Traceback" not in err
    (tmp_path / "s.yaml").write_text(HEAD + "members:\n" + members + "  - {email: x@y.co, completed: al}\n")
    code, out, err = run_cli(capsys, "validate", "--offline", "s.yaml")
    assert code == 1 and "s.yaml:306:32: members[300].completed must be" in err


def test_a_cursor_finds_every_place_the_document_finds(parser: str) -> None:
    """Places found from a cursor, and from each item a cursor lists, are the document's own, for every path
    and every split of it (a path that is not there included, and one that runs on past where the data ends)."""
    doc = one("base: &b {x: 1, y: [p, q]}\nmerged: {<<: *b, z: 2}\nlist:\n  - *b\n  - {a: {b: [1, {c: 3}]}}\n"
              "  - plain\n" + "".join(f"big{n}: {n}\n" for n in range(10)) + "empty: []\n")
    paths: list[tuple[Any, ...]] = []

    def collect(value: Any, at: tuple[Any, ...]) -> None:
        # past the end of the data, and on from there to what the data holds elsewhere (which must not be found)
        paths.extend([at, (*at, "missing"), (*at, 7), (*at, "missing", "x"), (*at, 99, 0), (*at, 0, "x")])
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        for name, item in items:
            collect(item, (*at, name))

    collect(doc.data, ())
    for at in paths:
        for split in range(len(at) + 1):
            cursor = doc.cursor(at[:split])
            assert cursor.path == "s.yaml"
            for key in (False, True):
                assert cursor.place(at[split:], key=key) == doc.place(at, key=key), (at, split, key)
                assert cursor.child(at[split:]).place(key=key) == doc.place(at, key=key), (at, split, key)
            assert cursor.problem(at[split:], "m") == doc.problem(at, "m")
        listed = list(doc.cursor(at).items())
        value: Any = doc.data
        for part in at:
            value = value[part] if isinstance(value, dict | list) and _holds(value, part) else None
        assert len(listed) == (len(value) if isinstance(value, list) else 0), at
        for i, item in enumerate(listed):
            for key in (False, True):
                assert item.place(key=key) == doc.place((*at, i), key=key)
                assert item.place(("a", "b", 1, "c"), key=key) == doc.place((*at, i, "a", "b", 1, "c"), key=key)


def _holds(value: dict[Any, Any] | list[Any], part: Any) -> bool:
    return part in value if isinstance(value, dict) else isinstance(part, int) and 0 <= part < len(value)
