"""The command line: parses the arguments, runs one command, and is the one place errors are shown.

Each command is a function in `reconciler/commands/` with explicit parameters that returns an `Outcome`;
`exit_code` is the one mapping from outcomes (and errors) to exit codes (PRODUCT.md):

    0    success; for `plan --detailed-exitcode`, no changes
    1    error: a bad spec, flag or file, an API failure, a refused confirmation, a bug (the traceback is saved)
    2    `plan --detailed-exitcode` found changes
    3    blocked: a safety budget, a stale plan, doctor's limits, or an apply that stopped cleanly (resumable)
    4    `apply` finished with failed actions (`--fail-fast` included) or did not converge
    130  interrupted

Only the chosen command's module is imported, and only its arguments are built, so `--help`, `--version`
and `validate --offline` start without the HTTP client, the emulator or the plan machinery.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

try:
    import fcntl
except ImportError:  # not a POSIX system: no pipe to widen (`widen_pipe`)
    fcntl = None  # type: ignore[assignment]

from reconciler import UNPAIRED, __version__
from reconciler.commands import Console, Outcome
from reconciler.errors import (
    EXIT_BLOCKED,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FileProblems,
    ReconcilerError,
    UsageError,
)
from reconciler.gc_pause import gc_paused

Dispatch = Callable[[argparse.Namespace, Console], Outcome]

CODES = {
    Outcome.OK: EXIT_OK,
    Outcome.NO_CHANGES: EXIT_OK,
    Outcome.CHANGES: EXIT_CHANGES,  # with --detailed-exitcode; 0 without
    Outcome.BLOCKED: EXIT_BLOCKED,
    Outcome.STOPPED: EXIT_BLOCKED,
    Outcome.FAILED: EXIT_FAILED,
    Outcome.ERROR: EXIT_ERROR,
    Outcome.INTERRUPTED: EXIT_INTERRUPTED,
}


def exit_code(result: Outcome | BaseException, *, detailed_exitcode: bool = False) -> int:
    """The exit code of a command's outcome, or of the exception that ended it."""
    if isinstance(result, Outcome):
        if result is Outcome.CHANGES and not detailed_exitcode:
            return EXIT_OK
        return CODES[result]
    if isinstance(result, ReconcilerError):
        return result.exit_code
    if isinstance(result, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_ERROR


# --- the parser ----------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, but 2 means "changes found" here: raise instead."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


@dataclass(frozen=True)
class Command:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Dispatch
    cached: bool = False  # reads completions: takes --no-cache
    globals: bool = True  # takes the global options after its name


def _count(text: str) -> int:
    """A whole number, 0 or more (a budget of deletes)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return value


def _seconds(text: str) -> float:
    """A duration in seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds of 0 or more")
    return value


SWITCH_INTERVAL = 0.0002  # seconds: see `main`

PATHS_HELP = "spec files or folders (default: the current directory)"


def _paths(parser: argparse.ArgumentParser, help_text: str = PATHS_HELP) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help=help_text)


def _courses(parser: argparse.ArgumentParser, help_text: str = "a course title (repeatable; default: every course)"
             ) -> None:
    parser.add_argument("--course", action="append", default=[], metavar="C", help=help_text)


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    _paths(parser)
    parser.add_argument("--offline", action="store_true", help="skip resolving names against the target")


def _validate(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.validate import validate

    return validate(args.paths, offline=args.offline, config_file=args.config, api=args.api, console=console)


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    _paths(parser)
    parser.add_argument("--out", type=Path, metavar="FILE", help="save the plan for `apply --plan`")
    parser.add_argument("--format", choices=("text", "json", "markdown", "html"), default="text")
    parser.add_argument("--out-html", type=Path, metavar="FILE",
                        help="also write the HTML review page (one self-contained file) here")
    parser.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when there are changes")
    parser.add_argument("--allow-deletes", type=_count, metavar="N", help="lift a delete budget up to N deletes")


def _plan(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.plan import plan

    return plan(args.paths, config_file=args.config, api=args.api, out=args.out, out_html=args.out_html,
                output_format=args.format, allow_deletes=args.allow_deletes, cache=not args.no_cache,
                console=console)


def _apply_arguments(parser: argparse.ArgumentParser) -> None:
    _paths(parser)
    parser.add_argument("--plan", type=Path, metavar="FILE", dest="plan_file", help="apply a saved plan")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--allow-deletes", type=_count, metavar="N", help="lift a delete budget up to N deletes")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failed action (exit 4)")
    parser.add_argument("--resume", type=Path, metavar="JOURNAL", help="finish an interrupted apply")
    parser.add_argument("--strict", action="store_true",
                        help="with --plan: refuse the whole plan if any action's precondition no longer holds")
    parser.add_argument("--max-wait", type=_seconds, metavar="SECONDS", default=300.0,
                        help="stop cleanly (exit 3, resumable) when the server asks to wait longer (default 300)")
    parser.add_argument("--max-duration", type=_seconds, metavar="SECONDS",
                        help="stop cleanly (exit 3, resumable) once the apply has run this long")


def _apply(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.apply import apply

    return apply(args.paths, plan_file=args.plan_file, resume=args.resume, yes=args.yes,
                 allow_deletes=args.allow_deletes, fail_fast=args.fail_fast, strict=args.strict,
                 max_wait=args.max_wait, max_duration=args.max_duration, config_file=args.config, api=args.api,
                 cache=not args.no_cache, console=console)


def _undo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("journal", type=Path, metavar="JOURNAL")
    parser.add_argument("--out", type=Path, metavar="FILE", help="save the plan for `apply --plan`")
    parser.add_argument("--allow-deletes", type=_count, metavar="N", help="lift a delete budget up to N deletes")


def _undo(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.undo import undo

    return undo(args.journal, out=args.out, allow_deletes=args.allow_deletes, config_file=args.config, api=args.api,
                console=console)


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    _courses(parser)
    parser.add_argument("--out", type=Path, metavar="DIR", default=Path("."),
                        help="a folder of its own (default: here; refused where other specs already are)")
    parser.add_argument("--mode", choices=("owned", "additive", "authoritative"),
                        help="the exported specs' mode (default owned; additive where doctor found owned cannot work)")
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")


def _export(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.export import export

    return export(courses=args.course, out=args.out, mode=args.mode, force=args.force, config_file=args.config,
                  api=args.api, cache=not args.no_cache, console=console)


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan_file", type=Path, metavar="PLAN")
    parser.add_argument("--format", choices=("text", "markdown", "json", "html"), default="text")


def _show(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.show import show

    return show(args.plan_file, output_format=args.format, console=console)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    _paths(parser, "spec files or folders naming the courses (default: the current directory; with no spec, "
                   "every course)")
    _courses(parser, "a course title (repeatable), instead of the specs' courses")
    parser.add_argument("--format", choices=("markdown", "html"), default="markdown")


def _report(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.report import report

    return report(args.paths, courses=args.course, config_file=args.config, api=args.api, output_format=args.format,
                  cache=not args.no_cache, console=console)


def _snapshot_arguments(parser: argparse.ArgumentParser) -> None:
    _courses(parser)
    parser.add_argument("--out", type=Path, metavar="FILE", help="write here (default: standard output)")


def _snapshot(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.snapshot import snapshot

    return snapshot(courses=args.course, out=args.out, config_file=args.config, api=args.api,
                    cache=not args.no_cache, console=console)


def _init_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", type=Path, default=Path("."), metavar="DIR",
                        help="where (default: the current directory; made if missing)")
    parser.add_argument("--action", metavar="OWNER/REPO@REF",
                        help="the reconciler repository and the tag or commit the workflows and pre-commit use "
                             "(default: the GitHub commit this copy was installed from, else a placeholder to edit)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite files that exist, specs and settings included (to set only the action's "
                             "reference in a layout already there, pass --action alone)")


def _init(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.init import init

    return init(args.directory, action=args.action, force=args.force, console=console)


def _schemas_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, metavar="DIR", required=True, help="the folder to write them in")


def _schemas(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.schemas import schemas

    return schemas(args.out, console=console)


def _doctor_arguments(parser: argparse.ArgumentParser) -> None:
    from reconciler.doctor import add_doctor_arguments

    add_doctor_arguments(parser)


def _doctor(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.doctor import doctor

    return doctor(args.paths, write_check=args.write_check, course=args.course, course_id=args.course_id,
                  lesson=args.lesson, lesson_id=args.lesson_id, member=args.member, member_id=args.member_id,
                  config_file=args.config, api=args.api, console=console)


def _completion_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")


def _completion(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.completion import completion

    return completion(args.shell, build_parser(), console=console)


def _emulator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("words", nargs=argparse.REMAINDER, help="serve | seed, and their options (see "
                                                                 "`reconciler emulator --help`)")


def _emulator(args: argparse.Namespace, console: Console) -> Outcome:
    from reconciler.commands.emulator import emulator

    return emulator(list(args.words), console=console)


COMMANDS: dict[str, Command] = {
    "validate": Command("check spec files: schema, meaning, and names against the target", _validate_arguments,
                        _validate),
    "plan": Command("show what apply would change", _plan_arguments, _plan, cached=True),
    "apply": Command("apply the changes a plan shows", _apply_arguments, _apply, cached=True),
    "undo": Command("plan the inverse of an apply from its journal", _undo_arguments, _undo),
    "export": Command("write the live state as spec files", _export_arguments, _export, cached=True),
    "show": Command("re-render a saved plan (the reviewed file is the applied file)", _show_arguments, _show),
    "report": Command("the current state per course: completion by lesson and team, and the matrix",
                      _report_arguments, _report, cached=True),
    "snapshot": Command("save the raw API records of the scope as a JSON snapshot", _snapshot_arguments, _snapshot,
                        cached=True),
    "init": Command("scaffold a repository: completions/, reconciler.yaml, GitHub workflows, pre-commit",
                    _init_arguments, _init),
    "schemas": Command("write the JSON Schemas where editors can load them", _schemas_arguments, _schemas),
    "doctor": Command("measure the target (sign-in, roles, page size, filters, dates, clock) and write "
                      ".reconciler/target-profile.json, which plan, apply and export then use", _doctor_arguments,
                      _doctor),
    "completion": Command("print the shell completion script for bash, zsh or fish", _completion_arguments,
                          _completion),
    "emulator": Command("the Nexudus-compatible emulator (serve, seed; see `reconciler emulator --help`)",
                        _emulator_arguments, _emulator, globals=False),
}


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The global options, accepted before or after the subcommand."""
    keep: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--api", metavar="URL", help="API base URL, or 'local' for the embedded emulator "
                        "(default: NEXUDUS_API_URL, then reconciler.yaml's target, then local)", **keep)
    parser.add_argument("--config", metavar="FILE", type=Path, help="configuration file (default: "
                        "./reconciler.yaml, else the one in the first PATH)", **keep)
    counted: dict[str, Any] = {"default": 0} if defaults else keep
    flagged: dict[str, Any] = {"default": False} if defaults else keep
    parser.add_argument("-v", "--verbose", action="count", help="explain decisions on stderr; -vv adds an HTTP "
                        "trace (credentials redacted)", **counted)
    parser.add_argument("-q", "--quiet", action="store_true", help="only what a script needs: the target, the "
                        "summary line, warnings and errors", **flagged)
    parser.add_argument("--no-color", action="store_true", help="plain output (also NO_COLOR or no terminal)",
                        **flagged)
    # Retired (PRODUCT.md, settled questions: no flag sends credentials over plain http to another host). Still
    # recognised, hidden from --help, so that a script passing it is told why it is refused, not "unrecognized".
    parser.add_argument("--allow-insecure-http", action="store_true", help=argparse.SUPPRESS, **flagged)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (`only`) every command's name and help with just that one's arguments:
    building a command's arguments may import its module, and `--help` needs none of them."""
    parser = _Parser(prog="reconciler", description=f"reconciler {__version__}: course completions as code for "
                     "Nexudus.", epilog="Exit codes: 0 ok, 1 error, 2 changes (plan --detailed-exitcode), "
                     "3 blocked or stopped (resumable), 4 apply had failures, 130 interrupted. Shell completion: "
                     "`reconciler completion bash|zsh|fish`.")
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    _global_options(parser, defaults=True)
    common = _Parser(add_help=False)
    _global_options(common, defaults=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, command in COMMANDS.items():
        if not command.globals:  # the words after it belong to another program
            sub = commands.add_parser(name, help=command.help, add_help=False, prefix_chars="\0")
        else:
            sub = commands.add_parser(name, help=command.help, description=command.help, parents=[common])
        sub.set_defaults(run=command.run)
        if only is not None and name != only:
            continue
        command.arguments(sub)
        if command.cached:
            sub.add_argument("--no-cache", action="store_true", help="read the completions in full, neither using "
                             "nor updating the read cache (.reconciler/cache/)")
    return parser


_VALUED = ("--api", "--config")  # the global options that take a value, as the words before a command may hold


def chosen_command(words: Sequence[str]) -> str | None:
    """The command the words name (the first word that is not an option or an option's value), if known."""
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word == "--":
            return None
        if word.startswith("-"):
            skip = "=" not in word and len(word) > 3 and any(option.startswith(word) for option in _VALUED)
            continue
        return word if word in COMMANDS else None
    return None


# --- the boundary --------------------------------------------------------------------------------

PIPE_SIZE = 1 << 20  # bytes: what standard output is widened to when it is a pipe (Linux lets anyone have 1 MiB)


def run() -> NoReturn:
    """The `reconciler` command (and `python -m reconciler`): `main`, then the process ends at once with its code.
    Everything a run writes is written and flushed (or fsynced) by then, and no thread of it still writes anything
    the run keeps (a thread left may only be reading: a page ahead after Ctrl-C, the trust store after an early
    error; daemon threads, which the interpreter's ending never waited for either): that ending would only take
    apart, one by one, the modules and objects of a process that is going away (about 8 ms after a plan of 3,000
    members). Standard output and error are flushed first.

    Standard output into a pipe is first widened to PIPE_SIZE where the system allows it (`widen_pipe`)."""
    widen_pipe(sys.stdout)
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a stream closed: nothing more can be said
            pass
    os._exit(code)


def widen_pipe(out: TextIO | None) -> None:
    """Let `out`, when it is a pipe smaller than PIPE_SIZE, hold PIPE_SIZE bytes rather than the usual 64 KiB
    (Linux's F_SETPIPE_SZ; a pipe its maker made larger is left so, and elsewhere, or when refused, nothing changes).
    A plan printed as JSON is megabytes (6.8 MB for 3,000 members): through a 64 KiB pipe the program stops at every
    64 KiB until its reader has taken them, a hundred times over; with room for a megabyte the two work side by side
    (about 10 ms less for that plan into `jq` or a CI step)."""
    if out is None or fcntl is None or not hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux's alone
        return
    try:
        descriptor = out.fileno()
        if stat.S_ISFIFO(os.fstat(descriptor).st_mode) and fcntl.fcntl(descriptor, fcntl.F_GETPIPE_SZ) < PIPE_SIZE:
            fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, ValueError, io.UnsupportedOperation):  # not a file, closed, or more than the system allows
        pass


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line; returns the exit code. The one place errors are printed: an expected one
    as one `error: ...` line with its documented code, anything else as one line saying it is a bug and
    where its traceback was saved (exit 1). Never raises."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    with _unpaired_escaped(out), _unpaired_escaped(err):
        return _main(list(sys.argv[1:] if argv is None else argv), out, err)


@contextmanager
def _unpaired_escaped(stream: TextIO) -> Iterator[None]:
    """`stream` writing a lone surrogate (a server's text cut in the middle of an emoji: UTF-8 has no such
    character) as its escape, `\\ud83d`, while main runs (as every file the tool writes: `UNPAIRED`): one member's
    name must not stop every command."""
    before = stream.errors if isinstance(stream, io.TextIOWrapper) else None
    # (surrogateescape, Python's own for a POSIX locale, writes U+DC80 to U+DCFF only)
    if not isinstance(stream, io.TextIOWrapper) or before not in ("strict", "surrogateescape"):
        yield
        return
    stream.reconfigure(errors=UNPAIRED)
    try:
        yield
    finally:
        stream.reconfigure(errors=before)


def _main(words: list[str], out: TextIO, err: TextIO) -> int:
    try:
        parser = build_parser(only=chosen_command(words) or "")  # no command: help, or a usage error
        with redirect_stdout(out):  # --help and --version print, then exit 0
            try:
                args = parser.parse_args(words)
            except SystemExit as e:
                out.flush()  # a reader that went away is met here, not at the interpreter's exit
                return e.code if isinstance(e.code, int) else EXIT_OK
        if getattr(args, "run", None) is None:
            parser.print_help(out)
            return EXIT_ERROR
        configure_logging(args.verbose, args.quiet, err)
        # A read asks for its next pages in a thread that mostly waits on the socket (client.pages): once an
        # answer is in, it gets the interpreter within 0.2 ms rather than the default 5 ms, so that our work
        # on the pages in hand and the server's on the next overlap (with one thread, nothing changes).
        previous = sys.getswitchinterval()  # put back after: main may be called by a program of its own
        sys.setswitchinterval(SWITCH_INTERVAL)
        console = Console(out, err, quiet=bool(args.quiet), color=use_color(bool(args.no_color), out), argv=words)
        detailed = bool(getattr(args, "detailed_exitcode", False))
        try:
            _import_command(args.command)
            outcome = _run(args, console)
        finally:
            sys.setswitchinterval(previous)
        out.flush()
        return exit_code(outcome, detailed_exitcode=detailed)
    except ReconcilerError as e:
        from reconciler.redact import redact
        from reconciler.render import shown  # a name in a message: its control characters as escapes

        print("error: " + "\n".join(map(shown, _message_lines(e, redact))), file=err)
        return exit_code(e)
    except KeyboardInterrupt as e:
        print("interrupted", file=err)
        return exit_code(e)
    except BrokenPipeError as e:  # the reader went away (`reconciler plan | head`): nothing more to say
        _silence(out)
        return exit_code(e)
    except OSError as e:  # the file system said no (a folder where a file was named, no permission, disk full)
        print(f"error: {_os_error(e)}", file=err)
        return exit_code(e)
    except Exception as e:  # a bug: say so on one line, keep the traceback in a file
        print(f"error: {_bug_report(e, words)}", file=err)
        return exit_code(e)


def _message_lines(error: ReconcilerError, redact: Callable[[str], str]) -> list[str]:
    """An expected error's message, a line each: one per problem for problems in files (a line break in a name
    a problem quotes stays in its line, to be shown as its escape, and cannot start a line of its own), else
    the lines the message has."""
    if isinstance(error, FileProblems):
        head = str(error).split("\n", 1)[0]
        return [redact(head), *(redact(str(problem)) for problem in error.problems)]
    return redact(str(error)).split("\n")


def _import_command(name: str) -> None:
    """Import the command's module (and what it needs) with the collector paused: a hundred thousand objects that
    live as long as the process, nothing to collect. Without httpx's own command line: httpx imports it (click,
    pygments and rich: about 10 ms) whenever they are installed, and this program never runs it; marked missing
    before httpx is first imported, that import fails as where they are not installed, and httpx defines its
    placeholder `httpx.main` instead (nothing else of httpx changes)."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    with gc_paused():
        importlib.import_module(f"reconciler.commands.{name}")


def _run(args: argparse.Namespace, console: Console) -> Outcome:
    if args.allow_insecure_http:
        from reconciler.config import PLAIN_HTTP_RULE

        raise UsageError(f"--allow-insecure-http is no longer accepted: {PLAIN_HTTP_RULE}, whatever the flags; "
                         "use https")
    run: Dispatch = args.run
    return run(args, console)


def _os_error(error: OSError) -> str:
    """One line for an error of the file system: what it said, and about which path."""
    what = error.strerror or str(error)
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {what}" if paths else what


def _bug_report(error: Exception, words: list[str]) -> str:
    """Save the traceback (credentials redacted) and return the line that points at it."""
    import tempfile
    import traceback

    from reconciler.redact import redact

    text = "".join(traceback.format_exception(error))
    report = f"reconciler {__version__}, Python {sys.version.split()[0]}\nreconciler {' '.join(words)}\n\n{text}"
    try:
        handle, name = tempfile.mkstemp(prefix="reconciler-bug-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8", errors=UNPAIRED) as file:
            file.write(redact(report))
        where = f"the traceback is in {name}"
    except OSError as e:
        where = f"its traceback could not be saved ({e.strerror})"
    summary = redact(" ".join(f"{type(error).__name__}: {error}".split()))[:200]
    return f"a bug in reconciler ({summary}); {where}; please report it"


def _silence(out: TextIO) -> None:
    """After a broken pipe, point stdout at /dev/null so that the interpreter's last flush does not fail too."""
    if out is not sys.stdout:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def configure_logging(verbose: int, quiet: bool, err: TextIO) -> None:
    """-q: errors only; default: warnings; -v: the decisions ("reconciler" at INFO); -vv: DEBUG, and the HTTP
    trace ("reconciler.http"). Every log line goes to `err` (stderr), never to the output."""
    import logging  # here: `--help` and `--version` never need it
    level = logging.ERROR if quiet else logging.WARNING if not verbose else logging.INFO if verbose == 1 \
        else logging.DEBUG
    log = logging.getLogger("reconciler")
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(message)s"))
    from reconciler.redact import RedactingFilter

    handler.addFilter(RedactingFilter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    logging.getLogger("reconciler.http").setLevel(logging.DEBUG if verbose >= 2 and not quiet else logging.WARNING)


def use_color(no_color: bool, out: TextIO) -> bool:
    if no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())
