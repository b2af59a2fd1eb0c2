"""The -vv HTTP trace and the one redactor: every request traced, no credential in any output or error."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.cli import main
from reconciler.client import NexudusClient
from reconciler.config import Credentials
from reconciler.emulator.app import EmulatorApp, Settings, User
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account, load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.errors import ApiError, TransportError, ValidationFailed
from reconciler.redact import MASK, RedactingFilter, redact

from .conftest import API_SEED, EXAMPLES, example_specs, run_cli

USER = "trace.admin@example.com"
PASSWORD = "trace-Pw-Secret-9931"


class TokenRecordingApp(EmulatorApp):
    """The emulator, keeping every token it hands out, so that a test can look for them in the output."""

    issued: list[str]

    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        body = super().__call__(environ, start_response)
        if str(environ.get("PATH_INFO", "")).rstrip("/").lower() == "/api/token":
            answer = json.loads(b"".join(body) or b"{}")
            self.issued = [*getattr(self, "issued", []),
                           *(answer[k] for k in ("access_token", "refresh_token") if isinstance(answer.get(k), str))]
        return body


def test_apply_at_vv_traces_every_request_and_shows_no_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store = Store()
    seed = EXAMPLES / "seed.yaml"
    load_seed(seed, store)
    app = TokenRecordingApp(store, Settings(limits=Limits.off()), users=[User.from_account(account(USER, PASSWORD))])
    work = example_specs(tmp_path / "work")
    monkeypatch.chdir(work)
    monkeypatch.setenv("NEXUDUS_USERNAME", USER)
    monkeypatch.setenv("NEXUDUS_PASSWORD", PASSWORD)
    monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
    monkeypatch.delenv("NEXUDUS_TOKEN", raising=False)
    with BackgroundServer(app) as server:
        (work / "reconciler.yaml").write_text(f"target: {server.url}\n")
        code = main(["-vv", "apply", "--yes"])
        captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 0, output
    trace = [line for line in captured.err.splitlines() if line.startswith(("GET ", "POST ", "DELETE "))]
    assert any(re.fullmatch(r"POST http://127\.0\.0\.1:\d+/api/token 200 \d+ ms", line) for line in trace), trace
    lists = [line for line in trace if re.fullmatch(r"GET http://127\.0\.0\.1:\d+/api/\S+\?\S*page=1&size=\d+\S* "
                                                    r"200 \d+ ms.*", line)]
    writes = [line for line in trace if re.match(r"(POST|DELETE) \S+/api/content/coursecompletedlessons\S* 20\d ",
                                                 line)]
    assert lists and writes, trace
    assert len(trace) >= len(lists) + len(writes) + 1
    assert len(app.issued) >= 2  # an access and a refresh token were handed out
    for secret in (PASSWORD, *app.issued):
        assert secret not in output


def test_a_url_with_user_and_password_is_redacted_in_errors() -> None:
    with httpx.Client() as http:
        client = NexudusClient("http://ops:url-Secret-4411@127.0.0.1:9", http, max_tries=2, sleep=lambda s: None)
        with pytest.raises(TransportError) as raised:
            client.list_all("/api/content/courses")
    assert "url-Secret-4411" not in str(raised.value) and "url-Secret-4411" not in raised.value.url
    assert f"http://{MASK}@127.0.0.1:9/api/content/courses" in str(raised.value)


def test_a_server_echoing_the_token_in_a_400_body_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    token, refresh = "acc-Tok-8c1f2e9a77", "ref-Tok-55e0d1b3aa"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/token":
            return httpx.Response(200, json={"access_token": token, "refresh_token": refresh, "expires_in": 3600})
        sent = request.headers["Authorization"]
        return httpx.Response(400, json={"Message": f"bad header {sent!r}; token {token}, refresh {refresh}"})

    caplog.set_level(logging.DEBUG, logger="reconciler")
    caplog.set_level(logging.DEBUG, logger="reconciler.http")
    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = NexudusClient("https://x.example", http, credentials=Credentials(username="a@example.com",
                                                                             password="pw-Echo-1234"))
    with pytest.raises(ValidationFailed) as raised:
        client.create("/api/content/coursecompletedlessons", {"CourseLessonId": 1})
    message = str(raised.value)
    assert message.startswith("400 from POST https://x.example/api/content/coursecompletedlessons: bad header")
    assert MASK in message
    for secret in (token, refresh, "pw-Echo-1234"):
        assert secret not in message and secret not in caplog.text
    assert "POST https://x.example/api/content/coursecompletedlessons 400" in caplog.text


def test_the_token_grant_goes_through_the_choke_point(caplog: pytest.LogCaptureFixture) -> None:
    """A 503 from the token endpoint is retried with backoff, paced and traced like any request."""
    answers = iter([httpx.Response(503, text="busy"),
                    httpx.Response(200, json={"access_token": "tok-Grant-0f9e8d7c", "expires_in": 3600}),
                    httpx.Response(200, json={"Records": [], "TotalItems": 0})])
    waits: list[float] = []
    caplog.set_level(logging.DEBUG, logger="reconciler")
    caplog.set_level(logging.DEBUG, logger="reconciler.http")
    http = httpx.Client(transport=httpx.MockTransport(lambda request: next(answers)))
    client = NexudusClient("https://x.example", http, credentials=Credentials(username="a@example.com",
                                                                             password="pw-Grant-5678"),
                           sleep=waits.append)
    assert client.list_all("/api/content/courses") == []
    assert len(waits) == 1 and client.stats.retries == 1 and client.stats.requests == 3
    grants = [r.getMessage() for r in caplog.records if r.name == "reconciler.http" and "/api/token" in r.getMessage()]
    assert grants[0].startswith("POST https://x.example/api/token 503 ")
    assert re.fullmatch(r"POST https://x\.example/api/token 200 \d+ ms \(try 2, waited [\d.]+ s\)", grants[1])
    assert "tok-Grant-0f9e8d7c" not in caplog.text and "pw-Grant-5678" not in caplog.text


@pytest.mark.parametrize(("text", "secret"), [
    ("Authorization: Bearer eyJhbGciOi.J9xyz-_", "eyJhbGciOi.J9xyz-_"),
    ("Authorization: Basic b3BzOnB3LXNlY3JldA==", "b3BzOnB3LXNlY3JldA=="),
    ("cannot reach https://ops:hunter-22@api.example/x", "hunter-22"),
    ("grant_type=password&username=a&password=p%40ss-Word&totp=123456", "p%40ss-Word"),
    ("grant_type=password&username=a&password=p&totp=123456", "123456"),
    ('{"access_token": "abc.def-ghi", "token_type": "bearer"}', "abc.def-ghi"),
    ('{"refresh_token":"r3fr3sh-value"}', "r3fr3sh-value"),
])
def test_the_redactor_removes_credentials_by_their_shape(text: str, secret: str) -> None:
    assert secret not in redact(text) and MASK in redact(text)


def test_the_redactor_leaves_ordinary_text_alone() -> None:
    text = "GET https://x.example/api/content/courses?page=2&size=1000&orderBy=Id 200 12 ms (try 2)"
    assert redact(text) == text
    assert redact("the target wants Basic authentication, not a bearer token") == \
        "the target wants Basic authentication, not a bearer token"
    assert redact("token abc-Secret-1 expired", ["abc-Secret-1"]) == f"token {MASK} expired"


def test_errors_keep_their_type_and_context_after_redaction() -> None:
    with httpx.Client() as http:
        client = NexudusClient("http://127.0.0.1:9", http, max_tries=1, sleep=lambda s: None)
        with pytest.raises(ApiError) as raised:
            client.get("/api/content/courses", 1)
    assert isinstance(raised.value, TransportError) and raised.value.method == "GET"
    assert raised.value.url == "http://127.0.0.1:9/api/content/courses/1"
    assert API_SEED.exists()


def test_the_log_filter_redacts_a_record_and_keeps_it() -> None:
    record = logging.LogRecord("reconciler", logging.INFO, __file__, 1, "retrying %s with %s", ("GET /x",
                               "Authorization: Bearer tok-Filter-1234"), None)
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == f"retrying GET /x with Authorization: Bearer {MASK}"


def test_v_explains_the_read_decisions_and_vv_adds_the_trace(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "-v", "plan", "makerspace.yaml")
    assert code == 0
    assert "of 1 course(s): filtered per course (CourseLesson_Course)" in err
    assert "the filter CourseMember_Course on /api/content/coursemembers is honoured" in err
    assert re.search(r"read /api/content/coursecompletedlessons: [\d,]+ records in 1 page of up to 1000", err)
    assert "completions: " in err
    assert not re.search(r"^GET ", err, re.MULTILINE)  # the trace is -vv's
    code, _, err = run_cli(capsys, "-vv", "plan", "makerspace.yaml")
    assert code == 0 and re.search(r"^GET http://\S+/api/content/courses\?page=1&size=1000&orderBy=Id 200 \d+ ms$", err,
                                   re.MULTILINE)
