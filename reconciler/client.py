"""The one place where HTTP happens: auth, pacing, retries, paging and error mapping for the Nexudus API.

Every request goes through `NexudusClient.request`. The client is handed its `httpx.Client` (or a
transport), which is how the in-process emulator and the real service share this code.
"""

from __future__ import annotations

import base64
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from reconciler.config import ClientLimits, Credentials
from reconciler.errors import ApiError, AuthError, NotFoundError, TransportError, ValidationFailed

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
MAX_TRIES = 5
MAX_THROTTLE_WAITS = 30
ENTITY_NAMES = {"coursecompletedlessons": "CourseCompletedLesson", "courses": "Course",
                "courselessons": "CourseLesson", "coursemembers": "CourseMember", "coworkers": "Coworker"}
_WAIT_N = re.compile(r"wait\s+(\d+)\s+second", re.IGNORECASE)
# Errors after which the server may have acted on the request (the answer was lost), as opposed to
# errors that prove it never arrived.
_MAYBE_SENT = (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.WriteError,
               httpx.WriteTimeout)


class DailyCapReached(ApiError):
    """The client-side daily write budget is spent; the apply stops cleanly and says how to resume."""


class AmbiguousWrite(ApiError):
    """A write whose outcome is unknown: the request may have been done, but no answer came back."""


@dataclass
class Stats:
    requests: int = 0
    reads: int = 0
    writes: int = 0
    throttled: int = 0
    retries: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


class Pacer:
    """The client-side budget: waits before a request so that the service never has to throttle it.

    The server counts a request when it arrives, which is some time between our sending it and our
    receiving its answer. So every stamp here is the time the answer came back (an upper bound on the
    arrival), and the next request waits from there: whatever the network's jitter, the server never
    sees two requests closer than the budget allows.
    """

    def __init__(self, limits: ClientLimits, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.limits = limits
        self.clock = clock
        self.sleep = sleep
        self._last: float | None = None
        self._all = [(span, cap, deque[float]()) for span, cap in (
            (60.0, limits.requests_per_minute), (3600.0, limits.requests_per_hour)) if cap]
        self._writes = [(span, cap, deque[float]()) for span, cap in ((60.0, limits.writes_per_minute),) if cap]
        self._day_writes: deque[float] = deque()

    def writes_left_today(self) -> int | None:
        cap = self.limits.writes_per_day
        if not cap:
            return None
        now = self.clock()
        while self._day_writes and self._day_writes[0] <= now - 86400:
            self._day_writes.popleft()
        return cap - len(self._day_writes)

    def before(self, *, write: bool) -> None:
        """Wait until a request may be sent."""
        left = self.writes_left_today() if write else None
        if left is not None and left <= 0:
            raise DailyCapReached(f"the daily write budget of {self.limits.writes_per_day} is spent")
        windows = self._all + (self._writes if write else [])
        while True:
            now = self.clock()
            wait = 0.0
            for span, cap, stamps in windows:
                while stamps and stamps[0] <= now - span:
                    stamps.popleft()
                if len(stamps) >= cap:
                    wait = max(wait, stamps[len(stamps) - cap] + span - now)
            if self._last is not None and self.limits.min_interval_ms:
                wait = max(wait, self._last + self.limits.min_interval_ms / 1000.0 - now)
            if wait <= 0:
                return
            self.sleep(wait)

    def note_past_writes(self, ages: list[float]) -> None:
        """Count writes made `ages` seconds ago (by earlier runs) against the daily and minute budgets."""
        now = self.clock()
        for age in sorted(ages, reverse=True):
            if age < 86400 and self.limits.writes_per_day:
                self._day_writes.append(now - age)
            if age < 60:
                for _, _, stamps in self._writes:
                    stamps.append(now - age)

    def after(self, *, write: bool) -> None:
        """Count a request whose answer (or failure) has just come back."""
        now = self.clock()
        self._last = now
        for _, _, stamps in self._all + (self._writes if write else []):
            stamps.append(now)
        if write and self.limits.writes_per_day:
            self._day_writes.append(now)


class NexudusClient:
    """A paced, retrying, authenticated client for one Nexudus base URL."""

    def __init__(self, base_url: str, http: httpx.Client, *, credentials: Credentials | None = None,
                 auth_mode: str = "token", limits: ClientLimits | None = None, max_tries: int = MAX_TRIES,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.credentials = credentials or Credentials()
        self.auth_mode = auth_mode
        self.pacer = Pacer(limits or ClientLimits(), clock=clock, sleep=sleep)
        self.max_tries = max_tries
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = Stats()
        self._token: str | None = self.credentials.token
        self._refresh: str | None = None
        self._expires: float | None = None
        self._refresh_margin = 0.0

    # --- auth ------------------------------------------------------------------------------------

    def _auth_header(self) -> dict[str, str]:
        creds = self.credentials
        if self.auth_mode == "basic" and creds.username and creds.password:
            raw = f"{creds.username}:{creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self._token is None and creds.username and creds.password:
            self._authenticate()
        elif self._expires is not None and self.clock() > self._expires - self._refresh_margin:
            self._authenticate(refresh=True)
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _authenticate(self, *, refresh: bool = False) -> None:
        creds = self.credentials
        if refresh and self._refresh:
            form = {"grant_type": "refresh_token", "refresh_token": self._refresh}
        elif creds.username and creds.password:
            form = {"grant_type": "password", "username": creds.username, "password": creds.password}
            if creds.totp:
                form["totp"] = creds.totp
        else:
            raise AuthError("the API refused the token in NEXUDUS_TOKEN (401) and there is no NEXUDUS_USERNAME/"
                            "NEXUDUS_PASSWORD to sign in again", url=self.base_url + "/api/token", status=401)
        url = self.base_url + "/api/token"
        self.pacer.before(write=False)
        self.stats.requests += 1
        try:
            reply = self.http.post(url, data=form, headers={"Accept": "application/json"}, timeout=30)
        except httpx.HTTPError as e:
            raise TransportError(f"cannot reach {url}: {type(e).__name__}", method="POST", url=url) from None
        finally:
            self.pacer.after(write=False)
        body = _json_or_none(reply)
        if reply.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            if refresh and creds.username and creds.password:
                self._refresh = None
                self._authenticate()
                return
            detail = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            raise AuthError(f"sign-in to {url} failed ({reply.status_code}): {detail or 'no reason given'}",
                            method="POST", url=url, status=reply.status_code)
        self._token = str(body["access_token"])
        self._refresh = body.get("refresh_token")
        expires_in = body.get("expires_in")
        self._expires = self.clock() + float(expires_in) if isinstance(expires_in, int | float) else None
        # Refresh a little before expiry: a minute for the usual week-long token, less for short ones.
        self._refresh_margin = min(60.0, float(expires_in) / 10) if isinstance(expires_in, int | float) else 0.0

    # --- the choke point ---------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None, retry_unsafe: bool = True) -> httpx.Response:
        """Send one API request with pacing, auth, throttling waits, bounded retries and error mapping.

        `retry_unsafe=False` (creates) never resends after the server may have acted: it raises
        AmbiguousWrite so that the caller can re-read before deciding to try again.
        """
        url = self.base_url + path
        write = method != "GET"
        tries = throttles = 0
        reauthenticated = False
        while True:
            self.pacer.before(write=write)
            headers = {"Accept": "application/json", **self._auth_header()}
            self.stats.requests += 1
            self.stats.by_path[path.split("?")[0]] = self.stats.by_path.get(path.split("?")[0], 0) + 1
            if write:
                self.stats.writes += 1
            else:
                self.stats.reads += 1
            tries += 1
            try:
                reply = self.http.request(method, url, params=params, json=body, headers=headers, timeout=60)
            except httpx.HTTPError as e:
                self.pacer.after(write=write)
                reason = type(e).__name__
                if not retry_unsafe and isinstance(e, _MAYBE_SENT):
                    raise AmbiguousWrite(f"no answer to {method} {url} ({reason}); the write may have been done",
                                         method=method, url=url) from None
                if tries >= self.max_tries:
                    raise TransportError(f"cannot reach {url} after {tries} tries ({reason})",
                                         method=method, url=url) from None
                self._backoff(tries, f"{method} {path}: {reason}")
                continue
            self.pacer.after(write=write)
            status = reply.status_code
            if status in (409, 429) and _is_throttle(reply):
                throttles += 1
                self.stats.throttled += 1
                if throttles > MAX_THROTTLE_WAITS:
                    raise TransportError(f"{url} kept throttling ({throttles} times)", method=method, url=url,
                                         status=status)
                wait = _retry_after(reply)
                log.info("throttled (%s) on %s %s; waiting %.1f s", status, method, path, wait)
                self.sleep(wait)
                tries -= 1
                continue
            if status == 401 and not reauthenticated and (self.credentials.username and self.credentials.password):
                reauthenticated = True
                self._token = None
                self._authenticate()
                tries -= 1
                continue
            if status >= 500:
                if not retry_unsafe:
                    raise AmbiguousWrite(f"{status} from {method} {url}: {_message(reply)}", method=method,
                                         url=url, status=status)
                if tries >= self.max_tries:
                    raise TransportError(f"{status} from {method} {url} after {tries} tries: {_message(reply)}",
                                         method=method, url=url, status=status)
                self._backoff(tries, f"{method} {path}: {status}")
                continue
            return self._check(method, url, path, reply)

    def _backoff(self, tries: int, what: str) -> None:
        self.stats.retries += 1
        delay = min(30.0, 0.5 * 2 ** (tries - 1)) * (0.5 + self.rng.random())
        log.info("retrying %s in %.1f s", what, delay)
        self.sleep(delay)

    def _check(self, method: str, url: str, path: str, reply: httpx.Response) -> httpx.Response:
        status = reply.status_code
        if status == 401:
            action = {"GET": "List" if _is_collection(path) else "Read", "POST": "Create", "PUT": "Edit",
                      "DELETE": "Delete"}.get(method, method)
            entity = ENTITY_NAMES.get(_collection(path), "the entity's")
            raise AuthError(f"401 from {method} {url}: the account needs the {entity}-{action} role or full "
                            "administrator rights (or the credentials are wrong)", method=method, url=url, status=401)
        if status == 404:
            raise NotFoundError(f"404 from {method} {url}", method=method, url=url, status=404)
        if status == 400:
            raise ValidationFailed(f"400 from {method} {url}: {_message(reply)}", method=method, url=url, status=400)
        if status >= 300:
            raise ApiError(f"{status} from {method} {url}: {_message(reply)}", method=method, url=url, status=status)
        if method != "GET":
            body = _json_or_none(reply)
            if isinstance(body, dict) and body.get("WasSuccessful") is False:
                raise ValidationFailed(f"{method} {url} was not successful: {_message(reply)}", method=method,
                                       url=url, status=status)
        return reply

    # --- entity operations -----------------------------------------------------------------------

    def list_all(self, path: str, filters: Mapping[str, Any] | None = None, *,
                 start_page: int = 1) -> Iterator[dict[str, Any]]:
        """Every record of a list endpoint: `page`/`size=1000` (never PageNumber/PageSize), in Id order."""
        page = start_page
        seen_first: set[int] = set()
        while True:
            body, records = self._page(path, filters, page)
            if records:
                first = records[0].get("Id")
                if isinstance(first, int):
                    if first in seen_first or (body.get("CurrentPage") not in (None, page)):
                        raise ApiError(f"GET {self.base_url}{path} returned page {page} again: the server ignores "
                                       "paging; refusing to read an endless or truncated list", method="GET",
                                       url=self.base_url + path)
                    seen_first.add(first)
            yield from records
            total_pages = body.get("TotalPages")
            more = body.get("HasNextPage")
            if not records or not (more is True or (isinstance(total_pages, int) and page < total_pages)):
                return
            page += 1

    def count(self, path: str, filters: Mapping[str, Any] | None = None) -> tuple[int, list[dict[str, Any]]]:
        """TotalItems of a listing and its first page of up to 1000 records, in one request."""
        body, records = self._page(path, filters, 1)
        total = body.get("TotalItems")
        return (total if isinstance(total, int) else len(records)), records

    def _page(self, path: str, filters: Mapping[str, Any] | None, page: int) -> tuple[dict[str, Any],
                                                                                     list[dict[str, Any]]]:
        """One page of a listing (`page`/`size`, never PageNumber/PageSize): the envelope and its records."""
        params = {**(filters or {}), "page": page, "size": PAGE_SIZE, "orderBy": "Id"}
        reply = self.request("GET", path, params=params)
        body = _json_or_none(reply)
        if not isinstance(body, dict) or not isinstance(body.get("Records"), list):
            raise ApiError(f"GET {self.base_url}{path} did not answer with a list envelope", method="GET",
                           url=self.base_url + path, status=reply.status_code)
        return body, [r for r in body["Records"] if isinstance(r, dict)]

    def create(self, path: str, fields: Mapping[str, Any]) -> int:
        """POST a new record and return its Id; AmbiguousWrite if the answer was lost."""
        reply = self.request("POST", path, body=dict(fields), retry_unsafe=False)
        body = _json_or_none(reply)
        value = body.get("Value") if isinstance(body, dict) else None
        new_id = value.get("Id") if isinstance(value, dict) else None
        if not isinstance(new_id, int):
            raise ApiError(f"POST {self.base_url}{path} succeeded without a new Id in Value", method="POST",
                           url=self.base_url + path)
        return new_id

    def delete(self, path: str, record_id: int) -> bool:
        """DELETE a record; True if this call deleted it, False if it was already gone (404)."""
        try:
            self.request("DELETE", f"{path}/{record_id}")
        except NotFoundError:
            return False
        return True

    def get(self, path: str, record_id: int) -> dict[str, Any] | None:
        try:
            body = _json_or_none(self.request("GET", f"{path}/{record_id}"))
        except NotFoundError:
            return None
        return body if isinstance(body, dict) else None


def _collection(path: str) -> str:
    parts = [p for p in path.split("?")[0].split("/") if p]
    return parts[2] if len(parts) >= 3 else ""


def _is_collection(path: str) -> bool:
    return len([p for p in path.split("?")[0].split("/") if p]) == 3


def _json_or_none(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _message(reply: httpx.Response) -> str:
    body = _json_or_none(reply)
    if isinstance(body, dict):
        errors = body.get("Errors")
        if isinstance(errors, list) and errors:
            parts = [f"{e.get('PropertyName') or ''}: {e.get('Message')}".strip(": ") for e in errors
                     if isinstance(e, dict)]
            if parts:
                return "; ".join(parts)
        if body.get("Message"):
            return str(body["Message"])
    if isinstance(body, str):
        return body
    text = reply.text.strip()
    return text[:200] if text else reply.reason_phrase


def _is_throttle(reply: httpx.Response) -> bool:
    """409 is documented as the throttle answer (empty body); a 409 with a command envelope is not."""
    if reply.status_code == 429:
        return True
    body = _json_or_none(reply)
    return not (isinstance(body, dict) and "WasSuccessful" in body)


def _retry_after(reply: httpx.Response) -> float:
    header = reply.headers.get("Retry-After", "").strip()
    if header.isdigit():
        return max(1.0, float(header))
    found = _WAIT_N.search(reply.text or "")
    if found:
        return max(1.0, float(found.group(1)))
    return 1.0


def ceil_pages(count: int) -> int:
    return max(1, math.ceil(count / PAGE_SIZE))
