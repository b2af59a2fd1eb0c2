"""The emulator's WSGI application: Nexudus's routes, envelopes, auth, throttling and faults.

Everything here follows ../shared/nexudus-api.md; where that page lists two forms of a behaviour, a
`Settings` field chooses which one the emulator produces.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl

from reconciler.emulator.limits import Limits, RateLimiter, whole_seconds
from reconciler.emulator.store import COMPLETION, COURSE_MEMBER, ENTITIES, Entity, Row, Store, format_timestamp

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

OOPS = "Ooops! There was a problem while running this action. Please try again or contact support."
DENIED = "Authorization has been denied for this request."
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 25
TOKEN_TTL = 604799
REFRESH_TTL = 15 * 86400
MAX_BODY = 1_000_000


class ConnectionLost(ConnectionAbortedError):
    """Raised by the app after a write, so the server closes the connection without answering.

    werkzeug treats a ConnectionError from the app as a dropped connection; the in-process transport
    turns it into the httpx error a real dropped connection gives.
    """


@dataclass
class Settings:
    """How this emulator behaves where the real service is documented more than one way, and its faults."""

    limits: Limits = field(default_factory=Limits)
    throttle_status: Literal[409, 429] = 409
    retry_after_header: bool = True
    latency_ms: int = 0
    fail_rate: float = 0.0
    lose_rate: float = 0.0
    unsuccessful_rate: float = 0.0
    rng_seed: int | None = None
    require_auth: bool = True
    token_ttl: int = TOKEN_TTL
    create_value: Literal["id", "record"] = "id"
    envelope: Literal["legacy", "modern"] = "legacy"
    dir_one_means: Literal["ascending", "descending"] = "ascending"
    sort_direction_style: Literal["number", "text"] = "number"


@dataclass(frozen=True)
class User:
    email: str
    password_hash: str
    admin: bool = False
    roles: frozenset[str] = frozenset()
    totp: str | None = None

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
                   frozenset(saved.get("roles") or ()), saved.get("totp"))

    def may(self, permission: str) -> bool:
        return self.admin or permission in self.roles


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error"}


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, [("Content-Type", "application/json; charset=utf-8"), *headers])


class BadRequest(Exception):
    """A request the real service would refuse with its validation shape."""

    def __init__(self, prop: str, message: str, attempted: Any = None) -> None:
        super().__init__(message)
        self.prop = prop
        self.message = message
        self.attempted = attempted


_DATE_FILTER = re.compile(r"^(from|to)_(\w+)_(CreatedOn|UpdatedOn)$", re.IGNORECASE)
_ENTITY_PATH = re.compile(r"^/api/(content|spaces)/([a-z]+)(?:/([^/]*))?/?$", re.IGNORECASE)


class EmulatorApp:
    """A WSGI callable; one instance per store. Thread-safe: one request at a time holds the store."""

    def __init__(self, store: Store, settings: Settings | None = None, *,
                 users: Iterable[User] = (), wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings or Settings()
        saved = [User.from_account(a) for a in store.users()]
        self.users = {u.email.casefold(): u for u in [*saved, *users]}
        self.wall_clock = wall_clock
        self.limiter = RateLimiter(self.settings.limits, monotonic)
        self.rng = random.Random(self.settings.rng_seed)  # fault injection, not security
        self._tokens: dict[str, tuple[str, float]] = {}
        self._refresh: dict[str, tuple[str, float]] = {}
        self.throttled_count = 0
        # Every write request that got past authentication, for tests that audit the journal against it.
        self.writes_seen: list[tuple[str, str, Any]] = []

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
        start_response(f"{response.status} {reason}", [*response.headers, ("Content-Length", str(len(response.body)))])
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

        actor = user.email if user else "local@reconciler"
        try:
            if method == "GET":
                query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
                if record_part is not None:
                    return self._get(entity, record_part)
                return self._list(entity, query)
            if method == "POST" and record_part is None:
                return self._write(lambda: self._create(entity, _read_json(environ), actor), entity, actor, environ)
            if method == "DELETE" and record_part is not None:
                return self._write(lambda: self._delete(entity, record_part, actor), entity, actor, environ)
        except BadRequest as e:
            return self._invalid(e)
        return self._method_not_allowed(method)

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
            return user if user and user.check_password(password) else None
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
            if user.totp is not None and not hmac.compare_digest(form.get("totp", ""), user.totp):
                return _invalid_grant("The two-factor authentication code is incorrect.")
            email = user.email.casefold()
        elif grant == "refresh_token":
            found = self._refresh.pop(form.get("refresh_token", ""), None)
            if found is None or found[1] <= now:
                return _invalid_grant("The refresh token is invalid or has expired.")
            email = found[0]
        else:
            return json_response(400, {"error": "unsupported_grant_type"})
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._tokens[access] = (email, now + self.settings.token_ttl)
        self._refresh[refresh] = (email, now + REFRESH_TTL)
        return json_response(200, {"access_token": access, "token_type": "bearer",
                                   "expires_in": self.settings.token_ttl, "refresh_token": refresh})

    # --- reads -----------------------------------------------------------------------------------

    def _get(self, entity: Entity, record_part: str) -> Response:
        row = self.store.get(entity.collection, _int_or_none(record_part) or -1)
        if row is None:
            return json_response(404, "Not found")
        return json_response(200, self.store.render(entity, row, full=True))

    def _list(self, entity: Entity, query: list[tuple[str, str]]) -> Response:
        params: dict[str, str] = {}
        for name, value in query:
            params.setdefault(name.lower(), value)
        batch = params.get("id", "")
        if batch.startswith("["):
            return self._batch_get(entity, batch)

        rows = list(self.store.iter_rows(entity.collection))
        for predicate in self._filters(entity, query):
            rows = [row for row in rows if predicate(row)]

        order_field = self._order_field(entity, params.get("orderby", ""))
        descending = self._descending(params.get("dir", ""))
        if order_field != "Id":
            rows.sort(key=lambda r: (*_sort_key(self.store.value(entity, r, order_field)), r["Id"]))
        if descending:
            rows.reverse()

        page = _positive_int(params.get("page"), 1)
        size = min(_positive_int(params.get("size"), DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
        total = len(rows)
        start = (page - 1) * size
        records = [self.store.render(entity, row, full=False) for row in rows[start:start + size]]
        pages = math.ceil(total / size)
        direction: Any = (-1 if descending else 1)
        if self.settings.sort_direction_style == "text":
            direction = "DESC" if descending else "ASC"
        envelope: dict[str, Any] = {
            "Records": records, "CurrentPageSize": size, "CurrentPage": page,
            "CurrentOrderField": order_field, "CurrentSortDirection": direction,
            "FirstItem": start + 1 if records else 0, "HasNextPage": page < pages,
            "HasPreviousPage": page > 1, "LastItem": start + len(records) if records else 0,
        }
        if self.settings.envelope == "legacy":
            envelope.update({"PageNumber": page, "PageSize": size})
        envelope.update({"TotalItems": total, "TotalPages": pages})
        return json_response(200, envelope)

    def _batch_get(self, entity: Entity, batch: str) -> Response:
        try:
            wanted = json.loads(batch)
        except ValueError as e:
            raise BadRequest("id", "The value is not a list of ids.", batch) from e
        if not isinstance(wanted, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in wanted):
            raise BadRequest("id", "The value is not a list of ids.", batch)
        found = (self.store.get(entity.collection, i) for i in wanted)
        return json_response(200, [self.store.render(entity, row, full=True) for row in found if row is not None])

    def _filters(self, entity: Entity, query: list[tuple[str, str]]) -> list[Predicate]:
        ids = {k.lower(): v for k, v in entity.id_filters.items()}
        texts = {k.lower(): v for k, v in entity.text_filters.items()}
        texts[f"{entity.name}_systemid".lower()] = "SystemId"
        predicates: list[Predicate] = []
        for name, raw in query:
            key = name.lower()
            if key == "id" and not raw.startswith("["):
                predicates.append(_equals("Id", _required_int(name, raw)))
            elif key == "uniqueid":
                predicates.append(self._contains(entity, "UniqueId", raw, exact=True))
            elif key in ids:
                predicates.append(_equals(ids[key], _required_int(name, raw)))
            elif key in texts:
                predicates.append(self._contains(entity, texts[key], raw))
            elif (dated := _DATE_FILTER.match(name)) and dated.group(2).lower() == entity.name.lower():
                column = "CreatedOn" if dated.group(3).lower() == "createdon" else "UpdatedOn"
                bound = _parse_filter_date(name, raw)
                if dated.group(1).lower() == "from":
                    predicates.append(_between(column, bound, None))
                else:  # `to_` takes in the whole minute it names
                    predicates.append(_between(column, None, bound + timedelta(minutes=1)))
        return predicates

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
        if not isinstance(body, dict):
            raise BadRequest("", "The request body must be a JSON object.", body)
        system_id = body.get("SystemId")
        if system_id is not None and not isinstance(system_id, str):
            raise BadRequest("SystemId", "The value is not a valid string.", system_id)
        if entity is COMPLETION:
            fields = self._completion_fields(body)
        else:
            fields = self._member_fields(body)
        fields["SystemId"] = system_id
        row = self.store.insert(entity.collection, fields, updated_by=actor)
        value: Any = {"Id": row["Id"]}
        if self.settings.create_value == "record":
            value = self.store.render(entity, row, full=True)
        return json_response(200, self._command(f"{entity.name} was successfully created.", value, actor))

    def _completion_fields(self, body: Row) -> Row:
        member_id = _field_int(body, "CourseMemberId")
        lesson_id = _field_int(body, "CourseLessonId")
        member = self.store.get("coursemembers", member_id)
        if member is None:
            raise BadRequest("CourseMemberId", "The course member does not exist.", member_id)
        lesson = self.store.get("courselessons", lesson_id)
        if lesson is None:
            raise BadRequest("CourseLessonId", "The course lesson does not exist.", lesson_id)
        if lesson["CourseId"] != member["CourseId"]:
            raise BadRequest("CourseLessonId", "The lesson does not belong to the member's course.", lesson_id)
        return {"CourseLessonId": lesson_id, "CourseMemberId": member_id}

    def _member_fields(self, body: Row) -> Row:
        course_id = _field_int(body, "CourseId")
        coworker_id = _field_int(body, "CoworkerId")
        if self.store.get("courses", course_id) is None:
            raise BadRequest("CourseId", "The course does not exist.", course_id)
        if self.store.get("coworkers", coworker_id) is None:
            raise BadRequest("CoworkerId", "The customer does not exist.", coworker_id)
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
            raise BadRequest("Id", "The course member has completed lessons; delete them first.", record_id)
        self.store.delete(entity.collection, record_id)
        return json_response(200, self._command(f"{entity.name} was successfully deleted.", None, actor))

    # --- shapes ----------------------------------------------------------------------------------

    def _command(self, message: str, value: Any, actor: str, *, ok: bool = True) -> Row:
        return {"Status": 200, "Message": message, "Value": value, "OpenInDialog": False, "OpenInWindow": False,
                "RedirectURL": None, "JavaScript": None, "UpdatedOn": format_timestamp(self.store.clock()),
                "UpdatedBy": actor, "Errors": None, "WasSuccessful": ok}

    def _invalid(self, error: BadRequest) -> Response:
        message = f"{error.prop}: {error.message}" if error.prop else error.message
        return json_response(400, {
            "Status": 400, "Message": message, "Value": None, "OpenInDialog": False, "OpenInWindow": False,
            "RedirectURL": None, "JavaScript": None, "UpdatedOn": None, "UpdatedBy": None,
            "Errors": [{"AttemptedValue": error.attempted, "Message": error.message, "PropertyName": error.prop}],
            "WasSuccessful": False})

    def _oops(self) -> Row:
        return {"Status": 500, "Message": OOPS, "Value": None, "Errors": None, "WasSuccessful": False}

    def _throttled(self, wait: float) -> Response:
        seconds = whole_seconds(wait)
        if self.settings.throttle_status == 429:
            headers = [("Retry-After", str(seconds))] if self.settings.retry_after_header else []
            return Response(429, f"API calls quota exceeded. Wait {seconds} seconds.".encode(),
                            [("Content-Type", "text/plain; charset=utf-8"), *headers])
        headers = [("Retry-After", "1")] if self.settings.retry_after_header else []
        return Response(409, b"", headers)

    def _method_not_allowed(self, method: str) -> Response:
        return json_response(405, {"Message": f"The requested resource does not support http method '{method}'."})


Predicate = Callable[[Row], bool]


def _equals(column: str, wanted: int) -> Predicate:
    return lambda row: bool(row.get(column) == wanted)


def _between(column: str, low: datetime | None, high: datetime | None) -> Predicate:
    def test(row: Row) -> bool:
        stamp = _parse_stamp(row.get(column))
        return (low is None or stamp >= low) and (high is None or stamp < high)

    return test


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
        return json.loads(environ["emulator.body"].decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError):
        return None


def _read_json(environ: Environ) -> Any:
    raw = _read_body(environ)
    try:
        return json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest("", "The request body is not valid JSON.") from e


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


def _field_int(body: Row, name: str) -> int:
    raw = body.get(name)
    if raw is None:
        raise BadRequest(name, f"The {name} field is required.", None)
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise BadRequest(name, f"The value is not valid for {name}.", raw)
    number = raw if isinstance(raw, int) else _int_or_none(raw)
    if number is None:
        raise BadRequest(name, f"The value is not valid for {name}.", raw)
    return number


def _parse_filter_date(name: str, raw: str) -> datetime:
    try:
        return datetime.strptime(raw.strip(), "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
    except ValueError as e:
        raise BadRequest(name, f"The value '{raw}' is not a date in the form YYYY-MM-DDTHH:mm.", raw) from e


def _parse_stamp(stamp: Any) -> datetime:
    if not isinstance(stamp, str):
        return datetime.min.replace(tzinfo=UTC)
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _sort_key(value: Any) -> tuple[Any, ...]:
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool | int | float):
        return (1, float(value), "")
    return (2, 0, str(value).casefold())
