"""Configuration: reconciler.yaml, flags and environment, with the precedence of PRODUCT.md.

The config file is `--config FILE`, else `./reconciler.yaml`, else the one in the first PATH given.
The target is `--api`, else `NEXUDUS_API_URL`, else the file's `target`, else `local`.
Credentials come only from the environment and are never part of a repr, message or file.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

from reconciler.errors import ConfigError, ConfigFileError, Problem
from reconciler.redact import MASK
from reconciler.schema_check import schema_problems
from reconciler.yamlfile import load_file

CONFIG_NAME = "reconciler.yaml"
LOCAL = "local"
log = logging.getLogger(__name__)
# PRODUCT.md, settled questions: whatever the flags, credentials never cross a network in clear text.
PLAIN_HTTP_RULE = "credentials are sent only over https, or over plain http to a loopback address (the emulator)"


@dataclass(frozen=True)
class ClientLimits:
    """The client-side request budget; None switches a limit off."""

    writes_per_minute: int | None = None
    writes_per_day: int | None = None
    requests_per_minute: int | None = None
    requests_per_hour: int | None = None
    min_interval_ms: int | None = None


DOCUMENTED_LIMITS = ClientLimits(writes_per_minute=60, writes_per_day=5000, requests_per_minute=120,
                                 requests_per_hour=5000, min_interval_ms=100)


@dataclass(frozen=True)
class Safety:
    max_delete_fraction: float = 0.3
    min_existing: int = 10
    max_deletes: int = 500


@dataclass(frozen=True)
class CacheSettings:
    """The read cache (`cache.py`): on unless `enabled: false` or `--no-cache`; a full read at least every
    `max_age_hours`; changes are read from `overlap_minutes` before the watermark (clocks differ)."""

    enabled: bool = True
    max_age_hours: float = 168.0
    overlap_minutes: int = 10


@dataclass(frozen=True)
class Credentials:
    """From the environment only. `repr` and `str` never show a secret."""

    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    totp: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Credentials:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        token = get("NEXUDUS_TOKEN")
        if token is not None and not (token.isascii() and token.isprintable()):
            # (sent as `Authorization: Bearer …`, which carries printable ASCII alone; the value is never shown)
            raise ConfigError("NEXUDUS_TOKEN holds a character an HTTP header cannot carry (a line break, a control "
                              "character, or one outside ASCII): set it to the token alone, as the service gave it")
        return cls(token, get("NEXUDUS_USERNAME"), get("NEXUDUS_PASSWORD"), get("NEXUDUS_TOTP"))

    @property
    def present(self) -> bool:
        return bool(self.token or (self.username and self.password))

    def secrets(self) -> list[str]:
        """Every secret value, so that output can be checked (and scrubbed) for them."""
        return [s for s in (self.token, self.password, self.totp) if s]


@dataclass(frozen=True)
class Config:
    target: str
    target_origin: str
    base_dir: Path
    path: Path | None = None
    seed: Path | None = None
    auth: Literal["token", "basic"] = "token"
    limits: ClientLimits = ClientLimits()
    safety: Safety = Safety()
    cache: CacheSettings = CacheSettings()
    state_dir: Path = Path(".reconciler")
    doctor: dict[str, Any] | None = None  # what `doctor --write-check` may write to: {course, lesson, member}

    @property
    def is_local(self) -> bool:
        return self.target == LOCAL


def normalise_target(target: str, origin: str) -> str:
    target = target.strip()
    if target.lower() == LOCAL:
        return LOCAL
    try:
        parts = urlsplit(target)
        parts.hostname  # noqa: B018 (a bracketed host that is no IPv6 address raises here, as urlsplit does for `[::1`)
    except ValueError as e:
        raise ConfigError(f"the target from {origin} is not a valid URL ({e}): {_shown(target)!r}") from e
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"the target from {origin} must be 'local' or an http(s) URL, not {_shown(target)!r}")
    if parts.username or parts.password:
        raise ConfigError(f"the target from {origin} must not carry credentials; use NEXUDUS_USERNAME/PASSWORD")
    # Credentials go to the target: never in clear text across a network, and no flag lifts this.
    if parts.scheme.lower() == "http" and not is_loopback(parts.hostname or ""):
        raise ConfigError(f"refusing plain http to {parts.hostname} (the target from {origin}): {PLAIN_HTTP_RULE}; "
                          "use https")
    try:
        return _spelled(parts)
    except ValueError as e:  # a port that is not a number, or out of range
        raise ConfigError(f"the target from {origin} has no valid port: {_shown(target)!r}") from e


def _shown(target: str) -> str:
    """A target as an error quotes it: what comes before an `@` (a user and password, however the URL around them
    is misspelled) left out."""
    return f"{MASK}@{target.rsplit('@', 1)[1]}" if "@" in target else target


DEFAULT_PORTS = {"http": 80, "https": 443}


def _spelled(parts: SplitResult) -> str:
    """One spelling of a target: scheme and host in lower case (neither is case-sensitive), the default port
    left out, no trailing slash; so that the plans, journals, caches and profiles of one target, which record
    it, match however `--api` wrote it. ValueError for a port that is not one."""
    scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
    host = f"[{host}]" if ":" in host else host
    netloc = host if port is None or port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def spelled(recorded: str) -> str:
    """A target as a file recorded it, in the one spelling `normalise_target` gives (as it was, when it is no URL)."""
    try:
        parts = urlsplit(recorded.strip())
        return _spelled(parts) if parts.scheme.lower() in ("http", "https") and parts.netloc else recorded
    except ValueError:
        return recorded


def same_target(recorded: object, target: str) -> bool:
    """Whether a target a file recorded (a saved plan, a journal, the read cache, a profile) is `target`, as
    `normalise_target` spells it: a file written before targets were spelled one way may spell it otherwise."""
    return isinstance(recorded, str) and (recorded == target or spelled(recorded) == target)


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: the only hosts plain http may reach (the emulator). Not a name under
    `.localhost`: the system's resolver may ask DNS for it (glibc does), and the password would go wherever that
    answer points."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_config_file(flag: Path | None, paths: Sequence[Path], cwd: Path) -> Path | None:
    if flag is not None:
        if not flag.is_file():
            raise ConfigError(f"--config {flag}: no such file")
        return flag
    here = cwd / CONFIG_NAME
    if here.is_file():
        return here
    if paths:
        first = paths[0]
        folder = first if first.is_dir() else first.parent
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_config(*, config_flag: Path | None = None, api_flag: str | None = None, paths: Sequence[Path] = (),
                env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Config:
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    path = find_config_file(config_flag, paths, cwd)
    data: dict[str, Any] = _read_config(path) if path else {}
    base_dir = path.parent if path else cwd

    if api_flag is not None and not api_flag.strip():  # `--api "$URL"` with URL unset: never a silent default
        raise ConfigError("--api is empty: give the target's URL, or local for the embedded emulator")
    if api_flag:
        target, origin = api_flag, "--api"
    elif env.get("NEXUDUS_API_URL", "").strip():
        target, origin = env["NEXUDUS_API_URL"], "NEXUDUS_API_URL"
    elif "target" in data:
        target, origin = data["target"], str(path)
    else:
        target, origin = LOCAL, "the default"
    target = normalise_target(target, origin)
    if "target" in data and origin in ("--api", "NEXUDUS_API_URL"):
        _note_overridden(str(data["target"]), target, origin, path)

    seed = (base_dir / data["seed"]) if "seed" in data else None
    limits_given = data.get("limits", {})
    base_limits = ClientLimits() if target == LOCAL else DOCUMENTED_LIMITS
    limits = replace(base_limits, **limits_given)
    safety = Safety(**data.get("safety", {}))
    return Config(target=target, target_origin=origin, base_dir=base_dir, path=path, seed=seed,
                  auth=data.get("auth", "token"), limits=limits, safety=safety,
                  cache=CacheSettings(**data.get("cache", {})), state_dir=cwd / ".reconciler",
                  doctor=data.get("doctor"))


def _note_overridden(in_file: str, used: str, origin: str, path: Path | None) -> None:
    """Say which target is used when the file names another: in CI the environment pins it, and a pull
    request that edits the file's target must see that it changed nothing."""
    named = in_file.strip()
    if named.lower() == LOCAL:
        named = LOCAL
    else:
        parts = urlsplit(named)
        if parts.hostname:  # never echo a user:password@ that the file may (wrongly) carry
            try:
                port = f":{parts.port}" if parts.port else ""
            except ValueError:
                port = ""
            named = f"{parts.scheme.lower()}://{parts.hostname}{port}{parts.path.rstrip('/')}"
    if named != used:
        log.warning("note: using the target %s from %s; the target %s in %s is ignored", used, origin, named, path)


def _read_config(path: Path) -> dict[str, Any]:
    documents, problems = load_file(path)
    if problems:
        raise ConfigFileError(problems)
    if not documents or documents[0].data is None:
        return {}
    if len(documents) > 1:
        raise ConfigFileError([Problem(str(path), 1, 1, "the configuration holds exactly one YAML document")])
    problems = schema_problems(documents[0], "config")
    if problems:
        raise ConfigFileError(problems)
    data: dict[str, Any] = documents[0].data
    return data
