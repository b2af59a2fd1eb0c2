"""The exception tree: every error a user can cause or meet, each carrying its context.

    ReconcilerError                 (exit 1 unless noted)
    ├── UsageError                  a bad flag combination or a command that cannot run as asked
    ├── ConfigError                 the environment or a flag's value is wrong
    ├── PlanFileError               a saved plan or journal that is malformed or was edited after the fact
    ├── TargetMismatch              a journal (to resume or undo) of an apply to another target
    ├── StalePlan                   (exit 3) a saved plan that no longer holds: another target, changed specs
    ├── FileProblems                one or more problems in files we read, each with file:line:col
    │   ├── SpecError               spec files (schema, meaning, name resolution)
    │   ├── ConfigFileError         reconciler.yaml
    │   └── SeedError               an emulator seed (friendly YAML or JSON snapshot)
    ├── ApiError                    the Nexudus API answered with a failure (method, URL, status)
    │   ├── AuthError               401, or the token endpoint refused the credentials
    │   │   └── WriteRefused        a 401 on one write that a fresh session did not cure: that item's failure
    │   ├── NotFoundError           404
    │   ├── ValidationFailed        400 with an Errors list, or 200 with WasSuccessful: false
    │   ├── TransportError          the server could not be reached after the retries
    │   ├── MalformedAnswer         an answer that cannot be believed: not JSON, HTML, cut short, wrong types
    │   ├── PartialRead             a list read that did not add up: short pages, a moving total, endless pages
    │   ├── AmbiguousWrite          (client.py) a write whose answer was lost or unreadable: re-read first
    │   └── StopRun                 (exit 3) the run must stop cleanly now and be resumed later
    │       ├── DailyCapReached     the client-side daily write budget is spent
    │       ├── ThrottledTooLong    the server asked for a wait longer than allowed, or never stopped throttling
    │       ├── SessionExpired      the session cannot be renewed without a new two-factor code
    │       ├── DeadlineReached     the run's deadline passed before the next request or wait
    │       └── Interrupted         (exit 130) Ctrl-C: stopped at the next wait or between two writes

Messages never contain credentials: the client redacts before raising. The command line (`cli.main`) is
the one place that prints these, as one `error: ...` line, and maps them to exit codes (`cli.exit_code`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Exit codes (PRODUCT.md), the one list every command returns from.
EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_BLOCKED, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class ReconcilerError(Exception):
    """Root of every expected error; the CLI prints its message on one line and exits with `exit_code`."""

    exit_code = 1


class UsageError(ReconcilerError):
    """The command line asks for something that cannot be done."""


class ConfigError(ReconcilerError):
    """The configuration file or the environment is wrong."""


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in one file, at one place. Lines and columns count from 1."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class FileProblems(ReconcilerError):
    """Files have problems; all of them are carried, sorted by place, each once (two checks may find one)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found"
        super().__init__(head + "\n" + "\n".join(str(p) for p in self.problems))


class SpecError(FileProblems):
    """Spec files have problems."""


class ConfigFileError(FileProblems):
    """reconciler.yaml has problems."""


class SeedError(FileProblems):
    """An emulator seed (friendly YAML or JSON snapshot) has problems."""


class ApiError(ReconcilerError):
    """The API answered with a failure, or could not be reached."""

    def __init__(self, message: str, *, method: str = "", url: str = "", status: int | None = None) -> None:
        self.method = method
        self.url = url
        self.status = status
        super().__init__(message)


class AuthError(ApiError):
    """401 from the API, or the token endpoint refused the credentials."""


class NotFoundError(ApiError):
    """404 from the API."""


class ValidationFailed(ApiError):
    """The API refused a write: 400 with Errors, or 200 with WasSuccessful: false."""


class TransportError(ApiError):
    """The server could not be reached, or kept failing, after the bounded retries."""


class MalformedAnswer(ApiError):
    """The server answered, but not with what the API documents: never read as "no records"."""


class PartialRead(ApiError):
    """A list read whose pages do not add up to what the server promised; nothing may be written on it."""


class PlanFileError(ReconcilerError):
    """A saved plan or a journal that is not what this tool writes: malformed, or edited after the fact."""


class TargetMismatch(ReconcilerError):
    """A journal made against another target than the one configured: `apply --resume` and `undo` refuse it."""


class StalePlan(ReconcilerError):
    """A saved plan that no longer holds: made against another target, from spec files that changed or are
    gone, or (with --strict) with actions whose preconditions no longer hold. Plan again."""

    exit_code = EXIT_BLOCKED


class WriteRefused(AuthError):
    """A write answered 401 after the session was renewed (or was fresh): the server refused this one write.

    Seen live when a write names a deleted or missing record ("Access Denied."); it says nothing about the
    credentials or roles, so it is the item's failure, not the run's.
    """


class StopRun(ApiError):
    """The run must stop cleanly now and be resumed later; nothing about the items is decided.

    `resume_after`: seconds to wait before resuming, when known (None otherwise): the wait the server asked for,
    or when the daily write cap allows a write again by this machine's count.
    """

    exit_code = EXIT_BLOCKED

    def __init__(self, message: str, *, method: str = "", url: str = "", status: int | None = None,
                 resume_after: float | None = None) -> None:
        self.resume_after = resume_after
        super().__init__(message, method=method, url=url, status=status)


class Interrupted(StopRun):
    """Ctrl-C during an apply: the run stops cleanly at the next wait or between two writes (exit 130)."""

    exit_code = EXIT_INTERRUPTED


class DailyCapReached(StopRun):
    """The client-side daily write budget is spent; the apply stops cleanly and says how to resume."""


class ThrottledTooLong(StopRun):
    """The server asked for a wait longer than the configured maximum, or kept throttling past the bound."""


class SessionExpired(StopRun):
    """The session ended and cannot be renewed without a new two-factor code (NEXUDUS_TOTP)."""


class DeadlineReached(StopRun):
    """The whole run's deadline passed before the next request could start or the next wait could end."""
