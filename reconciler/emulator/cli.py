"""`reconciler emulator serve` and `reconciler emulator seed`: the emulator's own command line.

The product's command line hands every word after `emulator` to `main` (through `reconciler.target`, which
loads the emulator only then), so the product's parser never imports the emulator.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, get_args

from reconciler.emulator.app import (
    MAX_PAGE_SIZE,
    AnswerGarble,
    BatchGet,
    EmulatorApp,
    EnrolmentDelete,
    FromBound,
    Garble,
    Settings,
    SystemIdInLists,
    ToBound,
    User,
)
from reconciler.emulator.errors import EmulatorError, UsageError
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account, load_seed
from reconciler.emulator.server import serve_forever
from reconciler.emulator.store import ENTITIES, Store

PROG = "reconciler emulator"
EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130  # the product's exit codes, as the emulator uses them


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, but 2 means "changes found" to reconciler: raise instead."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None,
         prog: str = PROG) -> int:
    """Run the emulator's command line; returns the exit code (never raises for anything a user could cause)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = build_parser(prog).parse_args(list(sys.argv[1:] if argv is None else argv))
        args.stdout, args.stderr = out, err
        _configure_logging(args, err)
        code: int = args.run(args)
        return code
    except EmulatorError as e:
        print(f"error: {e}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR
    except (OSError, sqlite3.Error) as e:  # the file system or the store's file said no
        where = f"{e.filename}: " if isinstance(e, OSError) and e.filename is not None else ""
        what = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"error: {where}{what}", file=err)
        return EXIT_ERROR


def _configure_logging(args: argparse.Namespace, err: TextIO) -> None:
    """-v / -q given to an emulator command; without them, whatever the caller set up stands."""
    if not args.verbose and not args.quiet:
        return
    log = logging.getLogger("reconciler.emulator")
    log.setLevel(logging.ERROR if args.quiet else logging.INFO if args.verbose == 1 else logging.DEBUG)
    if not log.hasHandlers():
        log.addHandler(logging.StreamHandler(err))


def _port(text: str) -> int:
    """A TCP port (0 picks a free one); anything else is a usage error, not a crash of the socket layer."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return port


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The emulator's parser: `serve` and `seed` (their flags are documented in docs/emulator.md)."""
    emulator = _Parser(prog=prog, description="The Nexudus-compatible emulator.")
    _global_options(emulator, defaults=True)
    common = _Parser(add_help=False)
    _global_options(common, defaults=False)
    add_commands(emulator, common)
    return emulator


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """-v and -q, accepted before or after the command (after it, they must not reset what came before)."""
    keep: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("-v", "--verbose", action="count", help="more detail on stderr",
                        **({"default": 0} if defaults else keep))
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors",
                        **({"default": False} if defaults else keep))


def add_commands(emulator: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    subs = emulator.add_subparsers(dest="emulator_command", metavar="COMMAND", parser_class=type(emulator))
    def show_help(args: argparse.Namespace) -> int:
        emulator.print_help(args.stdout)
        return 1

    emulator.set_defaults(run=show_help)

    serve = subs.add_parser("serve", help="run the emulator as an HTTP server", parents=[common],
                            description="Run the Nexudus-compatible emulator as an HTTP server. Prints "
                                        "'listening on http://HOST:PORT' once it accepts connections.")
    serve.set_defaults(run=_serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    serve.add_argument("--db", type=Path, help="SQLite file holding the state (default: in memory)")
    serve.add_argument("--seed", type=Path, metavar="FILE", help="seed to load when the store is empty")
    serve.add_argument("--user", action="append", default=[], metavar="EMAIL:PASSWORD",
                       help="add a full administrator (repeatable)")
    serve.add_argument("--must-reset-password", action="append", default=[], metavar="EMAIL",
                       help="this user (of --user or the seed) must reset its password: sign-in answers "
                            "must_reset_password (repeatable)")
    serve.add_argument("--no-auth", action="store_true", help="accept requests without credentials")
    serve.add_argument("--token-ttl", type=int, default=604799, metavar="SECONDS")
    serve.add_argument("--totp-reusable", action="store_true",
                       help="accept a two-factor code more than once (default: once only, as a real code)")
    limits = serve.add_argument_group("rate limits (default: the documented ones)")
    limits.add_argument("--limits", choices=("documented", "off"), default="documented")
    defaults = Limits()
    for name in ("min_interval_ms", "requests_per_minute", "requests_per_hour", "requests_per_day",
                 "writes_per_minute", "writes_per_day"):
        limits.add_argument("--" + name.replace("_", "-"), type=int, metavar="N",
                            help=f"default {getattr(defaults, name)}; 0 switches it off")
    limits.add_argument("--throttle-status", type=int, choices=(409, 429), default=409,
                        help="409 with an empty body (documented) or 429 saying 'Wait N seconds'")
    limits.add_argument("--no-retry-after", action="store_true", help="omit the Retry-After header")
    limits.add_argument("--throttle-wait", type=float, metavar="SECONDS",
                        help="advertise this wait on every throttled answer instead of the real one (86400: a day)")
    faults = serve.add_argument_group("fault injection (reproducible with --rng-seed)")
    faults.add_argument("--latency-ms", type=int, default=0)
    faults.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered 500")
    faults.add_argument("--lose-rate", type=float, default=0.0, help="share of writes done but never answered")
    faults.add_argument("--unsuccessful-rate", type=float, default=0.0,
                        help="share of writes answered 200 with WasSuccessful: false, and not done")
    faults.add_argument("--rng-seed", type=int)
    faults.add_argument("--read-outage", type=float, default=0.0, metavar="SECONDS",
                        help="list reads of the outage collections answer 503 for this long after start")
    faults.add_argument("--outage-collection", action="append", choices=sorted(ENTITIES), metavar="NAME",
                        help="a collection --read-outage, --garble and --get-garble apply to (repeatable; default "
                             "coursecompletedlessons)")
    faults.add_argument("--garble", choices=get_args(Garble), metavar="KIND",
                        help="spoil every list read of the outage collections: " + ", ".join(get_args(Garble)))
    faults.add_argument("--write-fail-rate", type=float, default=0.0, metavar="R",
                        help="share of writes answered 500, and not done")
    faults.add_argument("--write-garble", choices=get_args(AnswerGarble),
                        help="writes answered by a 200 HTML page and not done (html), or done and their answer cut "
                             "in half (truncated)")
    faults.add_argument("--write-garble-rate", type=float, default=1.0, metavar="R",
                        help="share of writes --write-garble spoils")
    faults.add_argument("--get-garble", choices=get_args(AnswerGarble),
                        help="get-by-id of the outage collections answered by a 200 HTML page (html), or cut in "
                             "half (truncated)")
    faults.add_argument("--get-garble-rate", type=float, default=1.0, metavar="R",
                        help="share of gets --get-garble spoils")
    faults.add_argument("--churn-between-pages", type=int, default=0, metavar="N",
                        help="before each completion list page from page 2 on, another writer deletes the "
                             "completion with the smallest Id and creates one, N times")
    faults.add_argument("--recreate-deleted", action="store_true",
                        help="a completion deleted over the API comes back at once as a new record (the portal)")
    quirks = serve.add_argument_group("variants of the real service (documented, seen live, or unknown)")
    quirks.add_argument("--create-value", choices=("id", "record"), default="record",
                        help="what a create's Value holds: the whole record (seen live, default) or {Id} (docs)")
    quirks.add_argument("--envelope", choices=("legacy", "modern"), default="legacy",
                        help="modern leaves PageNumber and PageSize out of list envelopes")
    quirks.add_argument("--dir-one-means", choices=("ascending", "descending"), default="ascending")
    quirks.add_argument("--sort-direction-style", choices=("number", "text"), default="number")
    quirks.add_argument("--max-page-size", type=int, default=MAX_PAGE_SIZE, metavar="N",
                        help=f"the most records a list page serves (default {MAX_PAGE_SIZE})")
    quirks.add_argument("--report-requested-size", action="store_true",
                        help="list envelopes report the requested page size while serving only --max-page-size")
    quirks.add_argument("--email-filter", choices=("substring", "exact", "exact-case"), default="exact",
                        help="how Coworker_Email matches (default exact, any case)")
    quirks.add_argument("--ignore-filter", action="append", default=[], metavar="NAME",
                        help="a list filter the server silently ignores (repeatable)")
    quirks.add_argument("--deleted-coworker", action="append", type=int, default=[], metavar="ID",
                        help="a deleted coworker: still listed, GET by id answers 401 (repeatable)")
    quirks.add_argument("--stale-reference-status", type=int, choices=(400, 401), default=400,
                        help="a create naming a missing record: 400 validation (default) or 401 Access Denied")
    quirks.add_argument("--date-style", choices=("live", "millis"), default="live",
                        help="live: whole seconds in lists, 7 digits elsewhere (default); millis everywhere")
    quirks.add_argument("--id-allocation", choices=("sequential", "blocks"), default="sequential",
                        help="blocks: new Ids come from blocks, not in creation order")
    quirks.add_argument("--drop-system-id", action="store_true",
                        help="a create does not keep the SystemId it is sent (owned mode cannot work)")
    quirks.add_argument("--system-id-in-lists", choices=get_args(SystemIdInLists), default="yes",
                        help="list records carry SystemId (yes, default), leave it out (absent) or carry null "
                             "(null); get-by-id still has it")
    quirks.add_argument("--no-system-id-in-lists", dest="system_id_in_lists", action="store_const", const="absent",
                        help="the same as --system-id-in-lists absent")
    quirks.add_argument("--enrolment-delete", choices=get_args(EnrolmentDelete), default="blocked",
                        help="deleting an enrolment that has completions: 200 WasSuccessful false (blocked, "
                             "default), or done with its completions (cascade)")
    quirks.add_argument("--batch-get", choices=get_args(BatchGet), default="honoured",
                        help="?id=[1,2,3] answers an array (honoured, default) or is ignored as an unknown name")
    quirks.add_argument("--refuse-duplicates", action="store_true",
                        help="a completion create for a member and lesson that already have one answers 400")
    quirks.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS",
                        help="the Date header of every answer runs this far ahead of the real time (negative: behind)")
    quirks.add_argument("--backdate-minutes", type=float, nargs=2, default=(0.0, 0.0), metavar=("CREATED", "UPDATED"),
                        help="a record created over the API is stamped this many minutes in the past (CreatedOn, "
                             "UpdatedOn), as by a writer whose clock is behind")
    quirks.add_argument("--to-bound", choices=get_args(ToBound), default="whole-minute",
                        help="what to_…CreatedOn / to_…UpdatedOn=YYYY-MM-DDTHH:mm takes in: the whole minute "
                             "(default), up to HH:mm:00 with it (at-or-before) or without it (before)")
    quirks.add_argument("--from-bound", choices=get_args(FromBound), default="at-or-after",
                        help="what from_…CreatedOn / from_…UpdatedOn=YYYY-MM-DDTHH:mm takes in: from HH:mm:00 with "
                             "it (default) or without it (after)")

    seed = subs.add_parser("seed", help="load a seed into an emulator store", parents=[common],
                           description="Load a friendly YAML seed or a JSON snapshot into an empty store.")
    seed.set_defaults(run=_seed)
    seed.add_argument("file", type=Path, metavar="FILE")
    seed.add_argument("--db", type=Path, default=Path(".reconciler/local.sqlite"))
    seed.add_argument("--replace", action="store_true", help="empty the store first")


def settings_from(args: argparse.Namespace) -> Settings:
    def rate(name: str) -> float:
        value: float = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"--{name.replace('_', '-')} must be between 0 and 1")
        return value

    for name, low in (("max_page_size", 1), ("read_outage", 0), ("churn_between_pages", 0)):
        if getattr(args, name) < low:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {low}")
    if args.throttle_wait is not None and args.throttle_wait <= 0:
        raise UsageError("--throttle-wait must be more than 0")
    base = Limits.off() if args.limits == "off" else Limits()
    overrides = {name: (value or None) for name in base.__dataclass_fields__
                 if (value := getattr(args, name)) is not None}
    return Settings(
        limits=Limits(**{**base.__dict__, **overrides}), throttle_status=args.throttle_status,
        retry_after_header=not args.no_retry_after, latency_ms=args.latency_ms, fail_rate=rate("fail_rate"),
        lose_rate=rate("lose_rate"), unsuccessful_rate=rate("unsuccessful_rate"), rng_seed=args.rng_seed,
        require_auth=not args.no_auth, token_ttl=args.token_ttl, create_value=args.create_value,
        envelope=args.envelope, dir_one_means=args.dir_one_means, sort_direction_style=args.sort_direction_style,
        throttle_wait_seconds=args.throttle_wait, totp_single_use=not args.totp_reusable,
        max_page_size=args.max_page_size, report_requested_size=args.report_requested_size,
        email_filter=args.email_filter, ignored_filters=frozenset(args.ignore_filter),
        deleted_coworkers=frozenset(args.deleted_coworker), stale_reference_status=args.stale_reference_status,
        read_outage_seconds=args.read_outage,
        outage_collections=frozenset(args.outage_collection or Settings().outage_collections),
        garble=args.garble, date_style=args.date_style, id_allocation=args.id_allocation,
        keep_system_id=not args.drop_system_id, system_id_in_lists=args.system_id_in_lists,
        refuse_duplicates=args.refuse_duplicates, clock_offset_seconds=args.clock_offset,
        backdate_minutes=tuple(args.backdate_minutes), to_bound=args.to_bound, from_bound=args.from_bound,
        enrolment_delete=args.enrolment_delete, batch_get=args.batch_get, write_garble=args.write_garble,
        write_garble_rate=rate("write_garble_rate"), write_fail_rate=rate("write_fail_rate"),
        get_garble=args.get_garble, get_garble_rate=rate("get_garble_rate"),
        churn_between_pages=args.churn_between_pages, recreate_deleted=args.recreate_deleted)


def open_store(db: Path | None) -> Store:
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return Store(str(db) if db else None)


def _loopback(host: str) -> bool:
    """Whether a bound host is reached from this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    users = []
    for spec in args.user:
        email, sep, password = spec.partition(":")
        if not sep or not email or not password:
            raise UsageError("--user takes EMAIL:PASSWORD")
        users.append(User.from_account(account(email, password)))
    store = open_store(args.db)
    try:
        if args.seed is not None:
            if store.is_empty():
                result = load_seed(args.seed, store)
                print(f"seeded {_describe(result.counts)}", file=args.stderr, flush=True)
            else:
                print(f"the store already holds records; {args.seed} not loaded", file=args.stderr, flush=True)
        app = EmulatorApp(store, settings, users=[*users, *_must_reset(args.must_reset_password, users, store)])
        if args.no_auth and not _loopback(args.host):
            print(f"warning: serving {args.host} with --no-auth: anyone who reaches this machine on that port can read "
                  "and change every record without credentials", file=args.stderr, flush=True)
        serve_forever(app, args.host, args.port,
                      lambda url: print(f"listening on {url}", file=args.stdout, flush=True))
    finally:
        store.close()
    return 0


def _must_reset(emails: list[str], given: list[User], store: Store) -> list[User]:
    """The users named by --must-reset-password (from --user or the store's seed), flagged; they replace the
    unflagged ones when the app is made."""
    known = {u.email.casefold(): u for u in [*(User.from_account(a) for a in store.users()), *given]}
    flagged = []
    for email in emails:
        user = known.get(email.strip().casefold())
        if user is None:
            raise UsageError(f"--must-reset-password {email}: no such user (add it with --user or in the seed)")
        flagged.append(dataclasses.replace(user, must_reset_password=True))
    return flagged


def _seed(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        result = load_seed(args.file, store, replace=args.replace)
    finally:
        store.close()
    print(f"seeded {args.db}: {_describe(result.counts)}" + (f", {result.users} users" if result.users else ""),
          file=args.stdout)
    return 0


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counts.items())
