"""The one redactor: every credential blanked out of text before it is logged, printed or raised.

It removes the secrets this process knows (the password and token from the environment, the Basic
authorization value made of them, every access and refresh token a server handed out: `remember` adds them as
they arrive) wherever they appear, as written or as a server may echo them (JSON- or repr-escaped,
percent-encoded), and, by their shape, credentials it was never told about: `Bearer`/`Basic` authorization
values, `user:password@` in URLs, and token, password and code fields in query strings, forms and JSON.

Text cut short is redacted before it is cut (`excerpt`): the end of a cut may hold the start of a secret that
no longer matches. Data written to disk as it came from the server (the read cache's pages, the journal's
records) has the known secrets blanked out and nothing else (`scrub`, `scrub_bytes`): the shapes would change
what an undo restores.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "[redacted]"
_SHORTEST = 6  # shorter values are not searched for: they would blank out ordinary text

_known: set[str] = set()
_known_bytes: list[bytes] = []  # the same, encoded, longest first (replaced whole, never a part first)
_MASK_BYTES = MASK.encode()
_lock = threading.Lock()

# A credential after Bearer/Basic has a digit or a symbol in it; "Basic authentication" is left alone.
_AUTHORIZATION = re.compile(r"\b(Bearer|Basic)\s+(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@?#]*@", re.IGNORECASE)
_FIELDS = ("access_token", "refresh_token", "id_token", "token", "password", "totp", "client_secret", "code",
           "api_key", "apikey", "secret")
_NAMES = "|".join(_FIELDS)
# `"access_token": "…"` in JSON, `password=…` in a query string or a form.
_JSON_FIELD = re.compile(rf'("(?:{_NAMES})"\s*:\s*")[^"]*(")', re.IGNORECASE)
_QUERY_FIELD = re.compile(rf"(\b(?:{_NAMES})=)[^&\s\"']+", re.IGNORECASE)


def remember(*secrets: str | None) -> None:
    """Values to blank out wherever they appear from now on (credentials, tokens as a server hands them out),
    each also as a server or a message may spell it: JSON-escaped, repr-escaped, percent-encoded."""
    with _lock:
        for secret in secrets:
            if secret and len(secret) >= _SHORTEST:
                _known.update(spellings(secret))
        _known_bytes[:] = sorted({v.encode("utf-8", "surrogatepass") for v in _known}, key=len, reverse=True)


def spellings(secret: str) -> set[str]:
    """`secret` as written, and as JSON, `repr` and percent-encoding write it."""
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1],
            quote(secret, safe=""), quote_plus(secret, safe="")}


def excerpt(text: str, limit: int) -> str:
    """The first `limit` characters of `text` once it is redacted (a secret cut in two would not match)."""
    return redact(text)[:limit]


def scrub(text: str) -> str:
    """`text` with the known secrets blanked out (no shapes: for data kept as it came, such as a record)."""
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrub_bytes(data: bytes) -> bytes:
    """`scrub` for a body as it came (UTF-8); the same object when no secret is in it."""
    for value in _known_bytes:
        if value in data:
            data = data.replace(value, _MASK_BYTES)
    return data


def redact(text: str, secrets: Iterable[str | None] = (), *, words: Iterable[str | None] = ()) -> str:
    """`text` with every known secret, `secrets` besides, and anything shaped like a credential blanked out; and
    `words` (a password shorter than the rest, for text a server wrote, which may echo it) wherever one stands
    alone, not part of a longer word or number (so that a short password does not blank out ordinary text)."""
    for word in {w for w in words if w and len(w) < _SHORTEST}:
        for spelled in spellings(word):
            text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(spelled)}(?![0-9A-Za-z])", MASK, text)
    with _lock:
        values = sorted(_known.union(v for s in secrets if s and len(s) >= _SHORTEST for v in spellings(s)),
                        key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _JSON_FIELD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(2)}", text)
    return _QUERY_FIELD.sub(lambda m: f"{m.group(1)}{MASK}", text)


def redact_error(error: BaseException) -> BaseException:
    """The same exception with its message (and a `url` it carries) redacted, for raising on."""
    if error.args:
        error.args = tuple(redact(a) if isinstance(a, str) else a for a in error.args)
    url = getattr(error, "url", None)
    if isinstance(url, str):
        try:
            error.url = redact(url)  # type: ignore[attr-defined]
        except AttributeError:
            pass
    return error


class RedactingFilter(logging.Filter):
    """A log filter that passes every record's message through `redact` (for a handler, or a logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True
