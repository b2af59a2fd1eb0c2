"""The emulator's WSGI application: Nexudus's routes, envelopes, auth, throttling and faults.

Everything here follows ../shared/nexudus-api.md; where that page lists two forms of a behaviour, a
`Settings` field chooses which one the emulator produces.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gc
import hashlib
import hmac
import itertools
import json
import logging
import math
import random
import re
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any, Literal
from urllib.parse import parse_qsl

from reconciler.emulator.limits import Limits, RateLimiter, wait_figure, whole_seconds
from reconciler.emulator.store import (
    COMPLETION,
    COURSE_MEMBER,
    COWORKER,
    ENTITIES,
    ID_BLOCKS,
    DateForm,
    Entity,
    Row,
    Store,
    precise_timestamp,
    render_timestamp,
    timestamp_instant,
)

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

OOPS = "Ooops! There was a problem while running this action. Please try again or contact support."
DENIED = "Authorization has been denied for this request."
ACCESS_DENIED = "Access Denied."
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 25
TOKEN_TTL = 604799
REFRESH_TTL = 15 * 86400
MAX_BODY = 1_000_000
# The deepest request body read: ASP.NET's JSON readers (System.Text.Json, Json.NET) refuse deeper ones by default.
MAX_BODY_DEPTH = 64
SELECTIONS_KEPT = 8  # filtered list selections kept for the pages that follow (each up to a table's Ids)
# The request's headers as sent, names unchanged: set by server.py, since WSGI servers drop `client_id`.
RAW_HEADERS = "emulator.raw_headers"
LIE = 1000  # how many records `garble="lying-total"` adds to TotalItems
OUTAGE_PAGE = b"<html><head><title>Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>"
MAINTENANCE_PAGE = (b"<html><head><title>Nexudus</title></head><body><h1>Down for maintenance</h1>"
                    b"<p>We will be back shortly.</p></body></html>")
Garble = Literal["html", "truncated", "string-ids", "lying-total", "low-total", "no-counts", "no-total",
                 "total-only", "missing-field", "endless"]
ToBound = Literal["whole-minute", "at-or-before", "before"]
FromBound = Literal["at-or-after", "after"]
SystemIdInLists = Literal["yes", "absent", "null"]
EnrolmentDelete = Literal["blocked", "cascade"]
BatchGet = Literal["honoured", "ignored"]
AnswerGarble = Literal["html", "truncated"]
BLOCKED_DELETE = "You must delete all CourseCompletedLessons using this record before you can delete it."
# Who stamps the records another writer makes: an administrator between a reader's pages (`churn_between_pages`).
OTHER_WRITER = "other.admin@example.com"


class ConnectionLost(ConnectionAbortedError):
    """Raised by the app after a write, so the server closes the connection without answering.

    werkzeug treats a ConnectionError from the app as a dropped connection; the in-process transport
    turns it into the httpx error a real dropped connection gives.
    """


@dataclass
class Settings:
    """How this emulator behaves where the real service is documented more than one way, and its faults.

    Read on every request, so a test may change a field of `app.settings` while the server runs (except
    `limits` and `rng_seed`, which are taken when the app is made).
    """

    limits: Limits = field(default_factory=Limits)
    throttle_status: Literal[409, 429] = 409
    retry_after_header: bool = True
    throttle_wait_seconds: float | None = None
    latency_ms: int = 0
    fail_rate: float = 0.0
    lose_rate: float = 0.0
    unsuccessful_rate: float = 0.0
    rng_seed: int | None = None
    require_auth: bool = True
    token_ttl: int = TOKEN_TTL
    totp_single_use: bool = True
    create_value: Literal["id", "record"] = "record"
    envelope: Literal["legacy", "modern"] = "legacy"
    dir_one_means: Literal["ascending", "descending"] = "ascending"
    sort_direction_style: Literal["number", "text"] = "number"
    max_page_size: int = MAX_PAGE_SIZE
    report_requested_size: bool = False
    email_filter: Literal["substring", "exact", "exact-case"] = "exact"
    ignored_filters: frozenset[str] = frozenset()
    deleted_coworkers: frozenset[int] = frozenset()
    stale_reference_status: Literal[400, 401] = 400
    read_outage_seconds: float = 0.0
    outage_collections: frozenset[str] = frozenset({"coursecompletedlessons"})
    garble: Garble | None = None
    date_style: Literal["live", "millis"] = "live"
    id_allocation: Literal["sequential", "blocks"] = "sequential"
    keep_system_id: bool = True
    # Whether completion (and every other) list records carry SystemId is unknown live: `yes`, the key left out
    # (`absent`), or the key with `null` (`null`); get-by-id and create's Value keep it either way.
    system_id_in_lists: SystemIdInLists = "yes"
    refuse_duplicates: bool = False
    # Deleting an enrolment that still has completions: refused with a 200 `WasSuccessful: false` (as blocked
    # deletes of other entities are seen), or done with its completions (unknown live).
    enrolment_delete: EnrolmentDelete = "blocked"
    # `?id=[1,2,3]` answers a JSON array (docs), or is ignored like any query name the server does not know.
    batch_get: BatchGet = "honoured"
    # Writes (POST, PUT, DELETE) answered by a proxy's 200 HTML page and not done (`html`), or done and their
    # answer cut after half its bytes (`truncated`), for the share `write_garble_rate` of them.
    write_garble: AnswerGarble | None = None
    write_garble_rate: float = 1.0
    # The share of writes answered 500 "Ooops" and not done (`fail_rate` hits reads as well).
    write_fail_rate: float = 0.0
    # Get-by-id of the outage collections spoiled as `write_garble` spoils writes, for the share `get_garble_rate`.
    get_garble: AnswerGarble | None = None
    get_garble_rate: float = 1.0
    # Another writer between a reader's pages: before each completion list page from page 2 on, this many
    # times, the completion with the smallest Id is deleted and a new one created (so offset paging shifts).
    churn_between_pages: int = 0
    # The Members Portal completing a "Visited" lesson again: a completion deleted over the API comes back at once
    # as a new record of the same member and lesson.
    recreate_deleted: bool = False
    clock_offset_seconds: float = 0.0
    # Minutes before now that a record created over the API is stamped (CreatedOn, UpdatedOn): a writer whose
    # clock is behind, or a stamp set back (the read cache's hardest case).
    backdate_minutes: tuple[float, float] = (0.0, 0.0)
    # What a date filter's bound `YYYY-MM-DDTHH:mm` takes in (the API page does not say): `to_X` the whole minute X
    # (`whole-minute`), or up to X:00:00 with it (`at-or-before`, a DateTime compare) or without it (`before`);
    # `from_X` from X:00:00 with it (`at-or-after`) or without it (`after`).
    to_bound: ToBound = "whole-minute"
    from_bound: FromBound = "at-or-after"


@dataclass(frozen=True)
class User:
    email: str
    password_hash: str
    admin: bool = False
    roles: frozenset[str] = frozenset()
    totp: str | None = None
    # The account must set a new password before it may sign in (the token endpoint's `must_reset_password`).
    must_reset_password: bool = False

    @staticmethod
    def hash_password(password: str, salt: str | None = None) -> str:
        salt = salt or secrets.token_hex(8)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000).hex()
        return f"{salt}${digest}"

    def check_password(self, password: str) -> bool:
        salt, _, _ = self.password_hash.partition("$")
        return hmac.compare_digest(self.hash_password(password, salt), self.password_hash)

    @classmethod
    def from_account(cls, saved: Row) -> User:
        return cls(saved["email"], saved["password_hash"], bool(saved.get("admin")),
                   frozenset(saved.get("roles") or ()), saved.get("totp"), bool(saved.get("must_reset_password")))

    def may(self, permission: str) -> bool:
        return self.admin or permission in self.roles


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """An answer in JSON. No request can put a number that is not finite in a record or an error (`parse_body`,
    `shown_value`), so none goes out as `NaN` or `Infinity` (not JSON) unless a test put one in the store itself, to
    play a server that sends them (Python's reader, and so the client, takes them)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, [("Content-Type", "application/json; charset=utf-8"), *headers])


class NonFinite(float):
    """A number a request body sent that is not a finite float (`1e400`, or `NaN`, `Infinity`, `-Infinity`, which
    are not JSON but which Python's reader takes in): kept with its text, so that a field refuses it as a value
    that does not fit, and an error shows it as it was sent."""

    text: str

    def __new__(cls, text: str) -> NonFinite:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _body_number(text: str) -> float:
    number = float(text)
    return number if math.isfinite(number) else NonFinite(text)


_BODY_DECODER = json.JSONDecoder(parse_float=_body_number, parse_constant=NonFinite)


def nesting_depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (a scalar: 0), without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in children)
    return deepest


def parse_body(raw: bytes) -> Any:
    """A request body's JSON value (None for an empty body), its numbers that are not finite as NonFinite;
    BadRequest, the validation shape, for a body that is not JSON or nests deeper than ASP.NET reads."""
    too_deep = f"The request body is not valid JSON: it nests more than {MAX_BODY_DEPTH} levels deep."
    try:
        value = _BODY_DECODER.decode(raw.decode("utf-8")) if raw.strip() else None
    except RecursionError:  # nested far past MAX_BODY_DEPTH: refused as the deep body it is, not a crash
        raise BadRequest("", too_deep) from None
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise BadRequest("", "The request body is not valid JSON.") from e
    if nesting_depth(value) > MAX_BODY_DEPTH:
        raise BadRequest("", too_deep)
    return value


def shown_value(value: Any) -> Any:
    """A value as an answer may carry it: a number that is not finite as its text (JSON has no such number)."""
    if isinstance(value, float) and not math.isfinite(value):
        if isinstance(value, NonFinite):
            return value.text
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, list):
        return [shown_value(item) for item in value]
    if isinstance(value, dict):
        return {key: shown_value(item) for key, item in value.items()}
    return value


class BadRequest(Exception):
    """A request the real service would refuse with its validation shape."""

    def __init__(self, prop: str, message: str, attempted: Any = None) -> None:
        super().__init__(message)
        self.prop = prop
        self.message = message
        self.attempted = attempted


class StaleReference(BadRequest):
    """A write naming a record that does not exist (or a deleted coworker): 400, or 401 as a setting."""


@dataclass(frozen=True)
class _Grant:
    """What a refresh token stands for: the user, the client it was issued to, and when it expires."""

    email: str
    client: str
    expires: float


_DATE_FILTER = re.compile(r"^(from|to)_(\w+)_(CreatedOn|UpdatedOn)$", re.IGNORECASE)
_ENTITY_PATH = re.compile(r"^/api/(content|spaces)/([a-z]+)(?:/([^/]*))?/?$", re.IGNORECASE)


class EmulatorApp:
    """A WSGI callable; one instance per store. Thread-safe: one request at a time holds the store."""

    def __init__(self, store: Store, settings: Settings | None = None, *,
                 users: Iterable[User] = (), wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings or Settings()
        # A store holds a record per row, a million for a large space: taken out of the cyclic collector's
        # view, which would otherwise re-scan them all as requests allocate (quadratic in the space's size).
        gc.freeze()
        saved = [User.from_account(a) for a in store.users()]
        self.users = {u.email.casefold(): u for u in [*saved, *users]}
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.started = monotonic()
        self.limiter = RateLimiter(self.settings.limits, monotonic)
        self.rng = random.Random(self.settings.rng_seed)  # fault injection, not security
        self._tokens: dict[str, tuple[str, float]] = {}
        self._refresh: dict[str, _Grant] = {}
        self._spent_codes: set[tuple[str, str]] = set()
        self.throttled_count = 0
        # Every write request that got past authentication, for tests that audit the journal against it.
        self.writes_seen: list[tuple[str, str, Any]] = []
        # Requests answered, by "METHOD collection" ("POST token" for the token endpoint), for tests that count.
        self.requests_served: Counter[str] = Counter()
        # Filtered or sorted list selections, for the next pages of the same read (see `_selection`).
        self._selections: dict[tuple[Any, ...], tuple[tuple[int, int], list[int]]] = {}

    # --- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        if self.settings.latency_ms:
            time.sleep(self.settings.latency_ms / 1000.0)
        try:
            with self.store.lock:
                response = self._handle(environ)
        except ConnectionLost:
            raise
        except Exception:  # a bug of ours must still answer in the real service's shape
            log.exception("emulator error")
            response = json_response(500, self._oops())
        reason = _REASONS.get(response.status, "Error")
        self.requests_served[_route(environ)] += 1
        # The server's clock, as every real answer carries it (server.py leaves the Date header to the app).
        date = formatdate(self.wall_clock() + self.settings.clock_offset_seconds, usegmt=True)
        start_response(f"{response.status} {reason}", [*response.headers, ("Date", date),
                                                        ("Content-Length", str(len(response.body)))])
        return [response.body]

    def _handle(self, environ: Environ) -> Response:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "") or "/"
        if path.rstrip("/").lower() == "/api/token":
            if method != "POST":
                return self._method_not_allowed(method)
            return self._token(environ)
        match = _ENTITY_PATH.match(path)
        entity = ENTITIES.get(match.group(2).lower()) if match else None
        if match is None or entity is None or entity.area != match.group(1).lower():
            return json_response(404, "Not found")
        record_part = match.group(3)
        if record_part == "":
            record_part = None

        user = self._authenticate(environ)
        permission = _permission(entity, method, record_part is not None)
        if permission is None:
            return self._method_not_allowed(method)
        if self.settings.require_auth and (user is None or not user.may(permission)):
            return json_response(401, {"Message": DENIED})

        if method != "GET":
            self.writes_seen.append((method, path, _peek_json(environ)))
        client = user.email if user else environ.get("REMOTE_ADDR", "local")
        wait = self.limiter.admit(client, write=method != "GET")
        if wait > 0:
            self.throttled_count += 1
            return self._throttled(wait)
        if self.settings.fail_rate and self.rng.random() < self.settings.fail_rate:
            return json_response(500, self._oops())
        if method == "GET" and record_part is None and self._in_outage(entity):
            return Response(503, OUTAGE_PAGE, [("Content-Type", "text/html; charset=utf-8")])
        spoil = self._spoiled_answer(entity, method, record_part)
        if spoil == "fail":  # a burst of 500s on writes only: the write is not done
            return json_response(500, self._oops())
        if spoil == "html":  # a proxy's page in front of the service: the request never reached it
            return Response(200, MAINTENANCE_PAGE, [("Content-Type", "text/html; charset=utf-8")])
        response = self._dispatch(environ, entity, method, record_part, user)
        if spoil == "truncated":  # done, and its answer cut after half its bytes, as a dropped connection leaves it
            response.body = response.body[:len(response.body) // 2]
        return response

    def _dispatch(self, environ: Environ, entity: Entity, method: str, record_part: str | None,
                  user: User | None) -> Response:
        actor = user.email if user else "local@reconciler"
        try:
            if method == "GET":
                query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
                if record_part is not None and record_part.lower() == "commands":
                    return json_response(200, [])  # "None is documented for completions" (nor for enrolments)
                if record_part is not None:
                    return self._get(entity, record_part)
                return self._list(entity, query)
            if method == "POST" and record_part is None:
                return self._write(lambda: self._create(entity, _read_json(environ), actor), entity, actor, environ)
            if method == "POST" and record_part is not None and record_part.lower() == "runcommand":
                return self._run_command(entity, _read_json(environ))
            if method == "PUT" and record_part is None:
                return self._write(lambda: self._update(entity, _read_json(environ), actor), entity, actor, environ)
            if method == "DELETE" and record_part is not None:
                return self._write(lambda: self._delete(entity, record_part, actor), entity, actor, environ)
        except BadRequest as e:
            return self._invalid(e)
        return self._method_not_allowed(method)

    def _spoiled_answer(self, entity: Entity, method: str, record_part: str | None
                        ) -> Literal["fail", "html", "truncated"] | None:
        """How the write and get-by-id faults spoil this request, if they do. The rng is drawn only for a fault
        that is on, so that a seed plays the other faults as it did before these existed."""
        settings = self.settings
        if method != "GET":
            if settings.write_fail_rate and self.rng.random() < settings.write_fail_rate:
                return "fail"
            kind, rate = settings.write_garble, settings.write_garble_rate
        elif record_part is not None and entity.collection in settings.outage_collections:
            kind, rate = settings.get_garble, settings.get_garble_rate
        else:
            return None
        if kind is None or not (rate >= 1.0 or self.rng.random() < rate):
            return None
        return kind

    def _in_outage(self, entity: Entity) -> bool:
        settings = self.settings
        return (entity.collection in settings.outage_collections
                and self.monotonic() - self.started < settings.read_outage_seconds)

    # --- auth ------------------------------------------------------------------------------------

    def revoke_tokens(self) -> None:
        """Forget every issued token, as a restart of the real service's token store would."""
        with self.store.lock:
            self._tokens.clear()

    def _authenticate(self, environ: Environ) -> User | None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer":
            found = self._tokens.get(credential.strip())
            if found and found[1] > self.wall_clock():
                return self.users.get(found[0])
            return None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            email, _, password = decoded.partition(":")
            user = self.users.get(email.casefold())
            # An account that must reset its password cannot sign in by any means until it does.
            return user if user and user.check_password(password) and not user.must_reset_password else None
        return None

    def _token(self, environ: Environ) -> Response:
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return json_response(400, {"error": "unsupported_grant_type"})
        try:
            form = dict(parse_qsl(_read_body(environ).decode(), keep_blank_values=True))
        except (UnicodeDecodeError, BadRequest):
            return json_response(400, {"error": "invalid_request"})
        grant = form.get("grant_type", "")
        now = self.wall_clock()
        if grant == "password":
            user = self.users.get(form.get("username", "").casefold())
            if user is None or not user.check_password(form.get("password", "")):
                return _invalid_grant("The user name or password is incorrect.")
            if user.must_reset_password:  # the password was right, but it may not be used until it is changed
                return json_response(400, {"error": "must_reset_password", "error_description":
                                           "The password must be reset before signing in: set a new one."})
            email = user.email.casefold()
            if user.totp is not None:
                code = form.get("totp", "")
                if not code:
                    return json_response(400, {"error": "two_factor_auth_check", "error_description":
                                               "Two-factor authentication is on: send the code as totp."})
                if not hmac.compare_digest(code, user.totp):
                    return _invalid_grant("The two-factor authentication code is incorrect.")
                if self.settings.totp_single_use:
                    # A real code is good for seconds: once accepted it can never sign in again.
                    if (email, code) in self._spent_codes:
                        return _invalid_grant("The two-factor authentication code has already been used.")
                    self._spent_codes.add((email, code))
            client = form.get("client_id") or form.get("username", "")
        elif grant == "refresh_token":
            presented = form.get("refresh_token", "")
            found = self._refresh.get(presented)
            if found is None or found.expires <= now:
                self._refresh.pop(presented, None)
                return _invalid_grant("The refresh token is invalid or has expired.")
            if _header(environ, "client_id") != found.client:
                return json_response(400, {"error": "invalid_client", "error_description":
                                           "The client_id header must name the client the token was issued to."})
            # A refresh invalidates every earlier refresh token of that client, not only the one presented.
            for earlier in [t for t, g in self._refresh.items() if (g.email, g.client) == (found.email, found.client)]:
                del self._refresh[earlier]
            email, client = found.email, found.client
        else:
            return json_response(400, {"error": "unsupported_grant_type"})
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._tokens[access] = (email, now + self.settings.token_ttl)
        self._refresh[refresh] = _Grant(email, client, now + REFRESH_TTL)
        return json_response(200, {"access_token": access, "token_type": "bearer",
                                   "expires_in": self.settings.token_ttl, "refresh_token": refresh})

    # --- reads -----------------------------------------------------------------------------------

    def _get(self, entity: Entity, record_part: str) -> Response:
        row = self.store.get(entity.collection, _int_or_none(record_part) or -1)
        if row is None:
            return json_response(404, "Not found")
        if entity is COWORKER and self._deleted(row):
            return json_response(401, "Not found")  # seen live: a deleted coworker is a 401, not a 404
        return json_response(200, self._render(entity, row, full=True))

    def _render(self, entity: Entity, row: Row, *, full: bool) -> Row:
        """A record as the API returns it, its dates in the form the setting and the endpoint call for."""
        record = self.store.render(entity, row, full=full)
        form: DateForm = "millis" if self.settings.date_style == "millis" else "precise" if full else "second"
        for name in ("CreatedOn", "UpdatedOn"):
            record[name] = render_timestamp(record[name], form)
        return record

    def _now_text(self) -> str:
        now = precise_timestamp(self.store.clock())
        return str(render_timestamp(now, "millis" if self.settings.date_style == "millis" else "precise"))

    def _deleted(self, coworker: Row) -> bool:
        return coworker.get("Deleted") is True or coworker["Id"] in self.settings.deleted_coworkers

    def _list(self, entity: Entity, query: list[tuple[str, str]]) -> Response:
        params: dict[str, str] = {}
        for name, value in query:
            params.setdefault(name.lower(), value)
        batch = params.get("id", "")
        if batch.startswith("[") and self.settings.batch_get == "honoured":
            return self._batch_get(entity, batch)
        if entity is COMPLETION and _positive_int(params.get("page"), 1) >= 2:
            for _ in range(self.settings.churn_between_pages):
                self._churn()

        predicates = self._filters(entity, query)
        order_field = self._order_field(entity, params.get("orderby", ""))
        descending = self._descending(params.get("dir", ""))
        return self._page(entity, self._selection(entity, query, predicates, order_field), params, order_field,
                          descending)

    def _selection(self, entity: Entity, query: list[tuple[str, str]], predicates: list[Predicate],
                   order_field: str) -> Sequence[int]:
        """The Ids a list request selects, ascending by `order_field` then Id (`_page` reads them backwards
        for a descending order).

        Unfiltered, or filtered by Id columns only, this is the store's own list (or index): a page costs its
        records. Any other selection is computed once and kept, keyed by the request and the store's
        generation, so that the next pages of the same read cost their records too.
        """
        store = self.store
        equal = [p for p in predicates if isinstance(p, _Equals)]
        rest = [p for p in predicates if not isinstance(p, _Equals)]
        candidates = store.ids(entity.collection)
        if equal:
            narrowest = min((store.ids_where(entity.collection, p.column, p.wanted) for p in equal), key=len)
            if len(equal) > 1:  # the other Id filters are checked record by record, as the rest are
                rest = predicates
            candidates = narrowest
        if not rest and order_field == "Id":
            return candidates
        key = (entity.collection, order_field, repr(self.settings),
               tuple((name.lower(), value) for name, value in query if name.lower() not in ("page", "size")))
        found = self._selections.get(key)
        if found is not None and found[0] == store.generation:
            return found[1]
        rows = store.rows[entity.collection]
        selected = [rows[i] for i in candidates]
        for predicate in rest:
            selected = [row for row in selected if predicate(row)]
        if order_field in ("CreatedOn", "UpdatedOn"):  # as instants: stored dates need not share one form
            selected.sort(key=lambda r: (timestamp_instant(r.get(order_field)) or _EPOCH, r["Id"]))
        elif order_field != "Id":
            selected.sort(key=lambda r: (*_sort_key(store.value(entity, r, order_field)), r["Id"]))
        ids = [row["Id"] for row in selected]
        self._selections[key] = (store.generation, ids)
        while len(self._selections) > SELECTIONS_KEPT:
            del self._selections[next(iter(self._selections))]
        return ids

    def _page(self, entity: Entity, ids: Sequence[int], params: dict[str, str], order_field: str,
              descending: bool) -> Response:
        """One page of the records `ids` names (ascending; read from the end when `descending`) in the list
        envelope, with the setting's cap, honesty and garbling."""
        settings = self.settings
        garble = settings.garble if entity.collection in settings.outage_collections else None
        if garble == "html":
            return Response(200, MAINTENANCE_PAGE, [("Content-Type", "text/html; charset=utf-8")])
        page = _positive_int(params.get("page"), 1)
        requested = _positive_int(params.get("size"), DEFAULT_PAGE_SIZE)
        served = min(requested, max(1, settings.max_page_size))
        # Pages are always cut by the served size; a dishonest server reports the requested one.
        reported = requested if settings.report_requested_size else served
        total = len(ids)
        start = (page - 1) * served
        chunk = _window(ids, start, start + served, descending)
        if garble == "endless" and not chunk and ids:  # past the end: the last page again
            start = (total - 1) // served * served
            chunk = _window(ids, start, total, descending)
        rows = self.store.rows[entity.collection]
        records = [self._render(entity, rows[i], full=False) for i in chunk]
        shown = settings.system_id_in_lists
        if shown != "yes":  # unknown live: list records may leave it out or null it (get-by-id keeps it)
            for record in records:
                if shown == "null":
                    record["SystemId"] = None
                else:
                    record.pop("SystemId", None)
        if garble == "string-ids":
            for record in records:
                record["Id"] = str(record["Id"])
        elif garble == "missing-field":
            for record in records:
                record.pop("CourseLessonId", None)
        claimed = total + LIE if garble == "lying-total" else total
        pages = math.ceil(claimed / reported)
        if garble == "low-total":  # TotalItems counts one page's worth; TotalPages and HasNextPage stay honest
            claimed = min(total, served)
        # In the encoding the server reads `dir` in: 1/-1, or 0/1 (0 = ascending) where 1 means descending.
        direction: Any = -1 if descending else 1
        if settings.dir_one_means == "descending":
            direction = 1 if descending else 0
        if settings.sort_direction_style == "text":
            direction = "DESC" if descending else "ASC"
        envelope: dict[str, Any] = {
            "Records": records, "CurrentPageSize": reported, "CurrentPage": page,
            "CurrentOrderField": order_field, "CurrentSortDirection": direction,
            "FirstItem": start + 1 if records else 0, "HasNextPage": garble == "endless" or page < pages,
            "HasPreviousPage": page > 1, "LastItem": start + len(records) if records else 0,
        }
        if settings.envelope == "legacy":
            envelope.update({"PageNumber": page, "PageSize": reported})
        envelope.update({"TotalItems": claimed, "TotalPages": pages})
        if garble == "no-counts":  # the records and their page alone: nothing says whether more follow
            for name in ("TotalItems", "TotalPages", "HasNextPage", "HasPreviousPage", "FirstItem", "LastItem"):
                del envelope[name]
        elif garble == "no-total":  # HasNextPage and TotalPages without TotalItems
            del envelope["TotalItems"]
        elif garble == "total-only":  # TotalItems without HasNextPage or TotalPages
            del envelope["HasNextPage"], envelope["TotalPages"]
        response = json_response(200, envelope)
        if garble == "truncated":  # a valid prefix of the real body, as a dropped connection leaves it
            response.body = response.body[:len(response.body) // 2]
        return response

    def _batch_get(self, entity: Entity, batch: str) -> Response:
        try:
            wanted = json.loads(batch)
        except (ValueError, RecursionError) as e:  # not JSON, an integer of 4,300 digits, or nested past reading
            raise BadRequest("id", "The value is not a list of ids.", batch) from e
        if not isinstance(wanted, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in wanted):
            raise BadRequest("id", "The value is not a list of ids.", batch)
        found = (self.store.get(entity.collection, i) for i in wanted)
        return json_response(200, [self._render(entity, row, full=True) for row in found if row is not None])

    def _filters(self, entity: Entity, query: list[tuple[str, str]]) -> list[Predicate]:
        ids = {k.lower(): v for k, v in entity.id_filters.items()}
        texts = {k.lower(): v for k, v in entity.text_filters.items()}
        texts[f"{entity.name}_systemid".lower()] = "SystemId"
        ignored = {name.lower() for name in self.settings.ignored_filters}
        predicates: list[Predicate] = []
        for name, raw in query:
            key = name.lower()
            if key in ignored:  # as the real service does with any query name it does not know
                continue
            if key == "id" and raw.startswith("["):  # a batch get (`_list`), or ignored as the setting says
                continue
            if key == "id":
                predicates.append(_equals("Id", _required_int(name, raw)))
            elif key == "uniqueid":
                predicates.append(self._contains(entity, "UniqueId", raw, exact=True))
            elif key in ids:
                predicates.append(_equals(ids[key], _required_int(name, raw)))
            elif entity is COWORKER and key == "coworker_email":
                predicates.append(self._email_filter(raw))
            elif key in texts:
                predicates.append(self._contains(entity, texts[key], raw))
            elif (dated := _DATE_FILTER.match(name)) and dated.group(2).lower() == entity.name.lower():
                column = "CreatedOn" if dated.group(3).lower() == "createdon" else "UpdatedOn"
                bound = _parse_filter_date(name, raw)
                if dated.group(1).lower() == "from":
                    predicates.append(_date_from(column, bound, self.settings.from_bound))
                else:
                    predicates.append(_date_to(column, bound, self.settings.to_bound))
        return predicates

    def _email_filter(self, raw: str) -> Predicate:
        """`Coworker_Email` is not a substring filter on the live service (seen); whether it ignores case is not
        known, so both exact forms are settings, and the legacy substring one too."""
        mode = self.settings.email_filter
        if mode == "exact-case":
            return lambda row: row.get("Email") == raw
        return self._contains(COWORKER, "Email", raw, exact=mode == "exact")

    def _contains(self, entity: Entity, column: str, raw: str, *, exact: bool = False) -> Predicate:
        """Text filters match case-insensitively, by substring, as the real service's do."""
        needle = raw.casefold()
        value = self.store.value

        def test(row: Row) -> bool:
            found = str(value(entity, row, column) or "").casefold()
            return found == needle if exact else needle in found

        return test

    def _order_field(self, entity: Entity, requested: str) -> str:
        known = {name.lower(): name for name in ("Id", *entity.own_fields, *entity.computed_fields,
                                                  "UniqueId", "CreatedOn", "UpdatedOn", "UpdatedBy", "SystemId")}
        return known.get(requested.lower(), "Id")

    def _descending(self, raw: str) -> bool:
        word = raw.strip().lower()
        if word in ("descending", "desc", "-1"):
            return True
        if word == "1":
            return self.settings.dir_one_means == "descending"
        return False

    # --- writes ----------------------------------------------------------------------------------

    def _write(self, action: Callable[[], Response], entity: Entity, actor: str, environ: Environ) -> Response:
        if self.settings.unsuccessful_rate and self.rng.random() < self.settings.unsuccessful_rate:
            return json_response(200, self._command(f"{entity.name} could not be saved.", None, actor, ok=False))
        lose = bool(self.settings.lose_rate) and self.rng.random() < self.settings.lose_rate
        response = action()
        if lose and response.status == 200:
            connection = environ.get("werkzeug.socket")
            if connection is not None:  # served over a socket: close it so the client sees no answer
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            raise ConnectionLost("response dropped by fault injection")
        return response

    def _create(self, entity: Entity, body: Any, actor: str) -> Response:
        if not entity.writable:
            return self._method_not_allowed("POST")
        system_id = _system_id(body)
        if entity is COMPLETION:
            fields = self._completion_fields(body)
        else:
            fields = self._member_fields(body)
        fields["SystemId"] = system_id if self.settings.keep_system_id else None  # unknown live: may be dropped
        if any(self.settings.backdate_minutes):
            now = self.store.clock()
            fields["CreatedOn"], fields["UpdatedOn"] = (precise_timestamp(now - timedelta(minutes=age))
                                                        for age in self.settings.backdate_minutes)
        block = self.rng.randrange(ID_BLOCKS) if self.settings.id_allocation == "blocks" else None
        row = self.store.insert(entity.collection, fields, updated_by=actor, block=block)
        return json_response(200, self._command(f"{entity.name} was successfully created.", self._value(entity, row),
                                                actor))

    def _value(self, entity: Entity, row: Row) -> Any:
        """A create's or update's `Value`: the Id, as the docs say, or the whole record, as seen live."""
        return self._render(entity, row, full=True) if self.settings.create_value == "record" else {"Id": row["Id"]}

    def _update(self, entity: Entity, body: Any, actor: str) -> Response:
        """`PUT /api/content/coursecompletedlessons` (no Id in the URL): the full record, its `Id` in the body; a
        field left out is cleared (a completion's member and lesson are required, its SystemId becomes null). The
        Id and CreatedOn stay; UpdatedOn and UpdatedBy are the update's. Only completions take updates here."""
        if entity is not COMPLETION:
            return self._method_not_allowed("PUT")
        system_id = _system_id(body)
        record_id = _field_int(body, "Id")
        existing = self.store.get(entity.collection, record_id)
        if existing is None:
            return json_response(404, "Not found")
        fields = self._completion_fields(body, updating=record_id)
        fields["SystemId"] = system_id if self.settings.keep_system_id else existing.get("SystemId")
        row = self.store.replace(entity.collection, record_id, fields, updated_by=actor)
        return json_response(200, self._command(f"{entity.name} was successfully updated.", self._value(entity, row),
                                                actor))

    def _run_command(self, entity: Entity, body: Any) -> Response:
        """`POST …/runcommand` with `{"Key", "Ids", "Parameters"}`: none is documented for completions or
        enrolments, so every key is refused, in the validation shape."""
        if not isinstance(body, dict):
            raise BadRequest("", "The request body must be a JSON object.", body)
        raise BadRequest("Key", f"There is no command {body.get('Key')!r} for {entity.name}.", body.get("Key"))

    def _completion_fields(self, body: Row, *, updating: int | None = None) -> Row:
        member_id = _field_int(body, "CourseMemberId")
        lesson_id = _field_int(body, "CourseLessonId")
        member = self.store.get("coursemembers", member_id)
        if member is None:
            raise StaleReference("CourseMemberId", "The course member does not exist.", member_id)
        lesson = self.store.get("courselessons", lesson_id)
        if lesson is None:
            raise StaleReference("CourseLessonId", "The course lesson does not exist.", lesson_id)
        if lesson["CourseId"] != member["CourseId"]:
            raise BadRequest("CourseLessonId", "The lesson does not belong to the member's course.", lesson_id)
        if self.settings.refuse_duplicates and any(
                self.store.rows["coursecompletedlessons"][i]["CourseLessonId"] == lesson_id
                for i in self.store.completions_of_member(member_id) if i != updating):
            raise BadRequest("CourseLessonId", "The course member has already completed this lesson.", lesson_id)
        return {"CourseLessonId": lesson_id, "CourseMemberId": member_id}

    def _member_fields(self, body: Row) -> Row:
        course_id = _field_int(body, "CourseId")
        coworker_id = _field_int(body, "CoworkerId")
        if self.store.get("courses", course_id) is None:
            raise StaleReference("CourseId", "The course does not exist.", course_id)
        coworker = self.store.get("coworkers", coworker_id)
        if coworker is None or self._deleted(coworker):
            raise StaleReference("CoworkerId", "The customer does not exist.", coworker_id)
        if self.store.member_for(course_id, coworker_id) is not None:
            raise BadRequest("CoworkerId", "The customer is already a member of this course.", coworker_id)
        flags = {}
        for name, default in (("Approved", True), ("Blocked", False)):
            flag = body.get(name, default)
            if not isinstance(flag, bool):
                raise BadRequest(name, "The value is not a valid boolean.", flag)
            flags[name] = flag
        return {"CourseId": course_id, "CoworkerId": coworker_id, **flags}

    def _delete(self, entity: Entity, record_part: str, actor: str) -> Response:
        if not entity.writable:
            return self._method_not_allowed("DELETE")
        record_id = _int_or_none(record_part)
        if record_id is None or self.store.get(entity.collection, record_id) is None:
            return json_response(404, "Not found")
        if entity is COURSE_MEMBER and self.store.completions_of_member(record_id):
            if self.settings.enrolment_delete == "blocked":  # seen on other entities: a 200 that did nothing
                return json_response(200, self._command(BLOCKED_DELETE, None, actor, ok=False))
            for completion_id in list(self.store.completions_of_member(record_id)):
                self.store.delete(COMPLETION.collection, completion_id)
        row = self.store.delete(entity.collection, record_id)
        if entity is COMPLETION and row is not None and self.settings.recreate_deleted:
            # The member's portal completes the lesson again on its own, as a "Visited" lesson is when opened.
            member = self.store.get(COURSE_MEMBER.collection, row["CourseMemberId"]) or {}
            coworker = self.store.get(COWORKER.collection, member.get("CoworkerId", -1)) or {}
            self._insert_completion(row["CourseMemberId"], row["CourseLessonId"], coworker.get("Email") or OTHER_WRITER)
        return json_response(200, self._command(f"{entity.name} was successfully deleted.", None, actor))

    def _insert_completion(self, member_id: int, lesson_id: int, writer: str) -> Row:
        """A completion made by another writer than the API's caller: no SystemId, stamped now, its Id as
        `id_allocation` gives them."""
        block = self.rng.randrange(ID_BLOCKS) if self.settings.id_allocation == "blocks" else None
        return self.store.insert(COMPLETION.collection, {"CourseLessonId": lesson_id, "CourseMemberId": member_id},
                                 updated_by=writer, block=block)

    def _churn(self) -> None:
        """One step of another writer working while a reader pages: the completion with the smallest Id is
        deleted and a completion of a (member, lesson) pair that has none is created, the pair drawn from the
        app's rng (`rng_seed`). The pair just freed is always one, so a step never fails for want of a pair."""
        store = self.store
        completions = store.ids(COMPLETION.collection)
        if not completions:
            return
        store.delete(COMPLETION.collection, completions[0])
        members = store.ids(COURSE_MEMBER.collection)
        if not members:  # completions of enrolments a snapshot left out: nothing to complete
            return
        first = self.rng.randrange(len(members))
        for member_id in itertools.chain(members[first:], members[:first]):
            member = store.rows[COURSE_MEMBER.collection][member_id]
            done = {store.rows[COMPLETION.collection][i]["CourseLessonId"]
                    for i in store.completions_of_member(member_id)}
            free = [i for i in store.ids_where("courselessons", "CourseId", member["CourseId"]) if i not in done]
            if free:
                self._insert_completion(member_id, self.rng.choice(free), OTHER_WRITER)
                return

    # --- shapes ----------------------------------------------------------------------------------

    def _command(self, message: str, value: Any, actor: str, *, ok: bool = True) -> Row:
        return {"Status": 200, "Message": message, "Value": value, "OpenInDialog": False, "OpenInWindow": False,
                "RedirectURL": None, "JavaScript": None, "UpdatedOn": self._now_text(),
                "UpdatedBy": actor, "Errors": None, "WasSuccessful": ok}

    def _invalid(self, error: BadRequest) -> Response:
        if isinstance(error, StaleReference) and self.settings.stale_reference_status == 401:
            return json_response(401, {"Message": ACCESS_DENIED})  # seen live on sibling entities
        message = f"{error.prop}: {error.message}" if error.prop else error.message
        return json_response(400, {
            "Status": 400, "Message": message, "Value": None, "OpenInDialog": False, "OpenInWindow": False,
            "RedirectURL": None, "JavaScript": None, "UpdatedOn": None, "UpdatedBy": None,
            "Errors": [{"AttemptedValue": shown_value(error.attempted), "Message": error.message,
                        "PropertyName": error.prop}],
            "WasSuccessful": False})

    def _oops(self) -> Row:
        return {"Status": 500, "Message": OOPS, "Value": None, "Errors": None, "WasSuccessful": False}

    def _throttled(self, wait: float) -> Response:
        settings = self.settings
        advertised = wait if settings.throttle_wait_seconds is None else settings.throttle_wait_seconds
        if settings.throttle_status == 429:
            headers = [("Retry-After", str(whole_seconds(advertised)))] if settings.retry_after_header else []
            return Response(429, f"API calls quota exceeded. Wait {wait_figure(advertised)} seconds.".encode(),
                            [("Content-Type", "text/plain; charset=utf-8"), *headers])
        # The documented answer always says 1 s, whatever the real wait; a set wait replaces it.
        seconds = 1 if settings.throttle_wait_seconds is None else whole_seconds(advertised)
        headers = [("Retry-After", str(seconds))] if settings.retry_after_header else []
        return Response(409, b"", headers)

    def _method_not_allowed(self, method: str) -> Response:
        return json_response(405, {"Message": f"The requested resource does not support http method '{method}'."})


Predicate = Callable[[Row], bool]


@dataclass(frozen=True)
class _Equals:
    """A filter by an Id column (`Id`, `CourseLesson_Course`, ...): the store answers it from an index."""

    column: str
    wanted: int

    def __call__(self, row: Row) -> bool:
        return bool(row.get(self.column) == self.wanted)


def _equals(column: str, wanted: int) -> Predicate:
    return _Equals(column, wanted)


def _window(ids: Sequence[int], start: int, stop: int, descending: bool) -> list[int]:
    """Items `start` ..< `stop` of `ids`, or of `ids` reversed when `descending` (without reversing it all)."""
    if not descending:
        return list(ids[start:stop])
    total = len(ids)
    return list(reversed(ids[max(0, total - stop):max(0, total - start)]))


def _date_from(column: str, bound: datetime, meaning: FromBound) -> Predicate:
    """`from_X`: from X:00:00, with it or (`after`) without it."""
    after = meaning == "after"

    def test(row: Row) -> bool:
        stamp = timestamp_instant(row.get(column)) or _EPOCH
        return stamp > bound if after else stamp >= bound

    return test


def _date_to(column: str, bound: datetime, meaning: ToBound) -> Predicate:
    """`to_X`: the whole minute X (before X+1:00:00), up to X:00:00 with it (`at-or-before`), or before it."""
    if meaning == "whole-minute":
        bound += timedelta(minutes=1)
    with_it = meaning == "at-or-before"

    def test(row: Row) -> bool:
        stamp = timestamp_instant(row.get(column)) or _EPOCH
        return stamp <= bound if with_it else stamp < bound

    return test


def _header(environ: Environ, name: str) -> str | None:
    """A request header by its exact name (any case), underscores included where the server kept them."""
    raw: list[tuple[str, str]] | None = environ.get(RAW_HEADERS)
    if raw is None:  # another WSGI server: it may have folded `client_id` into HTTP_CLIENT_ID, or dropped it
        found: str | None = environ.get("HTTP_" + name.upper().replace("-", "_"))
        return found
    return next((value for key, value in raw if key.lower() == name.lower()), None)


def _route(environ: Environ) -> str:
    """`GET coursecompletedlessons`, `DELETE coursecompletedlessons`, `POST token`: what a request was, for counts."""
    path = str(environ.get("PATH_INFO", "") or "/")
    match = _ENTITY_PATH.match(path)
    name = match.group(2).lower() if match else path.strip("/").rsplit("/", 1)[-1].lower() or "/"
    return f"{environ.get('REQUEST_METHOD', 'GET').upper()} {name}"


def _permission(entity: Entity, method: str, has_id: bool) -> str | None:
    action = {"GET": "Read" if has_id else "List", "POST": "Create", "PUT": "Edit", "DELETE": "Delete"}.get(method)
    return f"{entity.name}-{action}" if action else None


def _invalid_grant(description: str) -> Response:
    return json_response(400, {"error": "invalid_grant", "error_description": description})


def _read_body(environ: Environ) -> bytes:
    if "emulator.body" in environ:
        cached: bytes = environ["emulator.body"]
        return cached
    length = _int_or_none(environ.get("CONTENT_LENGTH") or "0") or 0
    if length > MAX_BODY:
        raise BadRequest("", "The request body is too large.")
    stream = environ.get("wsgi.input")
    return stream.read(length) if stream is not None and length > 0 else b""


def _peek_json(environ: Environ) -> Any:
    """The JSON body, read once and kept in the environ so the handler can read it again."""
    if "emulator.body" not in environ:
        try:
            environ["emulator.body"] = _read_body(environ)
        except BadRequest:
            environ["emulator.body"] = b""
    try:
        return parse_body(environ["emulator.body"])
    except BadRequest:
        return None


def _read_json(environ: Environ) -> Any:
    return parse_body(_read_body(environ))


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d{1,18}", text) else None


def _positive_int(text: str | None, default: int) -> int:
    number = _int_or_none(text or "")
    return number if number is not None and number > 0 else default


def _required_int(name: str, raw: str) -> int:
    number = _int_or_none(raw)
    if number is None:
        raise BadRequest(name, f"The value '{raw}' is not valid for {name}.", raw)
    return number


def _system_id(body: Any) -> str | None:
    """A write's body, which must be a JSON object, and the SystemId it sets (a string, or none)."""
    if not isinstance(body, dict):
        raise BadRequest("", "The request body must be a JSON object.", body)
    system_id = body.get("SystemId")
    if system_id is not None and not isinstance(system_id, str):
        raise BadRequest("SystemId", "The value is not a valid string.", system_id)
    return system_id


def _field_int(body: Row, name: str) -> int:
    raw = body.get(name)
    if raw is None:
        raise BadRequest(name, f"The {name} field is required.", None)
    if isinstance(raw, bool) or not isinstance(raw, int | str):  # 1e400, NaN and Infinity too: they do not fit
        raise BadRequest(name, f"The value is not valid for {name}.", raw)
    number = raw if isinstance(raw, int) else _int_or_none(raw)
    if number is None or not -2**63 <= number < 2**63:  # nor does an integer past the service's 64 bits
        raise BadRequest(name, f"The value is not valid for {name}.", raw)
    return number


def _parse_filter_date(name: str, raw: str) -> datetime:
    try:
        return datetime.strptime(raw.strip(), "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
    except ValueError as e:
        raise BadRequest(name, f"The value '{raw}' is not a date in the form YYYY-MM-DDTHH:mm.", raw) from e


_EPOCH = datetime.min.replace(tzinfo=UTC)


def _sort_key(value: Any) -> tuple[Any, ...]:
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool | int | float):
        return (1, float(value), "")
    return (2, 0, str(value).casefold())
