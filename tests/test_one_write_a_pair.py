"""A plan that names one pair twice (hand-made, or saved before a planner's fix) makes it once, and the undo of an
apply that deleted one record twice restores it once: over HTTP, against the emulator."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.actions import Action, Create, Delete, action_to_dict
from reconciler.apply import Executor, Result
from reconciler.client import NexudusClient
from reconciler.config import Config, Credentials, Safety
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.journal import Journal, read_journal
from reconciler.planning import make_plan
from reconciler.spec import load_specs
from reconciler.state import COMPLETIONS
from reconciler.target import Target
from reconciler.undo import journal_history, plan_undo

from .conftest import API_SEED, EmulatorFactory

ADMIN = Credentials(username="admin@example.com", password="admin-pw")
SPEC = """apiVersion: reconciler/v1
kind: Completions
metadata: {name: zoe}
course: Onboarding 2026
mode: authoritative
members:
  - {email: zoe.bronte@example.com, completed: [Welcome]}
"""


def planned(tmp_path: Path, client: NexudusClient, url: str) -> tuple[Create, Delete]:
    """Zoé's create of Welcome and delete of Sécurité, as the planner makes them."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "zoe.yaml").write_text(SPEC)
    config = Config(target=url, target_origin="test", base_dir=tmp_path, state_dir=tmp_path / ".reconciler",
                    safety=Safety(max_delete_fraction=1.0, max_deletes=10))
    actions = make_plan(Target(client, url, ADMIN), load_specs([tmp_path / "specs"]), config).typed.actions
    create = next(a for a in actions if isinstance(a, Create))
    delete = next(a for a in actions if isinstance(a, Delete))
    return create, delete


def run(client: NexudusClient, actions: list[Action], journal_path: Path, *, recheck: bool) -> Result:
    with Journal(journal_path) as journal:
        journal.write({"type": "start", "apply_id": "t", "target": client.base_url, "spec_digest": "",
                       "actions": [action_to_dict(a) for a in actions]})
        return Executor(client, journal, recheck_members=recheck).run(list(enumerate(actions)))


def pairs(client: NexudusClient) -> list[tuple[int, int]]:
    return sorted((r["CourseMemberId"], r["CourseLessonId"]) for r in client.list_all(COMPLETIONS))


@pytest.mark.parametrize("recheck", [False, True])
def test_a_pair_named_twice_is_created_once(tmp_path: Path, emulator: EmulatorFactory, recheck: bool) -> None:
    server = emulator()
    with httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=ADMIN)
        create, _ = planned(tmp_path, client, server.url)
        before = pairs(client)
        result = run(client, [create, create], tmp_path / "journal.jsonl", recheck=recheck)
        after = pairs(client)
    pair = (create.member.id or 0, create.lesson.id or 0)
    assert after.count(pair) == 1 and len(after) == len(before) + 1
    assert result.counts["created"] == 1 and [a for a, _ in result.skipped] == [create]
    assert "already created by this apply" in result.skipped[0][1]


def test_the_undo_of_a_record_deleted_twice_restores_it_once(tmp_path: Path, emulator: EmulatorFactory) -> None:
    server = emulator()
    with httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=ADMIN)
        _, delete = planned(tmp_path, client, server.url)
        result = run(client, [delete, delete], tmp_path / "journal.jsonl", recheck=False)
        live = client.list_all(COMPLETIONS)
    assert not result.failed and delete.record.id not in {r["Id"] for r in live}
    undo = plan_undo(journal_history(read_journal(tmp_path / "journal.jsonl")), live, "journal.jsonl")
    restores = [a for a in undo.actions if isinstance(a, Create)]
    assert [(a.member.id, a.lesson.id) for a in restores] == [(delete.member.id, delete.lesson.id)]


class Portal:
    """The Members Portal beside an apply: once the apply's first create has been sent, it completes the same pair
    itself (a member opened the lesson), with no SystemId."""

    def __init__(self, app: EmulatorApp, store: Store) -> None:
        self.app, self.store = app, store
        self.pair: tuple[int, int] = (0, 0)
        self.made: dict[str, Any] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        answer = list(self.app(environ, start_response))
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/coursecompletedlessons") \
                and self.made is None:
            member, lesson = self.pair
            self.made = self.store.insert("coursecompletedlessons", {"CourseMemberId": member,
                                                                     "CourseLessonId": lesson}, updated_by="portal")
        return answer


@pytest.mark.parametrize("fault", ["unsuccessful", "html"])
def test_a_record_another_writer_made_after_a_failed_create_is_not_counted_as_the_apply_s(
        tmp_path: Path, fault: str) -> None:
    """A create answered `WasSuccessful: false` (not done) is looked for at the end of the run, and one whose answer
    was an HTML page (not known) at once: the portal's record found then is another writer's, not this apply's (it
    does not carry the create's marker). Counted as this apply's, the undo deleted the member's own completion."""
    store = Store()
    load_seed(API_SEED, store)
    settings = Settings(limits=Limits.off(), unsuccessful_rate=1.0 if fault == "unsuccessful" else 0.0,
                        write_garble="html" if fault == "html" else None)
    portal = Portal(EmulatorApp(store, settings), store)
    try:
        with BackgroundServer(portal) as server, httpx.Client() as http:  # type: ignore[arg-type]
            client = NexudusClient(server.url, http, credentials=ADMIN)
            create, _ = planned(tmp_path, client, server.url)
            portal.pair = (create.member.id or 0, create.lesson.id or 0)
            result = run(client, [create], tmp_path / "journal.jsonl", recheck=False)
            live = client.list_all(COMPLETIONS)
    finally:
        store.close()
    assert portal.made is not None
    assert result.counts["created"] == 0 and [a for a, _ in result.skipped] == [create]
    assert f"#{portal.made['Id']} is there on re-read without this apply's marker" in result.skipped[0][1]
    assert [(r["CourseMemberId"], r["CourseLessonId"]) for r in live].count(portal.pair) == 1
    undo = plan_undo(journal_history(read_journal(tmp_path / "journal.jsonl")), live, "journal.jsonl")
    assert not any(isinstance(a, Delete) for a in undo.actions)  # the portal's record is not the apply's to undo


def test_the_undo_finds_a_create_in_flight_on_a_server_whose_clock_is_behind(tmp_path: Path) -> None:
    """A create the server carried out whose answer never came (the apply killed in flight) is undone as the apply's:
    its record carries the marker and was made once the create was sent, by the server's clock. A server stamping
    records five minutes behind this machine's (as the apply's answered creates show) made it look older, and
    the undo left it."""
    store = Store()
    load_seed(API_SEED, store)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "al.yaml").write_text("apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: al}\n"
                                                "course: Onboarding\nmode: additive\nmembers:\n"
                                                "  - {email: al@example.com, completed: all}\n")
    config = Config(target="http://emulator", target_origin="test", base_dir=tmp_path,
                    state_dir=tmp_path / ".reconciler")
    journal = tmp_path / "journal.jsonl"
    try:
        with BackgroundServer(EmulatorApp(store, Settings(limits=Limits.off(), backdate_minutes=(5.0, 5.0)))) \
                as server, httpx.Client() as http:
            client = NexudusClient(server.url, http, credentials=ADMIN)
            actions = make_plan(Target(client, server.url, ADMIN), load_specs([tmp_path / "specs"]),
                                config).typed.actions
            assert [type(a) for a in actions] == [Create, Create]
            result = run(client, list(actions), journal, recheck=False)
            live = client.list_all(COMPLETIONS)
    finally:
        store.close()
    assert result.counts["created"] == 2
    lines = journal.read_text().splitlines()  # killed once the server had made the second: its outcome never came
    last = max(n for n, line in enumerate(lines) if '"outcome"' in line)
    journal.write_text("\n".join(lines[:last] + lines[last + 1:]) + "\n")
    undo = plan_undo(journal_history(read_journal(journal)), live, "journal.jsonl")
    made = {(a.member.id, a.lesson.id) for a in actions}
    assert {(a.member.id, a.lesson.id) for a in undo.actions if isinstance(a, Delete)} == made
