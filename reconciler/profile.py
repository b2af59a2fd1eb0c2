"""The target profile: what `reconciler doctor` measured about one target, and how later runs use it.

It lives in `.reconciler/target-profile.json` (under the state folder), names its target, and holds no
secret. `plan`, `apply` and `export` load it only when it names their target:

- the client starts with the page size the server was measured to serve, so that the first estimates of
  how many requests a read takes are right;
- filters the server was seen to ignore are treated as ignored from the first request, so the reader
  takes a way that works instead of reading a whole table through a filter that does nothing;
- a spec in `owned` mode is refused before any request when the target does not keep the `SystemId`
  written on create, or leaves it out of list records (owned mode finds its records by that marker);
- the read cache counts by `to_…CreatedOn` as it was measured to count (the whole minute, or what was made
  before it); it never assumes it (see cache.py).

Without a profile the tool keeps its careful defaults (every filter verified record by record, the page
size learnt from the answers). A run that sees something the profile contradicts says so at its end.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.cache import CREATED_UNTIL_KEY, UNTIL_BOUNDS
from reconciler.client import PAGE_SIZE, NexudusClient
from reconciler.config import same_target, spelled
from reconciler.errors import Problem, SpecError, UsageError
from reconciler.model import SpecSet

log = logging.getLogger(__name__)

PROFILE_FILE = "target-profile.json"
PROFILE_FORMAT = "reconciler-target-profile/1"
_AGAIN = "run `reconciler doctor` again to measure the target anew"


def profile_path(state_dir: Path) -> Path:
    return state_dir / PROFILE_FILE


def kept_profile_path(state_dir: Path, target: str) -> Path:
    """Where the profile of `target` is kept once `doctor` measured another target from this folder (the folder's
    profile is the latest one): what a write check measured of it is not lost by measuring another."""
    return state_dir / "profiles" / f"{hashlib.sha256(spelled(target).encode()).hexdigest()[:16]}.json"


@dataclass(frozen=True)
class TargetProfile:
    """A profile document as doctor wrote it, read defensively (a hand-edited field is taken as unknown)."""

    document: dict[str, Any]
    path: Path

    @property
    def target(self) -> str:
        return str(self.document.get("target") or "")

    @property
    def measured_at(self) -> str:
        return str(self.document.get("measured_at") or "?")

    @property
    def page_size(self) -> int | None:
        """The most records a page was measured to hold, when a table was large enough to show a cap."""
        cap = _section(self.document, "page_size").get("cap")
        return cap if isinstance(cap, int) and not isinstance(cap, bool) and 0 < cap else None

    def _filters(self, state: str) -> frozenset[str]:
        found = _section(self.document, "filters")
        return frozenset(key.lower() for key, value in found.items()
                         if isinstance(value, dict) and value.get("state") == state)

    @property
    def ignored_filters(self) -> frozenset[str]:
        """`path?filter` (lower-cased, as the client keys them) that the server ignored."""
        return self._filters("ignored")

    @property
    def honoured_filters(self) -> frozenset[str]:
        return self._filters("honoured")

    @property
    def created_until(self) -> str | None:
        """What `to_…CreatedOn=HH:mm` was measured to count (`cache.UNTIL_BOUNDS`), or None when it was not."""
        entry = _section(self.document, "filters").get(CREATED_UNTIL_KEY)
        bound = entry.get("bound") if isinstance(entry, dict) and entry.get("state") == "honoured" else None
        return bound if bound in UNTIL_BOUNDS else None

    def _system_id(self, name: str) -> bool | None:
        value = _section(self.document, "system_id").get(name)
        return value if isinstance(value, bool) else None

    @property
    def system_id_kept(self) -> bool | None:
        """Whether a create keeps the SystemId it is sent (None: not measured; `doctor --write-check` does)."""
        return self._system_id("kept_on_create")

    @property
    def system_id_in_lists(self) -> bool | None:
        return self._system_id("in_list_records")

    def owned_problem(self) -> str | None:
        """Why `owned` mode cannot work against this target, or None."""
        if self.system_id_kept is False:
            return "it does not keep the SystemId written on create"
        if self.system_id_in_lists is False:
            return "its list records leave SystemId out"
        return None

    def seed(self, client: NexudusClient) -> None:
        """Start the client from what was measured: the page size served and the filters ignored."""
        if self.page_size is not None:
            client.page_size = min(client.page_size, self.page_size)
        client.ignored_filters |= self.ignored_filters
        log.info("using the target profile %s (measured %s)", self.path, self.measured_at)

    def contradictions(self, client: NexudusClient) -> list[str]:
        """What this run saw that the profile says otherwise."""
        said = f"the target profile ({self.path}, measured {self.measured_at}) says"
        found = []
        expected = self.page_size or PAGE_SIZE
        if client.page_size < expected:
            measured = f"{self.page_size:,} records a page" if self.page_size else "pages of 1,000 records"
            found.append(f"{said} the server serves {measured}, but it served {client.page_size:,} in this run")
        filters = _section(self.document, "filters")
        for key in sorted(self.honoured_filters & client.ignored_filters):
            entry = filters.get(key) or {}
            name = entry.get("filter") or key.partition("?")[2]
            found.append(f"{said} the server honours the filter {name}, but it ignored it in this run")
        if "systemid-dropped-on-create" in client.observed and self.system_id_kept:
            found.append(f"{said} the server keeps the SystemId written on create, but it dropped it in this run")
        if "systemid-absent-from-lists" in client.observed and self.system_id_in_lists:
            found.append(f"{said} list records carry SystemId, but they had none in this run")
        return [f"{line}; {_AGAIN}" for line in found]


def _section(document: dict[str, Any], name: str) -> dict[str, Any]:
    value = document.get(name)
    return value if isinstance(value, dict) else {}


def read_profile(state_dir: Path, path: Path | None = None) -> TargetProfile | None:
    """The profile in `state_dir` (or at `path`), whatever target it names; None when there is none or it is
    unreadable."""
    path = path or profile_path(state_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as e:
        log.warning("warning: %s cannot be read (%s); working without a target profile", path, e)
        return None
    if not isinstance(document, dict) or document.get("format") != PROFILE_FORMAT:
        log.warning("warning: %s is not a target profile (%s); working without one", path, PROFILE_FORMAT)
        return None
    return TargetProfile(document, path)


def load_profile(state_dir: Path, target: str) -> TargetProfile | None:
    """The profile of `target`, or None (no profile, or one of another target)."""
    profile = read_profile(state_dir)
    if profile is not None and same_target(profile.target, target):
        return profile
    kept = kept_profile_path(state_dir, target)  # measured before another target was
    earlier = read_profile(state_dir, kept) if kept.is_file() else None
    if earlier is not None and same_target(earlier.target, target):
        return earlier
    if profile is not None:
        log.info("the target profile %s is of %s, not %s: not used", profile.path, profile.target, target)
    return None


def with_ownership_lost(state_dir: Path, target: str, observed: set[str], at: str
                        ) -> tuple[dict[str, Any], Path] | None:
    """What an apply saw that rules owned mode out (`observed`: the client's `systemid-dropped-on-create`, its
    `systemid-absent-from-lists`), in the target's profile (a profile of this alone when there is none): the
    document and where it goes, for the caller to write, so that later plans refuse owned specs as after `doctor
    --write-check`, instead of planning "No writes" over records they can no longer tell are theirs. None when
    nothing was seen."""
    dropped, unlisted = "systemid-dropped-on-create" in observed, "systemid-absent-from-lists" in observed
    if not (dropped or unlisted):
        return None
    found = load_profile(state_dir, target)
    document: dict[str, Any] = dict(found.document) if found is not None else {
        "format": PROFILE_FORMAT, "target": target, "measured_at": at}
    ids = dict(_section(document, "system_id"))
    if dropped:
        ids["kept_on_create"] = False
    if unlisted:
        ids["in_list_records"] = False
    ids["seen_by_apply_at"] = at
    document["system_id"] = ids
    if found is not None:
        return document, found.path
    keep_other_profile(state_dir, target)
    return document, profile_path(state_dir)


def keep_other_profile(state_dir: Path, target: str) -> None:
    """Before `doctor` writes the profile of `target`: the folder's profile of another target is kept aside
    (`kept_profile_path`), for plans against that one to go on using."""
    current = read_profile(state_dir)
    if current is None or same_target(current.target, target) or not current.target:
        return
    kept = kept_profile_path(state_dir, current.target)
    kept.parent.mkdir(parents=True, exist_ok=True)
    profile_path(state_dir).replace(kept)


@contextmanager
def profiled(client: NexudusClient, state_dir: Path, target: str, *, enabled: bool = True,
             ) -> Iterator[TargetProfile | None]:
    """The target's profile, seeded into `client` for the block; contradictions are reported at its end."""
    profile = load_profile(state_dir, target) if enabled else None
    if profile is not None:
        profile.seed(client)
    try:
        yield profile
    finally:
        if profile is not None:
            for line in profile.contradictions(client):
                log.warning("warning: %s", line)


def refuse_owned(profile: TargetProfile | None, specs: SpecSet) -> None:
    """A SpecError naming every spec in `owned` mode, when the profile says owned mode cannot work here."""
    problem = profile.owned_problem() if profile is not None else None
    owned = [spec for spec in specs.completions if spec.mode == "owned"]
    if profile is None or problem is None or not owned:
        return
    seen = _section(profile.document, "system_id").get("seen_by_apply_at")
    found = (f"an apply found that {problem} (at {seen}" if isinstance(seen, str) else
             f"`reconciler doctor` found that {problem} (measured {profile.measured_at}")
    message = (f"mode owned cannot work against {profile.target}: {found}, {profile.path}), and owned mode knows its "
               "own records only by that marker; use mode additive or authoritative, or run `reconciler doctor "
               "--write-check` again if the target has changed")
    raise SpecError([Problem(s.mode_origin.path, s.mode_origin.line, s.mode_origin.column, message) for s in owned])


def export_mode(requested: str | None, profile: TargetProfile | None) -> tuple[str, str | None]:
    """The mode exported specs take, and a note when the profile changed the default (`owned`)."""
    problem = profile.owned_problem() if profile is not None else None
    if problem is None or profile is None:
        return requested or "owned", None
    if requested == "owned":
        raise UsageError(f"--mode owned cannot work against {profile.target}: `reconciler doctor` found that "
                         f"{problem} (measured {profile.measured_at}); export with --mode additive or authoritative")
    if requested is None:
        return "additive", (f"exported in mode additive, not owned: `reconciler doctor` found that {problem} "
                            f"(measured {profile.measured_at})")
    return requested, None
