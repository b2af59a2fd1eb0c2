"""The one redactor: every credential blanked out of text before it is logged, printed or raised.

It removes the secrets this process knows (the password, the token and TOTP from the environment, every
access and refresh token a server handed out: `remember` adds them as they arrive) wherever they appear,
and, by their shape, credentials it was never told about: `Bearer`/`Basic` authorization values,
`user:password@` in URLs, and token, password and code fields in query strings, forms and JSON.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "[redacted]"
_SHORTEST = 6  # shorter values are not searched for: they would blank out ordinary text

_known: set[str] = set()
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
    """Values to blank out wherever they appear from now on (credentials, tokens as a server hands them out)."""
    with _lock:
        _known.update(s for s in secrets if s and len(s) >= _SHORTEST)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every known secret, `secrets` besides, and anything shaped like a credential blanked out."""
    with _lock:
        values = sorted(_known.union(s for s in secrets if s and len(s) >= _SHORTEST), key=len, reverse=True)
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
