"""The command line: parses arguments, runs one command, and maps its outcome to an exit code.

Exit codes (PRODUCT.md): 0 success / no changes, 1 error, 2 changes found (plan --detailed-exitcode),
3 blocked by a safety budget or a stale plan, 4 apply finished with failures, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from reconciler import __version__
from reconciler.apply_command import run_apply, run_undo
from reconciler.config import ALLOW_INSECURE_HTTP, Config, load_config
from reconciler.doctor import add_doctor_arguments, run_doctor
from reconciler.emulator.seed import snapshot_document
from reconciler.errors import (
    EXIT_BLOCKED,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    ReconcilerError,
    TransportError,
    UsageError,
)
from reconciler.export import duplicates_to_remove, export_specs, write_files
from reconciler.foreign_yaml import load_spec_set
from reconciler.init_command import add_init_commands
from reconciler.model import SpecSet
from reconciler.planning import load_plan, make_plan, save_plan, write_document
from reconciler.profile import export_mode
from reconciler.render import markdown, write_json, write_text
from reconciler.render_html import html_page
from reconciler.report import read_report, report_markdown
from reconciler.resolve import resolve
from reconciler.schemas import FOLDER as SCHEMA_FOLDER
from reconciler.schemas import write_schemas
from reconciler.state import StateReader
from reconciler.target import connect

Command = Callable[[argparse.Namespace], int]
CACHED_COMMANDS = ("plan", "apply", "export", "report", "snapshot")  # the commands that read completions


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, but 2 means "changes found" here: raise instead."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The global options, accepted before or after the subcommand."""
    keep: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--api", metavar="URL", help="API base URL, or 'local' for the embedded emulator "
                        "(default: NEXUDUS_API_URL, then reconciler.yaml's target, then local)", **keep)
    parser.add_argument("--config", metavar="FILE", type=Path, help="configuration file (default: "
                        "./reconciler.yaml, else the one in the first PATH)", **keep)
    counted: dict[str, Any] = {"default": 0} if defaults else keep
    flagged: dict[str, Any] = {"default": False} if defaults else keep
    parser.add_argument("-v", "--verbose", action="count", help="more detail on stderr", **counted)
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the essential output", **flagged)
    parser.add_argument("--no-color", action="store_true", help="plain output (also NO_COLOR or no terminal)",
                        **flagged)
    parser.add_argument("--allow-insecure-http", action="store_true", help="let credentials go to a plain http:// "
                        "target that is not loopback (a lab emulator; never the real service)", **flagged)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconciler", description="Course completions as code for Nexudus.")
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    _global_options(parser, defaults=True)
    common = _Parser(add_help=False)
    _global_options(common, defaults=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str, run: Command) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(run=run)
        if name in CACHED_COMMANDS:
            sub.add_argument("--no-cache", action="store_true", help="read the completions in full, neither using "
                             "nor updating the read cache (.reconciler/cache/)")
        return sub

    paths_help = "spec files or folders (default: the current directory)"
    validate = command("validate", "check spec files: schema, meaning, and names against the target", _validate)
    validate.add_argument("paths", nargs="*", type=Path, metavar="PATH", help=paths_help)
    validate.add_argument("--offline", action="store_true", help="skip resolving names against the target")

    plan = command("plan", "show what apply would change", _plan)
    plan.add_argument("paths", nargs="*", type=Path, metavar="PATH", help=paths_help)
    plan.add_argument("--out", type=Path, metavar="FILE", help="save the plan for `apply --plan`")
    plan.add_argument("--format", choices=("text", "json", "markdown", "html"), default="text")
    plan.add_argument("--out-html", type=Path, metavar="FILE",
                      help="also write the HTML review page (one self-contained file) here")
    plan.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when there are changes")
    plan.add_argument("--allow-deletes", type=int, metavar="N", help="lift a delete budget up to N deletes")

    apply = command("apply", "apply the changes a plan shows", _apply)
    apply.add_argument("paths", nargs="*", type=Path, metavar="PATH", help=paths_help)
    apply.add_argument("--plan", type=Path, metavar="FILE", dest="plan_file", help="apply a saved plan")
    apply.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    apply.add_argument("--allow-deletes", type=int, metavar="N", help="lift a delete budget up to N deletes")
    apply.add_argument("--fail-fast", action="store_true", help="stop at the first failed action")
    apply.add_argument("--resume", type=Path, metavar="JOURNAL", help="finish an interrupted apply")
    apply.add_argument("--strict", action="store_true",
                       help="with --plan: refuse the whole plan if any action's precondition no longer holds")
    apply.add_argument("--max-wait", type=float, metavar="SECONDS", default=300.0,
                       help="stop cleanly (exit 3, resumable) when the server asks to wait longer (default 300)")
    apply.add_argument("--max-duration", type=float, metavar="SECONDS",
                       help="stop cleanly (exit 3, resumable) once the apply has run this long")

    undo = command("undo", "plan the inverse of an apply from its journal", _undo)
    undo.add_argument("journal", type=Path, metavar="JOURNAL")
    undo.add_argument("--out", type=Path, metavar="FILE", help="save the plan for `apply --plan`")

    export = command("export", "write the live state as spec files", _export)
    export.add_argument("--course", action="append", default=[], metavar="C",
                        help="a course title (repeatable; default: every course)")
    export.add_argument("--out", type=Path, metavar="DIR", default=Path("."), help="folder (default: here)")
    export.add_argument("--mode", choices=("owned", "additive", "authoritative"),
                        help="the exported specs' mode (default owned; additive where doctor found owned cannot work)")
    export.add_argument("--force", action="store_true", help="overwrite files that exist")

    show = command("show", "re-render a saved plan (the reviewed file is the applied file)", _show)
    show.add_argument("plan_file", type=Path, metavar="PLAN")
    show.add_argument("--format", choices=("text", "markdown", "json", "html"), default="text")

    report = command("report", "the current state per course: completion by lesson and team, and the matrix",
                     _report)
    report.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="spec files or folders naming the courses (default: the current directory; with no "
                             "spec, every course)")
    report.add_argument("--course", action="append", default=[], metavar="C",
                        help="a course title (repeatable), instead of the specs' courses")
    report.add_argument("--format", choices=("markdown", "html"), default="markdown")

    snapshot = command("snapshot", "save the raw API records of the scope as a JSON snapshot", _snapshot)
    snapshot.add_argument("--course", action="append", default=[], metavar="C",
                          help="a course title (repeatable; default: every course)")
    snapshot.add_argument("--out", type=Path, metavar="FILE", help="write here (default: standard output)")

    add_init_commands(command)

    doctor = command("doctor", "measure the target (sign-in, roles, page size, filters, dates, clock) and write "
                     ".reconciler/target-profile.json, which plan, apply and export then use", _doctor)
    add_doctor_arguments(doctor)

    from reconciler.emulator import cli as emulator_cli

    emulator = commands.add_parser("emulator", help="the Nexudus-compatible emulator",
                                   description="The Nexudus-compatible emulator.", parents=[common])
    emulator_cli.add_commands(emulator, common)
    return parser


def load_context(args: argparse.Namespace, *, require_any: bool = True) -> tuple[Config, SpecSet]:
    """The configuration and the spec set a command works on (an empty set is an error unless allowed)."""
    config = load_config(config_flag=args.config, api_flag=args.api, paths=args.paths)
    specs = load_spec_set(args.paths or [Path(".")], [config.seed] if config.seed else [], require_any=require_any)
    return config, specs


def _validate(args: argparse.Namespace) -> int:
    # Files named one by one (the pre-commit hook names every changed YAML) may hold no spec at all.
    config, specs = load_context(args, require_any=not args.paths or any(p.is_dir() for p in args.paths))
    count = len(specs.completions) + len(specs.migrations)
    files = len(specs.files)
    summary = f"{count} spec{'s' if count != 1 else ''} in {files} file{'s' if files != 1 else ''}"
    if args.offline:
        print(f"valid: {summary} (offline: names not resolved)", file=args.stdout)
        return EXIT_OK
    try:
        with connect(config) as target:
            catalog = StateReader(target.client).catalog(specs)
            resolution = resolve(specs, catalog)
    except (ConfigError, TransportError) as e:
        print(f"note: names not resolved: {e}", file=args.stderr)
        print(f"valid: {summary} (offline: names not resolved)", file=args.stdout)
        return EXIT_OK
    for warning in resolution.warnings:
        print(f"warning: {warning}", file=args.stderr)
    print(f"valid: {summary}; every name resolved against {target.description}", file=args.stdout)
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    config, specs = load_context(args)
    with connect(config, cache=not args.no_cache) as target:
        planned = make_plan(target, specs, config, allow_deletes=args.allow_deletes)
    doc = planned.doc
    if args.out:
        save_plan(doc, args.out, planned.spec_files)
    if args.out_html:
        write_page(html_page(doc), args.out_html)
    if args.format == "json":
        write_json(doc, args.stdout)
    elif args.format == "markdown":
        args.stdout.write(markdown(doc, full_plan_hint=f"`{args.out}`" if args.out else "the JSON plan"))
    elif args.format == "html":
        args.stdout.write(html_page(doc))
    else:
        write_text(doc, args.stdout, color=use_color(args))
    if args.out:
        print(f"saved the plan to {args.out}; apply it with: reconciler apply --plan {args.out}", file=args.stderr)
    if args.out_html:
        print(f"wrote the review page to {args.out_html}", file=args.stderr)
    if planned.plan.blocked:
        return EXIT_BLOCKED
    return EXIT_CHANGES if args.detailed_exitcode and planned.plan.has_changes else EXIT_OK


def write_page(text: str, path: Path) -> None:
    """Write a page atomically, so a reader never opens half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def _show(args: argparse.Namespace) -> int:
    saved = load_plan(args.plan_file)  # validated and typed, exactly as apply --plan reads it
    doc = saved.document
    if args.format == "json":
        write_json(doc, args.stdout)
    elif args.format == "markdown":
        args.stdout.write(markdown(doc, full_plan_hint=f"`{args.plan_file}`"))
    elif args.format == "html":
        args.stdout.write(html_page(doc))
    else:
        write_text(doc, args.stdout, color=use_color(args))
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    if args.course:
        config, specs = load_config(config_flag=args.config, api_flag=args.api, paths=args.paths), SpecSet()
    else:  # the specs' courses; every course when PATH holds no spec
        config, specs = load_context(args, require_any=False)
    with connect(config, cache=not args.no_cache) as target:
        doc = read_report(target, specs, args.course, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    args.stdout.write(html_page(doc) if args.format == "html" else report_markdown(doc))
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    return run_doctor(args)


def _apply(args: argparse.Namespace) -> int:
    return run_apply(args, color=use_color(args))


def _undo(args: argparse.Namespace) -> int:
    return run_undo(args, color=use_color(args))


def _export(args: argparse.Namespace) -> int:
    config = load_config(config_flag=args.config, api_flag=args.api, paths=[])
    with connect(config, cache=not args.no_cache) as target:
        mode, note = export_mode(args.mode, target.profile)
        records = StateReader(target.client, target.cache).snapshot(args.course)
        requests = target.client.stats.requests
    if note:
        print(f"note: {note}", file=args.stderr)
    files = export_specs(records, mode=mode, target=target.description)
    written = write_files(files, args.out, force=args.force)
    for path in written:
        print(path, file=args.stdout)
    # The exported specs' first line points editors here (relative to each spec).
    write_schemas(args.out / SCHEMA_FOLDER)
    cleanup = duplicates_to_remove(records, mode=mode)
    outcome = "shows no changes"
    if cleanup:
        outcome += (f", except removing {sum(cleanup.values()):,} duplicate completion(s) that the exported specs' "
                    "own mode may delete (the oldest of each is kept): "
                    + ", ".join(f"{title}: {count:,}" for title, count in cleanup.items()))
    print(f"exported {len(written)} course(s) from {target.description} ({requests} requests); "
          f"`reconciler plan {args.out}` {outcome}", file=args.stderr)
    return EXIT_OK


def _snapshot(args: argparse.Namespace) -> int:
    config = load_config(config_flag=args.config, api_flag=args.api, paths=[])
    with connect(config, cache=not args.no_cache) as target:
        records = StateReader(target.client, target.cache).snapshot(args.course)
        requests = target.client.stats.requests
    document = snapshot_document(records)
    if args.out:
        write_document(document, args.out)
        counts = ", ".join(f"{len(v):,} {k}" for k, v in records.items())
        print(f"saved a snapshot of {target.description} to {args.out}: {counts} ({requests} requests)",
              file=args.stderr)
    else:
        write_json(document, args.stdout)
    return EXIT_OK


def use_color(args: argparse.Namespace) -> bool:
    if args.no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(args.stdout, "isatty", None)
    return bool(isatty and isatty())


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line; returns the exit code (never raises for anything a user could cause)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(words)
        args.stdout, args.stderr, args.argv = out, err, words
        _configure_logging(args, err)
        run: Command | None = getattr(args, "run", None)
        if run is None:
            build_parser().print_help(out)
            return EXIT_ERROR
        insecure = ALLOW_INSECURE_HTTP.set(bool(getattr(args, "allow_insecure_http", False)))
        try:
            return run(args)
        finally:
            ALLOW_INSECURE_HTTP.reset(insecure)
    except ReconcilerError as e:
        print(f"error: {e}", file=err)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR


def _configure_logging(args: argparse.Namespace, err: TextIO) -> None:
    level = logging.WARNING
    if getattr(args, "verbose", 0):
        level = logging.INFO if args.verbose == 1 else logging.DEBUG
    if getattr(args, "quiet", False):
        level = logging.ERROR
    root = logging.getLogger("reconciler")
    root.handlers[:] = [logging.StreamHandler(err)]
    root.setLevel(level)
