"""The emulator and JSON at its edges: a snapshot seeds by its content whatever its layout, JSON nested too deeply or
holding numbers that are not finite is a clear error at its place (never a bug report or a 500), and every answer
the emulator writes is JSON as RFC 8259 has it."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import reconciler.emulator.seed as emulator_seed
from reconciler.emulator.store import Store

from .conftest import EmulatorFactory, run_cli

COMPLETIONS = "/api/content/coursecompletedlessons"
MEMBERS = "/api/content/coursemembers"
ADMIN = ("admin@example.com", "admin-pw")
COLLECTIONS = ("coworkers", "courses", "courselessons", "coursemembers", "coursecompletedlessons")


def strict_json(text: str) -> Any:
    """`text` read as RFC 8259 JSON: NaN, Infinity and -Infinity are refused (Python's reader takes them)."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def records_of(db: Path) -> dict[str, dict[int, dict[str, Any]]]:
    store = Store(str(db))
    try:
        return {name: {i: dict(row) for i, row in store.rows[name].items()} for name in COLLECTIONS}
    finally:
        store.close()


def seed(capsys: pytest.CaptureFixture[str], snapshot: Path, db: Path) -> tuple[int, str]:
    """`reconciler emulator seed SNAPSHOT --db DB`: its exit code and standard error."""
    code, _, err = run_cli(capsys, "emulator", "seed", str(snapshot), "--db", str(db))
    return code, err


@pytest.fixture
def snapshot(demo: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A snapshot of the demo's seed, as `reconciler snapshot` writes it (one record a line)."""
    code, _, err = run_cli(capsys, "snapshot", "--out", "s.json")
    assert code == 0, err
    return demo / "s.json"


# --- a snapshot is JSON by content, not layout ----------------------------------------------------------------

def relaid(document: dict[str, Any], layout: str) -> str:
    if layout == "indent=2":
        return json.dumps(document, indent=2)
    if layout == "one line":
        return json.dumps(document)
    if layout == "keys reversed, tabs":
        return json.dumps(dict(reversed(list(document.items()))), indent="\t")
    if layout == "records indented, blank lines":  # the tool's layout, but for its whitespace
        lines = ["{", f'  "format" : {json.dumps(document["format"])} ,']
        names = [name for name in document if name != "format"]
        for n, name in enumerate(names):
            lines.append(f"\t{json.dumps(name)}:\t[")
            records = document[name]
            lines += [f"        {json.dumps(r)}{',' if i < len(records) - 1 else ''}  " for i, r in enumerate(records)]
            lines += ["", "    ]" + ("," if n < len(names) - 1 else "")]
        return "\r\n".join([*lines, "}", "", ""])
    raise AssertionError(layout)


@pytest.mark.parametrize("layout", ["indent=2", "one line", "keys reversed, tabs", "records indented, blank lines"])
def test_a_snapshot_in_any_json_layout_seeds_the_same_records(snapshot: Path, capsys: pytest.CaptureFixture[str],
                                                              layout: str) -> None:
    assert seed(capsys, snapshot, snapshot.parent / "own.sqlite")[0] == 0
    other = snapshot.parent / "other.json"
    other.write_text(relaid(json.loads(snapshot.read_text()), layout), newline="")
    code, err = seed(capsys, other, snapshot.parent / "other.sqlite")
    assert code == 0, err
    loaded = records_of(snapshot.parent / "other.sqlite")
    assert loaded == records_of(snapshot.parent / "own.sqlite")
    assert len(loaded["coursecompletedlessons"]) == 97


def test_a_pretty_printed_snapshot_as_the_configured_seed_connects_the_local_target(
        snapshot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (snapshot.parent / "p.json").write_text(json.dumps(json.loads(snapshot.read_text()), indent=2))
    shutil.rmtree(snapshot.parent / ".reconciler")
    (snapshot.parent / "reconciler.yaml").write_text("target: local\nseed: p.json\n")
    code, _, err = run_cli(capsys, "snapshot", "--out", "again.json")
    assert code == 0, err
    assert json.loads((snapshot.parent / "again.json").read_text()) == json.loads(snapshot.read_text())


def without_a_comma(text: str) -> str:
    return text.replace('"Id": 900002,', '"Id": 900002', 1)  # inside a completion


def records_without_a_comma(text: str) -> str:
    return re.sub(r"\},(\s*\n\s*\{)", r"}\1", text, count=1)  # between the first two records


def comma_before_the_end(text: str) -> str:
    last = list(re.finditer(r"\}\s*\n\s*\]", text))[-1].start() + 1  # after the last record
    return text[:last] + "," + text[last:]


@pytest.mark.parametrize("layout", ["indent=2", "own"])
@pytest.mark.parametrize("spoil", [without_a_comma, records_without_a_comma, comma_before_the_end])
def test_a_malformed_snapshot_names_the_line_and_column(snapshot: Path, capsys: pytest.CaptureFixture[str],
                                                        layout: str, spoil: Callable[[str], str]) -> None:
    """Wherever the one-record-a-line reading stops, the error is JSON's own, at JSON's place."""
    text = snapshot.read_text() if layout == "own" else json.dumps(json.loads(snapshot.read_text()), indent=2)
    broken = spoil(text)
    assert broken != text
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(broken)
    path = snapshot.parent / "broken.json"
    path.write_text(broken)
    code, err = seed(capsys, path, snapshot.parent / "x.sqlite")
    assert code == 1
    found = expected.value
    assert f"broken.json:{found.lineno}:{found.colno}: JSON syntax: {found.msg}" in err, err


def test_a_snapshot_too_large_to_parse_whole_must_have_the_tools_layout(snapshot: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-record-a-line layout is read a line at a time within MAX_SNAPSHOT_BYTES; any other is parsed whole,
    within MAX_FILE_BYTES (never an unbounded file held at once)."""
    pretty = snapshot.parent / "p.json"
    pretty.write_text(json.dumps(json.loads(snapshot.read_text()), indent=2))
    monkeypatch.setattr(emulator_seed, "MAX_FILE_BYTES", 1000)  # far below either file's size
    assert seed(capsys, snapshot, snapshot.parent / "own.sqlite")[0] == 0
    code, err = seed(capsys, pretty, snapshot.parent / "p.sqlite")
    assert code == 1
    assert "p.json:4:5: this line is not one whole record: a snapshot of more than 1,000 bytes is read a record " \
           "a line, laid out as `reconciler snapshot` writes it" in err


# --- nesting ---------------------------------------------------------------------------------------------------

def test_json_nested_far_too_deeply_is_the_files_error_not_a_bug(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    code, err = seed(capsys, path, tmp_path / "x.sqlite")
    assert code == 1 and "bug" not in err
    assert "d.json:1:201: JSON nested more than 200 levels deep" in err


def with_title(snapshot: Path, title: str, layout: str) -> str:
    """The snapshot with its first course's Title replaced by `title` (JSON text), in `layout`."""
    if layout == "own":
        text = snapshot.read_text()
        start = text.index('"Title": ', text.index('"courses"')) + len('"Title": ')
        return text[:start] + title + text[text.index(", ", start):]
    document = json.loads(snapshot.read_text())
    document["courses"][0]["Title"] = "TITLE"
    return json.dumps(document, indent=2).replace('"TITLE"', title)


@pytest.mark.parametrize("layout", ["own", "indent=2"])
@pytest.mark.parametrize("levels", [197, 198, 100_000])
def test_a_snapshot_nests_at_most_200_levels_in_any_layout(snapshot: Path, capsys: pytest.CaptureFixture[str],
                                                           layout: str, levels: int) -> None:
    """A record sits 3 levels down (the document, its list, the record): a Title of 197 levels makes 200."""
    path = snapshot.parent / "deep.json"
    path.write_text(with_title(snapshot, "[" * levels + "]" * levels, layout))
    code, err = seed(capsys, path, snapshot.parent / "deep.sqlite")
    if levels == 197:
        assert code == 0, err
        return
    line = next(n for n, text in enumerate(path.read_text().split("\n"), start=1) if "[[[" in text)
    column = path.read_text().split("\n")[line - 1].index("[") + 1 + 197
    assert code == 1 and "bug" not in err
    assert f"deep.json:{line}:{column}: JSON nested more than 200 levels deep" in err


def test_a_deeply_nested_configured_seed_is_named_not_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.json").write_text('{\n"format": "nexudus-snapshot/1",\n"courses": ' + "[" * 100_000 + "]" * 100_000
                                     + "\n}\n")
    (tmp_path / "reconciler.yaml").write_text("target: local\nseed: d.json\n")
    code, _, err = run_cli(capsys, "snapshot", "--out", "s.json")
    assert code == 1 and "bug" not in err
    assert "d.json:3:211: JSON nested more than 200 levels deep" in err


# --- numbers that are not finite ---------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["own", "indent=2"])
@pytest.mark.parametrize(("number", "message"), [
    ("NaN", "JSON has no NaN: a number must be finite"),
    ("Infinity", "JSON has no Infinity: a number must be finite"),
    ("-Infinity", "JSON has no -Infinity: a number must be finite"),
    ("1e400", "the number 1e400 is too large to be read as a finite number"),
    ("9" * 5000, "the number 999999999999… has more than 4,300 digits"),
])
def test_a_number_a_snapshot_cannot_hold_is_named_at_its_place(snapshot: Path, capsys: pytest.CaptureFixture[str],
                                                               layout: str, number: str, message: str) -> None:
    path = snapshot.parent / "n.json"
    path.write_text(with_title(snapshot, f"[1, {number}]", layout))
    code, err = seed(capsys, path, snapshot.parent / "n.sqlite")
    line = next(n for n, text in enumerate(path.read_text().split("\n"), start=1) if "[1, " in text)
    column = path.read_text().split("\n")[line - 1].index("[1, ") + 5
    assert code == 1 and "bug" not in err
    assert f"n.json:{line}:{column}: {message}" in err


@pytest.mark.parametrize("data", ["NaN", "[" * 100_000 + "]" * 100_000])
def test_a_store_file_changed_by_hand_is_an_error_not_a_bug(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            data: str) -> None:
    db = tmp_path / "state.sqlite"
    Store(str(db)).close()
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO courses (Id, data) VALUES (1, ?)", (data,))
    connection.close()
    code, err = seed(capsys, tmp_path / "none.json", db)
    assert code == 1 and "bug" not in err
    assert "the table courses holds a row the emulator did not write" in err


# --- the HTTP app: bodies nested too deeply, numbers that do not fit, answers always JSON ----------------------

def post(server_url: str, path: str, body: str | bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(server_url + path, content=body, auth=ADMIN, headers={"Content-Type": content_type})


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E+400", "NaN", "Infinity", "-Infinity"])
def test_a_number_that_is_not_finite_does_not_fit_an_integer_field(emulator: EmulatorFactory, number: str) -> None:
    server = emulator()
    reply = post(server.url, COMPLETIONS, f'{{"CourseLessonId": {number}, "CourseMemberId": 50001}}')
    assert reply.status_code == 400
    answer = strict_json(reply.text)
    assert answer["Message"] == "CourseLessonId: The value is not valid for CourseLessonId."
    assert answer["Errors"] == [{"AttemptedValue": number, "Message": "The value is not valid for CourseLessonId.",
                                 "PropertyName": "CourseLessonId"}]
    assert answer["WasSuccessful"] is False and answer["Value"] is None


@pytest.mark.parametrize(("path", "body", "prop", "attempted"), [
    (MEMBERS, '{"CourseId": 102, "CoworkerId": NaN}', "CoworkerId", "NaN"),
    (MEMBERS, '{"CourseId": 102, "CoworkerId": 10001, "Approved": Infinity}', "Approved", "Infinity"),
    (COMPLETIONS, '{"CourseLessonId": 2001, "CourseMemberId": 50001, "SystemId": 1e999}', "SystemId", "1e999"),
    (COMPLETIONS, "[1e400, -Infinity]", "", ["1e400", "-Infinity"]),
])
def test_every_answer_to_a_number_that_is_not_finite_is_json(emulator: EmulatorFactory, path: str, body: str,
                                                             prop: str, attempted: Any) -> None:
    server = emulator()
    reply = post(server.url, path, body)
    assert reply.status_code == 400
    error = strict_json(reply.text)["Errors"][0]
    assert error["PropertyName"] == prop and error["AttemptedValue"] == attempted


@pytest.mark.parametrize(("body", "message"), [
    ("[" * 100_000 + "]" * 100_000, "The request body is not valid JSON: it nests more than 64 levels deep."),
    ('{"a":' * 65 + "1" + "}" * 65, "The request body is not valid JSON: it nests more than 64 levels deep."),
    ('{"a":' * 64 + "1" + "}" * 64, "CourseMemberId: The CourseMemberId field is required."),
    ("[" * 100_000, "The request body is not valid JSON: it nests more than 64 levels deep."),
])
def test_a_deeply_nested_body_gets_the_validation_answer(emulator: EmulatorFactory, body: str, message: str) -> None:
    server = emulator()
    for path in (COMPLETIONS, MEMBERS):
        reply = post(server.url, path, body)
        assert reply.status_code == 400, reply.text
        answer = strict_json(reply.text)
        assert answer["WasSuccessful"] is False and "Traceback" not in reply.text
        if path == COMPLETIONS:
            assert answer["Message"] == message
    made = post(server.url, COMPLETIONS, '{"CourseLessonId": 2001, "CourseMemberId": 50001}')
    assert made.status_code == 200 and strict_json(made.text)["WasSuccessful"] is True


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_a_deeply_nested_token_request_is_a_400_in_json(emulator: EmulatorFactory, content_type: str) -> None:
    server = emulator()
    reply = httpx.post(server.url + "/api/token", content="[" * 100_000 + "]" * 100_000,
                       headers={"Content-Type": content_type})
    assert reply.status_code == 400
    assert strict_json(reply.text) == {"error": "unsupported_grant_type"}


@pytest.mark.parametrize("ids", ["[" * 5000, "[1e400]", "[NaN]"])
def test_a_batch_get_of_ids_that_are_not_ids_is_a_validation_error(emulator: EmulatorFactory, ids: str) -> None:
    server = emulator()
    reply = httpx.get(server.url + COMPLETIONS, params={"id": ids}, auth=ADMIN)
    assert reply.status_code == 400
    error = strict_json(reply.text)["Errors"][0]
    assert error["PropertyName"] == "id" and error["AttemptedValue"] == ids
