"""Property: whatever is written behind the tool's back between two runs, a read through the cache equals a full
read, record for record (hypothesis, against the emulator over HTTP).

The changes the issue names are all drawn: creates, deletes and updates, deletes balanced by creates (in the
same lesson, or with a create stamped before the range), writes within the overlap, records created with an
`UpdatedOn` in the past (alone, or balanced by a delete), and records whose both dates are in the past. The
one combination no count can show (`reconciler/cache.py`: a delete balanced by a record whose both dates are
older than the range) is left out here and pinned down, with its bound, in `test_cache_limits.py`.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cache import ReadCache
from reconciler.client import NexudusClient
from reconciler.config import CacheSettings
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store, precise_timestamp
from reconciler.emulator.synthetic import build_space

COMPLETIONS = "coursecompletedlessons"
START = datetime(2026, 3, 1, tzinfo=UTC)  # the seeded completions were written over the hours before
OVERLAP = CacheSettings().overlap_minutes
LONG_AGO = datetime(2025, 6, 1, tzinfo=UTC)

# What one change behind the tool's back does (see `World.change`).
KINDS = ("create", "late", "old-update-stamp", "delete", "pair", "pair-old-update-stamp", "update", "move",
         "late-update", "both-dates-old")
BALANCING = {"delete", "pair", "pair-old-update-stamp"}  # kinds that delete a record


class World:
    """One emulator served over HTTP for the whole test; each example fills its store afresh, with a clock of its
    own (minutes pass between runs as the example says)."""

    def __init__(self) -> None:
        self.now = START
        self.store = Store(clock=lambda: self.now)
        self.app = EmulatorApp(self.store, Settings(limits=Limits.off(), require_auth=False, max_page_size=5))
        self.server = BackgroundServer(self.app)
        self.server.__enter__()
        self.http = httpx.Client()
        self.folder = Path()
        self.rng = random.Random(0)

    def close(self) -> None:
        self.http.close()
        self.server.__exit__(None, None, None)
        self.store.close()

    def reset(self, folder: Path, seed: int) -> None:
        self.store.clear()
        build_space(self.store, members=30, lessons=5, per_member=3, seed=seed)
        for n, row in enumerate(self.store.iter_rows(COMPLETIONS)):  # written a few minutes apart, before START
            row["CreatedOn"] = row["UpdatedOn"] = precise_timestamp(START - timedelta(minutes=7 * (n + 1)))
        self.now = START
        self.folder = folder
        self.rng = random.Random(seed)
        self.lessons = sorted(r["Id"] for r in self.store.iter_rows("courselessons"))
        self.members = sorted(r["Id"] for r in self.store.iter_rows("coursemembers"))

    def read(self, lessons: set[int], *, cache: bool) -> tuple[list[dict[str, Any]], int, str]:
        from reconciler.state import StateReader

        client = NexudusClient(self.server.url, self.http)
        store = ReadCache(self.folder, self.server.url, CacheSettings(), vouched=True) if cache else None
        records, partial = StateReader(client, store).completion_records(lessons)
        assert partial == []
        return records, client.stats.requests, store.last if store else "no cache"

    # --- changes behind the tool's back ---

    def stamp(self, minutes_ago: float = 0.0) -> str:
        return precise_timestamp(self.now - timedelta(minutes=minutes_ago))

    def create(self, lesson: int | None = None, created: str | None = None, updated: str | None = None) -> None:
        fields: dict[str, Any] = {"CourseLessonId": lesson or self.rng.choice(self.lessons),
                                  "CourseMemberId": self.rng.choice(self.members)}
        if created is not None:
            fields["CreatedOn"] = created
        if updated is not None:
            fields["UpdatedOn"] = updated
        self.store.insert(COMPLETIONS, fields, updated_by="portal@example.com")

    def delete(self) -> int | None:
        """Delete a random completion; its lesson (None when there is none left)."""
        ids = sorted(r["Id"] for r in self.store.iter_rows(COMPLETIONS))
        if not ids:
            return None
        row = self.store.delete(COMPLETIONS, self.rng.choice(ids))
        assert row is not None
        return int(row["CourseLessonId"])

    def edit(self, *, move: bool = False, minutes_ago: float = 0.0) -> None:
        rows = list(self.store.iter_rows(COMPLETIONS))
        if not rows:
            return
        row = self.rng.choice(rows)
        row["SystemId"] = f"edited-{self.rng.random():.6f}"
        if move:
            row["CourseLessonId"] = self.rng.choice(self.lessons)
        row["UpdatedOn"] = self.stamp(minutes_ago)

    def change(self, kind: str, minutes: int) -> None:
        """One change. `minutes` (0 ..< the overlap) says how late a late write is stamped."""
        old_update = precise_timestamp(LONG_AGO + timedelta(minutes=minutes))  # long before the range
        if kind == "create":
            self.create()
        elif kind == "late":  # written now, stamped up to the overlap earlier (a clock behind)
            self.create(created=self.stamp(minutes), updated=self.stamp(minutes))
        elif kind == "old-update-stamp":  # created now, its UpdatedOn long before the range
            self.create(updated=old_update)
        elif kind == "delete":
            self.delete()
        elif kind == "pair":  # a delete and a create in the same lesson: every count stays as it was
            lesson = self.delete()
            self.create(lesson)
        elif kind == "pair-old-update-stamp":  # the same, the create's UpdatedOn long before the range
            lesson = self.delete()
            self.create(lesson, updated=old_update)
        elif kind == "update":
            self.edit()
        elif kind == "move":
            self.edit(move=True)
        elif kind == "late-update":
            self.edit(minutes_ago=minutes)
        elif kind == "both-dates-old":  # never in a round that deletes: no count could tell
            self.create(created=old_update, updated=old_update)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    made = World()
    yield made
    made.close()


def rounds() -> st.SearchStrategy[list[tuple[int, list[tuple[str, int]]]]]:
    """Runs after the first: the minutes that pass before each, and the changes made in them. A round that
    deletes anything writes no record with both dates old."""
    change = st.tuples(st.sampled_from(KINDS), st.integers(0, OVERLAP - 1))
    changes = st.lists(change, max_size=6).filter(
        lambda c: not ({k for k, _ in c} & BALANCING and any(k == "both-dates-old" for k, _ in c)))
    return st.lists(st.tuples(st.integers(0, 30), changes), min_size=1, max_size=4)


Plan = list[tuple[int, list[tuple[str, int]]]]
SUPPRESS = [HealthCheck.function_scoped_fixture]  # the world is reset by each example itself


def check(world: World, seed: int, whole: bool, plan: Plan) -> None:
    with tempfile.TemporaryDirectory() as folder:
        world.reset(Path(folder), seed)
        # The whole course (a cache of the whole table), or two lessons (a cache of just those).
        scope = set(world.lessons) if whole else set(world.lessons[:2])
        world.read(scope, cache=True)
        for passing, changes in plan:
            world.now += timedelta(minutes=passing)
            for kind, minutes in changes:
                world.change(kind, minutes)
            got, _, how = world.read(scope, cache=True)
            full, _, _ = world.read(scope, cache=False)
            assert got == full, (how, changes)
            if not changes:  # nothing changed: never a full read (the exact figures: test_cache.py)
                assert how == "incremental", how


@settings(max_examples=12, deadline=None, suppress_health_check=SUPPRESS)
@given(seed=st.integers(0, 10_000), whole=st.booleans(), plan=rounds())
def test_a_read_through_the_cache_equals_a_full_read(world: World, seed: int, whole: bool, plan: Plan) -> None:
    check(world, seed, whole, plan)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=SUPPRESS)
@given(seed=st.integers(0, 10_000), whole=st.booleans(), plan=rounds())
def test_a_read_through_the_cache_equals_a_full_read_in_many_more_cases(world: World, seed: int, whole: bool,
                                                                       plan: Plan) -> None:
    check(world, seed, whole, plan)
