"""Connecting to the target: the real service over HTTPS, or the embedded emulator in process.

Both are reached through the same NexudusClient; only the httpx transport differs.

This is the one product module that imports the emulator (`reconciler/emulator/`), and only inside the
functions that need it: connecting the `local` target, and `reconciler emulator ...` (`run_emulator`). The
emulator imports nothing from the product; the two share the seed schema and snapshot format as data.
tests/test_layout.py holds both sides to that.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

import httpx

from reconciler.cache import RANGE_KEY, ReadCache
from reconciler.client import NexudusClient
from reconciler.config import Config, Credentials
from reconciler.errors import ConfigError, Problem, SeedError
from reconciler.profile import TargetProfile, profiled

LOCAL_BASE = "http://local.reconciler"


@dataclass
class Target:
    client: NexudusClient
    description: str
    credentials: Credentials
    profile: TargetProfile | None = None  # what `doctor` measured about this target, when it did
    cache: ReadCache | None = None  # the completions last read (`cache.py`), for the commands that use it


class TrustStore:
    """The TLS context the client verifies the target with, exactly as httpx makes it by default (certifi's
    certificates, or SSL_CERT_FILE or SSL_CERT_DIR), loaded on a thread of its own from the moment it is made:
    loading the certificates takes about 20 ms, which OpenSSL spends without holding the interpreter, so a command
    that makes it before loading its specs has it for nothing. What loading raised is raised by `context`."""

    def __init__(self) -> None:
        self._context: ssl.SSLContext | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, name="reconciler-trust-store", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            self._context = httpx.create_ssl_context()
        except BaseException as e:  # the caller's to raise, where httpx.Client(verify=True) would have
            self._error = e

    def context(self) -> ssl.SSLContext:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._context is not None
        return self._context


def trust_store(config: Config) -> TrustStore | None:
    """The trust store of a remote target, loading from now on (see TrustStore); None for the local emulator."""
    return None if config.is_local else TrustStore()


def describe(config: Config) -> str:
    if config.is_local:
        return f"local emulator ({config.state_dir / 'local.sqlite'})"
    return config.target


def read_cache(config: Config, profile: TargetProfile | None) -> ReadCache | None:
    """The read cache of a remote target (the local one costs nothing to read in full); None when off. What its
    counts by `to_…CreatedOn` ask by is the profile's measure, never an assumption: without one (None) the cache
    measures it itself before it counts by it."""
    if config.is_local or not config.cache.enabled:
        return None
    vouched = profile is not None and RANGE_KEY in profile.honoured_filters and \
        _section_state(profile, "counts") == "exact"
    until = profile.created_until if profile is not None else None
    return ReadCache(config.state_dir / "cache", describe(config), config.cache, vouched=vouched, until=until)


def _section_state(profile: TargetProfile, name: str) -> str | None:
    section = profile.document.get(name)
    return str(section.get("state")) if isinstance(section, dict) else None


@contextmanager
def connect(config: Config, env: Mapping[str, str] | None = None, *, profile: bool = True,
            cache: bool = False, trust: TrustStore | None = None) -> Iterator[Target]:
    """A client for the configured target, closed on exit; started from the target's profile (`profile`);
    with the read cache when `cache` (and the configuration does not switch it off); verifying the target's
    certificate with `trust` when the caller started loading it earlier (`trust_store`), as httpx does by default
    otherwise."""
    env = os.environ if env is None else env
    if config.is_local:
        import sqlite3

        from reconciler.emulator import errors
        from reconciler.emulator.app import EmulatorApp, Settings
        from reconciler.emulator.limits import Limits
        from reconciler.emulator.seed import load_seed
        from reconciler.emulator.server import InProcessTransport
        from reconciler.emulator.store import Store

        db = config.state_dir / "local.sqlite"
        db.parent.mkdir(parents=True, exist_ok=True)
        # The owner's alone, as the journal is (a seed may be a snapshot of a live space); SQLite's side files
        # take its mode.
        try:
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:  # there already (or not to be made: the store says why)
            pass
        try:
            store = Store(str(db))
        except sqlite3.DatabaseError as e:  # not a database, cut short, or rows it did not write
            again = f"; it is seeded again from {config.seed}" if config.seed else ""
            raise ConfigError(f"the local emulator's store {db} is damaged ({e}): move it aside and run again"
                              f"{again}") from e
        try:
            if store.is_empty() and config.seed is not None:
                try:
                    load_seed(config.seed, store)
                except errors.SeedError as e:  # the emulator's own error, as the product's
                    raise SeedError([Problem(p.path, p.line, p.column, p.message) for p in e.problems]) from e
            limits = config.limits
            app = EmulatorApp(store, Settings(
                limits=Limits(min_interval_ms=limits.min_interval_ms, requests_per_minute=limits.requests_per_minute,
                              requests_per_hour=limits.requests_per_hour, requests_per_day=None,
                              writes_per_minute=limits.writes_per_minute, writes_per_day=limits.writes_per_day),
                require_auth=False))
            with httpx.Client(transport=InProcessTransport(app)) as http:
                client = NexudusClient(LOCAL_BASE, http, limits=config.limits)
                with profiled(client, config.state_dir, describe(config), enabled=profile) as found:
                    yield Target(client, describe(config), Credentials(), found)
        finally:
            store.close()
        return
    credentials = Credentials.from_env(env)
    if not credentials.present:
        raise ConfigError(f"no credentials for {config.target}: set NEXUDUS_TOKEN, or NEXUDUS_USERNAME and "
                          "NEXUDUS_PASSWORD (and NEXUDUS_TOTP with two-factor sign-in)")
    if config.auth == "basic" and not (credentials.username and credentials.password):
        raise ConfigError("auth: basic needs NEXUDUS_USERNAME and NEXUDUS_PASSWORD")
    # Plain http is for loopback alone (`normalise_target`): no proxy of the environment's (HTTP_PROXY, ALL_PROXY)
    # may carry its credentials across a network in clear. Over https a proxy only tunnels the TLS.
    plain = config.target.startswith("http://")
    with httpx.Client(verify=trust.context() if trust is not None else True, follow_redirects=False,
                      trust_env=not plain) as http:
        client = NexudusClient(config.target, http, credentials=credentials, auth_mode=config.auth,
                               limits=config.limits)
        with profiled(client, config.state_dir, describe(config), enabled=profile) as found:
            yield Target(client, describe(config), credentials, found, read_cache(config, found) if cache else None)


def run_emulator(argv: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    """`reconciler emulator ...`: the emulator's own command line, loaded only now; its exit code."""
    from reconciler.emulator.cli import main

    return main(argv, stdout=stdout, stderr=stderr)
