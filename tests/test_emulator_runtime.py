"""The emulator as a process and in process: serve, seed, persistence, snapshots, the in-process transport."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reconciler.cli import main
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.errors import SeedError
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed, snapshot_document
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import Store

from .conftest import API_SEED, EXAMPLES, EmulatorFactory

COMPLETIONS = "/api/content/coursecompletedlessons"


def test_in_process_transport_serves_the_same_api_without_a_socket() -> None:
    store = Store()
    load_seed(API_SEED, store)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    with httpx.Client(transport=InProcessTransport(app), base_url="http://local") as client:
        body = client.get(COMPLETIONS, params={"size": 2}).json()
        created = client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001}).json()
    assert body["TotalItems"] == 5 and len(body["Records"]) == 2
    assert created["WasSuccessful"] and created["UpdatedBy"] == "local@reconciler"


def test_in_process_lost_response_is_a_transport_error_after_the_write() -> None:
    store = Store()
    load_seed(API_SEED, store)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False, lose_rate=1.0))
    with httpx.Client(transport=InProcessTransport(app), base_url="http://local") as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001})
    assert len(store.rows["coursecompletedlessons"]) == 6


def test_state_persists_across_a_restart(emulator: EmulatorFactory, tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    first = emulator(db=db)
    auth = httpx.post(first.url + "/api/token", data={"grant_type": "password", "username": "admin@example.com",
                                                      "password": "admin-pw"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {auth}"}
    made = httpx.post(first.url + COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001,
                                                     "SystemId": "kept"}, headers=headers).json()["Value"]["Id"]
    httpx.delete(f"{first.url}{COMPLETIONS}/900001", headers=headers)
    first.__exit__(None, None, None)

    second = emulator(seed=None, db=db)  # users come back from the store too
    basic = ("admin@example.com", "admin-pw")
    ids = [r["Id"] for r in httpx.get(second.url + COMPLETIONS, auth=basic).json()["Records"]]
    assert made in ids and 900001 not in ids
    assert httpx.get(f"{second.url}{COMPLETIONS}/{made}", auth=basic).json()["SystemId"] == "kept"
    again = httpx.post(second.url + COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001},
                       auth=basic).json()["Value"]["Id"]
    assert again > made  # ids are never reused, even of deleted records


def test_json_snapshot_round_trip_keeps_ids_and_recomputes_names(tmp_path: Path) -> None:
    source = Store()
    load_seed(API_SEED, source)
    records = {name: [source.render(e, row, full=True) for row in source.iter_rows(name)]
               for name, e in __import__("reconciler.emulator.store", fromlist=["ENTITIES"]).ENTITIES.items()}
    records["coursecompletedlessons"][0]["UnknownKey"] = "ignored"
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snapshot_document(records)))
    copy = Store()
    load_seed(path, copy)
    for name in records:
        assert list(copy.rows[name]) == list(source.rows[name])
    completion = copy.rows["coursecompletedlessons"][900001]
    assert "UnknownKey" not in completion and "CourseLessonTitle" not in completion
    from reconciler.emulator.store import COMPLETION
    assert copy.render(COMPLETION, completion, full=False)["CourseLessonTitle"] == "Safety"


@pytest.mark.parametrize(("content", "message"), [
    ('{"format": "other"}', "not a snapshot"),
    ('{"format": "nexudus-snapshot/1", "coursecompletedlessons": [{"Id": "x"}]}', "whole-number Id"),
    ('{"format": "nexudus-snapshot/1", "courses": [{"Id": 1}, {"Id": 1}]}', "appears twice"),
    ('{"format": "nexudus-snapshot/1", "courses": [{"Id": 1180591620717411303424}]}',
     "courses[0]: Id out of range (a whole number from -9,223,372,036,854,775,808 to 9,223,372,036,854,775,807)"),
    ('{"format": "nexudus-snapshot/1", "courses": [{"Id": 1, "DisplayOrder": -9223372036854775809}]}',
     "courses[0]: DisplayOrder out of range"),
    ('{"format": "nexudus-snapshot/1", "course": []}', "did you mean 'courses'"),
    ('{"format": "nexudus-snapshot/1",\n "courses": [}', "snap.json:2:14: JSON syntax"),
])
def test_bad_snapshots_are_seed_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "snap.json"
    path.write_text(content)
    with pytest.raises(SeedError) as caught:
        load_seed(path, Store())
    assert message in str(caught.value)


@pytest.mark.parametrize(("content", "expected"), [
    ("coworkers:\n  - {name: A, email: a@x.io, colour: red}\n", "seed.yaml:2:30: unknown key 'colour'"),
    ("courses:\n  - title: C\n    members: [nobody@x.io]\n", "seed.yaml:3:15: no coworker 'nobody@x.io'"),
    ("coworkers:\n  - {name: A, email: a@x.io}\ncourses:\n  - title: C\n    lessons: [Welcome]\n"
     "    members:\n      - {email: a@x.io, completed: [Welcom]}\n",
     "seed.yaml:7:37: no lesson 'Welcom' in 'C'; did you mean 'Welcome'?"),
    ("courses:\n  - title: C\n    lessons: [A, A]\n", "seed.yaml:3:18: lesson 'A' is listed twice in this course"),
    ("courses: 5\n", "seed.yaml:1:10: courses must be a list, not a number"),
    ("users:\n  - {email: u@x.io, password: p, roles: [Nope]}\n", "seed.yaml:2:42: users[0].roles[0] 'Nope'"),
])
def test_bad_friendly_seeds_name_the_place(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(content)
    with pytest.raises(SeedError) as caught:
        load_seed(path, Store())
    assert expected in str(caught.value).replace(str(tmp_path) + "/", "")


def test_seeding_a_store_that_holds_records_is_refused(tmp_path: Path) -> None:
    store = Store()
    load_seed(API_SEED, store)
    with pytest.raises(SeedError, match="already holds records"):
        load_seed(API_SEED, store)


def test_emulator_seed_command_loads_the_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "demo.sqlite"
    assert main(["emulator", "seed", str(EXAMPLES / "seed.yaml"), "--db", str(db)]) == 0
    assert "30 coworkers, 5 courses, 27 courselessons" in capsys.readouterr().out
    assert main(["emulator", "seed", str(EXAMPLES / "seed.yaml"), "--db", str(db)]) == 1
    assert "already holds records" in capsys.readouterr().err
    assert main(["emulator", "seed", str(EXAMPLES / "seed.yaml"), "--db", str(db), "--replace"]) == 0


@pytest.mark.parametrize("seed", ["missing.yaml", "bad.yaml", "bad.json"])
@pytest.mark.parametrize("replace", [False, True])
def test_a_seed_that_cannot_be_loaded_is_named_and_leaves_a_full_store_as_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: str, replace: bool) -> None:
    """The file is read and checked before the store is looked at: a missing file is named as missing (not as
    one over a full store), and `--replace` with a file that is refused empties nothing."""
    db = tmp_path / "demo.sqlite"
    assert main(["emulator", "seed", str(EXAMPLES / "seed.yaml"), "--db", str(db)]) == 0
    (tmp_path / "bad.yaml").write_text("courses: [")
    (tmp_path / "bad.json").write_text('{"format": "nope"}')
    capsys.readouterr()
    assert main(["emulator", "seed", str(tmp_path / seed), "--db", str(db), *(["--replace"] if replace else [])]) == 1
    err = capsys.readouterr().err
    assert "already holds records" not in err and f"{seed}:" in err
    assert {"missing.yaml": "cannot read file", "bad.yaml": "YAML syntax",
            "bad.json": "not a snapshot"}[seed] in err, err
    store = Store(str(db))
    try:
        assert len(store.ids("coursecompletedlessons")) == 97 and len(store.ids("coworkers")) == 30
    finally:
        store.close()


def test_a_replace_gives_the_seed_the_ids_an_empty_store_would(tmp_path: Path) -> None:
    fresh, replaced = tmp_path / "fresh.sqlite", tmp_path / "replaced.sqlite"
    assert main(["emulator", "seed", str(EXAMPLES / "seed.yaml"), "--db", str(fresh)]) == 0
    assert main(["emulator", "seed", str(API_SEED), "--db", str(replaced)]) == 0
    assert main(["emulator", "seed", str(EXAMPLES / "seed.yaml"), "--db", str(replaced), "--replace"]) == 0
    stores = Store(str(fresh)), Store(str(replaced))
    try:
        for name in ("coworkers", "courses", "courselessons", "coursemembers", "coursecompletedlessons"):
            assert list(stores[0].ids(name)) == list(stores[1].ids(name)), name
    finally:
        for store in stores:
            store.close()


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("listening on http://127.0.0.1:"), (line, process.stderr.read() if process.stderr else "")
    return process, line.removeprefix("listening on ")


def test_serve_announces_its_url_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "served.sqlite"
    process, url = _start("--db", str(db), "--seed", str(API_SEED), "--user", "ops@example.com:s3cret",
                          "--throttle-status", "429", "--requests-per-minute", "2", "--min-interval-ms", "0")
    try:
        auth = ("ops@example.com", "s3cret")
        assert httpx.get(url + COMPLETIONS, auth=auth).json()["TotalItems"] == 5
        httpx.get(url + COMPLETIONS, auth=auth)
        assert httpx.get(url + COMPLETIONS, auth=auth).status_code == 429
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)  # waits, and closes the pipes
        assert process.returncode == 0
    restarted, url = _start("--db", str(db), "--seed", str(API_SEED), "--limits", "off")
    try:  # the seed is not loaded twice; the seed's users persist
        assert httpx.get(url + COMPLETIONS, auth=("admin@example.com", "admin-pw")).json()["TotalItems"] == 5
    finally:
        restarted.terminate()
        assert "not loaded" in restarted.communicate(timeout=10)[1]


def test_serve_passes_the_variant_flags_to_the_app() -> None:
    process, url = _start("--seed", str(API_SEED), "--no-auth", "--limits", "off", "--deleted-coworker", "10002",
                          "--email-filter", "substring", "--garble", "html", "--create-value", "id")
    try:
        assert httpx.get(url + "/api/spaces/coworkers/10002").status_code == 401
        assert httpx.get(url + "/api/spaces/coworkers", params={"Coworker_Email": "al@"}).json()["TotalItems"] == 2
        assert "Down for maintenance" in httpx.get(url + COMPLETIONS).text
        made = httpx.post(url + COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001}).json()
        assert set(made["Value"]) == {"Id"}
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)  # waits, and closes the pipes
        assert process.returncode == 0


def test_serve_refuses_a_malformed_user_flag() -> None:
    result = subprocess.run([sys.executable, "-m", "reconciler", "emulator", "serve", "--user", "nopassword"],
                            capture_output=True, text=True, timeout=30, env={**os.environ})
    assert result.returncode == 1 and "EMAIL:PASSWORD" in result.stderr and "Traceback" not in result.stderr


def test_a_page_of_1000_from_100000_completions_is_fast_enough_to_benchmark() -> None:
    """Not a timing test: checks the emulator serves a big store correctly, and in bounded time."""
    store = Store()
    load_seed(API_SEED, store)
    rows = [{"Id": 1_000_000 + i, "CourseLessonId": 2001, "CourseMemberId": 50001, "UniqueId": str(i),
             "CreatedOn": "2026-01-01T00:00:00.000Z", "UpdatedOn": "2026-01-01T00:00:00.000Z",
             "UpdatedBy": "x", "IsNew": False, "SystemId": None} for i in range(100_000)]
    store.load("coursecompletedlessons", rows)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    with httpx.Client(transport=InProcessTransport(app), base_url="http://local") as client:
        started = time.perf_counter()
        body = client.get(COMPLETIONS, params={"page": 50, "size": 1000}).json()
        elapsed = time.perf_counter() - started
    assert body["TotalItems"] == 100_005 and len(body["Records"]) == 1000
    assert elapsed < 30  # generous: only catches pathological slowness, never a slow shared machine


@pytest.mark.parametrize("host", ["127.0.0.1", "203.0.113.9"])
def test_serve_on_an_address_it_cannot_listen_on_says_so_in_one_line(host: str) -> None:
    """A port taken by another program, an address not this machine's: `error:` and why, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] if host == "127.0.0.1" else 8080
        result = subprocess.run([sys.executable, "-m", "reconciler", "emulator", "serve", "--host", host, "--port",
                                 str(port)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines() == [f"error: cannot listen on {host}:{port}: "
                                                  + ("Address already in use" if host == "127.0.0.1"
                                                     else "Cannot assign requested address")], result.stderr


def test_serve_on_ipv6_loopback_announces_a_url_that_works() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "emulator", "serve", "--host", "::1", "--port",
                                "0", "--seed", str(API_SEED), "--no-auth", "--limits", "off"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://[::1]:"), line
        assert httpx.get(line.removeprefix("listening on ") + COMPLETIONS).json()["TotalItems"] == 5
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("192.0.2.7", True), ("127.0.0.1", False),
                                              ("localhost", False), ("::1", False)])
def test_serving_beyond_this_machine_without_auth_is_warned_of(
        host: str, warned: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--no-auth` on an address others reach lets anyone read and change every record: said, not refused (a
    container's emulator binds 0.0.0.0 on purpose). The server is not started: what it would bind is recorded."""
    bound: list[str] = []
    monkeypatch.setattr("reconciler.emulator.cli.serve_forever", lambda app, at, port, ready: bound.append(at))
    assert main(["emulator", "serve", "--host", host, "--port", "0", "--no-auth"]) == 0
    assert bound == [host]
    warning = "with --no-auth: anyone who reaches this machine on that port can read and change every record"
    assert (warning in capsys.readouterr().err) == warned
