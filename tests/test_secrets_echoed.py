"""A server that echoes a credential back, a proxy in the environment, a misspelled URL: no secret reaches any
output or file, whole or in part, and the files that hold members' records are the owner's alone."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.client import NexudusClient
from reconciler.config import Credentials
from reconciler.doctor import Wire
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.errors import ApiError, AuthError
from reconciler.redact import MASK, remember

from .conftest import EXAMPLES, example_specs, run_cli

TOKEN = "echoTok-7Hq2Lm9xZ4Rw8Kp3Vn6Bc1Yd5Tf0Gs2Jh"
PASSWORD = "S3cret-Pa55word!"

WsgiApp = Callable[[dict[str, Any], Any], Any]


def echoing(app: WsgiApp) -> WsgiApp:
    """The emulator, with the bearer token it was sent written into every completion it answers with: into the
    list envelope, and into each record (a field of its own)."""
    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if "coursecompletedlessons" not in environ["PATH_INFO"] or environ["REQUEST_METHOD"] != "GET":
            return app(environ, start_response)
        sent = environ.get("HTTP_AUTHORIZATION", "").partition(" ")[2]
        answer: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            answer.update(status=status, headers=headers)

        body = b"".join(app(environ, keep))
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        records = document if isinstance(document, list) else []  # records read by their Ids
        if isinstance(document, dict):
            document["DebugSession"] = sent
            records = document.get("Records") or ([document] if "Id" in document else [])
        for record in records:
            record["Note"] = f"session {sent}"
        body = json.dumps(document).encode() if document is not None else body
        headers = [(k, v) for k, v in answer["headers"] if k.lower() != "content-length"]
        start_response(answer["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]
    return wrapped


@pytest.fixture
def served_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """examples/ as the current folder, its seed served over loopback http by an emulator that echoes the token."""
    store = Store()
    load_seed(EXAMPLES / "seed.yaml", store)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    folder = example_specs(tmp_path / "demo")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("NEXUDUS_TOKEN", TOKEN)
    for name in ("NEXUDUS_USERNAME", "NEXUDUS_PASSWORD", "NEXUDUS_TOTP"):
        monkeypatch.delenv(name, raising=False)
    with BackgroundServer(echoing(app)) as server:  # type: ignore[arg-type]  # (any WSGI app serves)
        monkeypatch.setenv("NEXUDUS_API_URL", server.url)
        yield folder, server.url
    store.close()


def every_file(folder: Path) -> Iterator[tuple[Path, str]]:
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            yield path, data.decode("utf-8", "replace")


def test_a_token_the_server_writes_into_records_reaches_no_file_and_no_output(
        served_demo: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = served_demo
    code, out, err = run_cli(capsys, "apply", "--yes")
    assert code == 0, err
    journals = list((folder / ".reconciler" / "journal").glob("*.jsonl"))
    caches = list((folder / ".reconciler" / "cache").glob("*.gz"))
    assert journals and caches
    deleted = [entry for entry in map(json.loads, journals[0].read_text().splitlines()) if "record" in entry]
    assert any(entry["record"].get("Note") == f"session {MASK}" for entry in deleted), deleted[:2]
    code, again, err2 = run_cli(capsys, "plan", "--detailed-exitcode")  # the cache read back, as written
    assert code == 0, err2
    for path, text in every_file(folder / ".reconciler"):
        assert TOKEN not in text, path
    assert TOKEN not in out + err + again + err2
    for path in journals:  # members' records, whole: the owner's alone
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((folder / ".reconciler" / "locks" / "writes.lock").stat().st_mode) == 0o600


def test_the_local_emulators_store_is_the_owners_alone(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "plan")
    assert code == 0, err
    assert stat.S_IMODE((demo / ".reconciler" / "local.sqlite").stat().st_mode) == 0o600


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_never_carries_plain_http_credentials(
        served_demo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        variable: str) -> None:
    """Plain http goes to loopback alone: a proxy would carry the token across a network in clear."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    received: list[bytes] = []
    done = threading.Event()

    def proxy() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                received.append(connection.recv(65536))
                connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    monkeypatch.setenv(variable, f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        code, out, err = run_cli(capsys, "plan")
    finally:
        done.set()
        thread.join()
        listener.close()
    assert received == [] and code == 0, (received[:1], err)
    assert "Plan:" in out


def test_a_server_text_cut_short_shows_no_part_of_the_token() -> None:
    """An answer's text is shown cut to 200 characters: redacted first, or the cut would leave the secret's start."""
    def handler(request: httpx.Request) -> httpx.Response:
        sent = request.headers["Authorization"].partition(" ")[2]
        return httpx.Response(400, text=("x" * 185) + f" session {sent}")

    client = NexudusClient("https://x.example", httpx.Client(transport=httpx.MockTransport(handler)),
                           credentials=Credentials(token=TOKEN), max_tries=1)
    with pytest.raises(ApiError) as raised:
        client.list_all("/api/content/courses")
    assert TOKEN[:8] not in str(raised.value) and "session [redac" in str(raised.value)


@pytest.mark.parametrize("answer", [
    lambda secret: httpx.Response(200, json=f"{'y' * 50} {secret}"),  # a JSON string, shown cut to 60
    lambda secret: httpx.Response(200, text=f"<html><title>{'t' * 70} {secret}</title></html>",
                                  headers={"Content-Type": "text/html"}),  # a page title, cut to 80
])
def test_other_cut_answers_show_no_part_of_the_token(answer: Callable[[str], httpx.Response]) -> None:
    client = NexudusClient("https://x.example", httpx.Client(transport=httpx.MockTransport(
        lambda request: answer(request.headers["Authorization"].partition(" ")[2]))),
        credentials=Credentials(token=TOKEN), max_tries=1, sleep=lambda seconds: None)
    with pytest.raises(ApiError) as raised:
        client.list_all("/api/content/courses")
    assert TOKEN[:6] not in str(raised.value), str(raised.value)


def test_the_basic_authorization_value_echoed_whole_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        sent = request.headers["Authorization"].partition(" ")[2]
        return httpx.Response(400, json={"Message": f"Credentials {sent} are not valid"})

    client = NexudusClient("https://x.example", httpx.Client(transport=httpx.MockTransport(handler)),
                           credentials=Credentials(username="ops@example.com", password=PASSWORD),
                           auth_mode="basic", max_tries=1)
    with pytest.raises(ApiError) as raised:
        client.list_all("/api/content/courses")
    encoded = base64.b64encode(f"ops@example.com:{PASSWORD}".encode()).decode()
    assert encoded not in str(raised.value) and f"Credentials {MASK} are not valid" in str(raised.value)


@pytest.mark.parametrize(("password", "echoed"), [
    ('pa"ss\\word%&+ =1', lambda pw: "bad credentials " + json.dumps({"pwd": pw})),  # JSON-escaped
    ('pa"ss\\word%&+ =1', lambda pw: f"bad credentials {pw!r}"),  # repr-escaped
    ("Ab1!x", lambda pw: f"The user name or password is incorrect: ops@example.com / {pw}"),  # short
])
def test_a_password_the_token_endpoint_echoes_is_redacted_however_spelled(
        password: str, echoed: Callable[[str], str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_grant", "error_description": echoed(password)})

    client = NexudusClient("https://x.example", httpx.Client(transport=httpx.MockTransport(handler)),
                           credentials=Credentials(username="ops@example.com", password=password), max_tries=1)
    with pytest.raises(AuthError) as raised:
        client.list_all("/api/content/courses")
    message = str(raised.value)
    assert MASK in message and ("bad credentials" in message or "incorrect" in message)
    for spelled in (password, json.dumps(password)[1:-1], repr(password)[1:-1]):
        assert spelled not in message, message


def test_a_short_password_is_blanked_only_where_it_stands_alone() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_grant",
                                         "error_description": "Ab1!xyz is not Ab1!x, nor is xAb1!x"})

    client = NexudusClient("https://x.example", httpx.Client(transport=httpx.MockTransport(handler)),
                           credentials=Credentials(username="ops@example.com", password="Ab1!x"), max_tries=1)
    with pytest.raises(AuthError) as raised:
        client.list_all("/api/content/courses")
    assert str(raised.value).endswith(f"Ab1!xyz is not {MASK}, nor is xAb1!x")


def test_doctor_keeps_no_token_a_throttle_answer_echoes() -> None:
    remember(TOKEN)
    wire = Wire()
    request = httpx.Request("GET", "https://x.example/api/content/courses")
    wire(httpx.Response(429, text=f"{'w' * 100} Wait 1 seconds (client {TOKEN})", request=request,
                        headers={"Retry-After": f"1; session={TOKEN}"}))
    assert wire.throttles and TOKEN[:6] not in repr(wire.throttles)


@pytest.mark.parametrize("where", [["--api", "https//ops:Url-0nly-Pa55@spaces.nexudus.com"],
                                   ["--api", "ops:Url-0nly-Pa55@spaces.nexudus.com"]])
def test_a_misspelled_target_url_is_not_quoted_with_its_password(
        demo: Path, capsys: pytest.CaptureFixture[str], where: list[str]) -> None:
    """(A password no other test makes known: the redactor remembers for the whole process.)"""
    code, out, err = run_cli(capsys, *where, "plan")
    assert code == 1 and "Url-0nly" not in out + err and f"{MASK}@spaces.nexudus.com" in err, err


@pytest.mark.parametrize("token", ["Tökenvalue-secret-123", "Abcdefgh123\nSecondHalfSecret", "tok\x7fsecret-xyz"])
def test_a_token_a_header_cannot_carry_is_a_clear_error(
        served_demo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        token: str) -> None:
    monkeypatch.setenv("NEXUDUS_TOKEN", token)
    code, out, err = run_cli(capsys, "plan")
    assert code == 1 and "NEXUDUS_TOKEN holds a character an HTTP header cannot carry" in err, err
    assert "bug" not in err and "secret" not in out + err
