"""What a write's answer must be before it is believed: the command envelope. A 200 that is not one (a proxy's
maintenance page, JSON cut short, a success without the new Id) leaves the write's outcome unknown, like a lost
answer: the client says so (AmbiguousWrite) and the caller looks before it goes on; a run stops after a few such
failures in a row rather than spend the day's writes on an outage."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from reconciler.client import AmbiguousWrite, NexudusClient
from reconciler.config import Credentials
from reconciler.state import COMPLETIONS

MAINTENANCE = b"<html><head><title>Down for maintenance</title></head><body>back soon</body></html>"
ENVELOPE = {"Status": 200, "Message": "done", "Value": {"Id": 77}, "WasSuccessful": True, "Errors": None}


def answering(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[NexudusClient, list[httpx.Request]]:
    """A client whose every request is answered by `answer`; the requests it sent."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer(request)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    return NexudusClient("https://x.example", http, credentials=Credentials(token="t")), sent


@pytest.mark.parametrize(("answer", "said"), [
    (httpx.Response(200, content=MAINTENANCE, headers={"Content-Type": "text/html"}),
     "answered 200 with an HTML page ('Down for maintenance'), not the command envelope"),
    (httpx.Response(200, content=b'{"Status": 200, "Message": "CourseCompletedLesson was succ'),
     "answered 200 with JSON cut short or not JSON"),
    (httpx.Response(200, content=b""), "answered 200 with an empty body"),
    (httpx.Response(200, json=[1, 2]), "answered 200 with a list"),
    (httpx.Response(200, json={"Message": "Service Unavailable"}), "answered 200 with an object, not the command"),
])
def test_a_delete_answered_with_no_envelope_is_ambiguous_and_sent_once(answer: httpx.Response, said: str) -> None:
    client, sent = answering(lambda request: answer)
    with pytest.raises(AmbiguousWrite, match="may or may not have been done") as caught:
        client.delete(COMPLETIONS, 5)
    assert said in str(caught.value)
    assert [r.method for r in sent] == ["DELETE"]  # not resent: the caller looks first


def test_a_delete_answered_with_the_envelope_or_no_content_is_done() -> None:
    for answer in (httpx.Response(200, json=ENVELOPE), httpx.Response(204)):
        client, sent = answering(lambda request, answer=answer: answer)  # type: ignore[misc]
        assert client.delete(COMPLETIONS, 5) is True
        assert len(sent) == 1


@pytest.mark.parametrize("answer", [
    httpx.Response(200, content=MAINTENANCE, headers={"Content-Type": "text/html"}),
    httpx.Response(200, json={**ENVELOPE, "Value": None}),  # success, without saying what it made
    httpx.Response(200, json={**ENVELOPE, "Value": {"Id": "77"}}),
])
def test_a_create_answered_without_its_new_id_is_ambiguous_and_sent_once(answer: httpx.Response) -> None:
    client, sent = answering(lambda request: answer)
    with pytest.raises(AmbiguousWrite):
        client.create(COMPLETIONS, {"CourseLessonId": 1, "CourseMemberId": 2})
    assert [r.method for r in sent] == ["POST"]


def test_a_create_answered_with_the_envelope_gives_its_id() -> None:
    client, _ = answering(lambda request: httpx.Response(200, json=ENVELOPE))
    assert client.create(COMPLETIONS, {"CourseLessonId": 1, "CourseMemberId": 2}) == 77
