"""Course migrations on the emulator: 2025 → 2026 with every awkward case, and idempotence."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import COURSE_MEMBER, Store

from .conftest import DATA, seeded

MIGRATION = """apiVersion: reconciler/v1
kind: Migration
metadata: {{name: onboarding-2025-to-2026}}
from: {{course: Onboarding 2025}}
to: {{course: Onboarding 2026}}
lessons:
  Welcome: Welcome
  Safety briefing: Safety & security
  Kitchen: Kitchen and coffee
enroll: {enroll}
source: {source}
"""


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
    (tmp_path / "specs").mkdir()
    (tmp_path / ".reconciler").mkdir()
    store = Store(str(tmp_path / ".reconciler" / "local.sqlite"))
    load_seed(DATA / "migration-seed.yaml", store)
    ben_2025 = next(m["Id"] for m in store.iter_rows("coursemembers")
                    if m["CourseId"] == 101 and m["CoworkerId"] == 10002)
    store.insert("coursecompletedlessons", {"CourseLessonId": 2001, "CourseMemberId": ben_2025}, updated_by="x")
    store.close()  # Ben now has Welcome twice in 2025: a duplicate in the source
    return tmp_path


def write(space: Path, *, enroll: bool = True, source: str = "remove") -> None:
    (space / "specs" / "migration.yaml").write_text(MIGRATION.format(enroll=str(enroll).lower(), source=source))


def completions_spec(space: Path, file: str, name: str, course: str, rest: str) -> None:
    """A Completions spec `specs/FILE` of `course`: its header, then `rest` (mode, members, revoke)."""
    (space / "specs" / file).write_text(
        f"apiVersion: reconciler/v1\nkind: Completions\nmetadata: {{name: {name}}}\ncourse: {course}\n{rest}")


def completions(space: Path) -> Counter[tuple[str, str]]:
    store = Store(str(space / ".reconciler" / "local.sqlite"))
    try:
        names = {m["Id"]: store.value(COURSE_MEMBER, m, "CoworkerFullName") for m in store.iter_rows("coursemembers")}
        courses = {m["Id"]: m["CourseId"] for m in store.iter_rows("coursemembers")}
        lessons = {x["Id"]: x["Title"] for x in store.iter_rows("courselessons")}
        return Counter((f"{names[r['CourseMemberId']]}@{courses[r['CourseMemberId']]}", lessons[r["CourseLessonId"]])
                       for r in store.iter_rows("coursecompletedlessons"))
    finally:
        store.close()


def test_migration_plan_groups_per_member_and_warns_of_unmapped_lessons(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(space)
    assert main(["plan", "specs", "--allow-deletes", "100"]) == 0
    out = capsys.readouterr().out
    assert "Plan: 8 to create, 10 to delete, 2 to enrol, 1 unchanged." in out
    assert "lesson 'Legacy quiz' of 'Onboarding 2025' has 2 completion(s) but no mapping" in out
    assert out.index("~ enrol") < out.index("+ create   Welcome", out.index("Cleo Park"))
    assert "At the real service's documented limits: 20 write requests: about 2 seconds at 60 writes a minute" in out


def test_migration_applies_conserves_and_re_runs_to_nothing(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(space)
    assert completions(space)[("Ben Ode@101", "Welcome")] == 2
    assert main(["apply", "specs", "--yes", "--allow-deletes", "100"]) == 0
    out = capsys.readouterr().out
    assert "created        8" in out and "deleted       10" in out and "enrolled       2" in out
    after = completions(space)
    target = {(who, lesson) for (who, lesson) in after if who.endswith("@102")}
    expected = {("Ana Ruiz@102", "Welcome"), ("Ana Ruiz@102", "Safety & security"),
                ("Ben Ode@102", "Welcome"), ("Ben Ode@102", "Safety & security"), ("Ben Ode@102", "Kitchen and coffee"),
                ("Cleo Park@102", "Welcome"),
                ("Dev Shah@102", "Welcome"), ("Dev Shah@102", "Safety & security"),
                ("Dev Shah@102", "Kitchen and coffee")}
    assert target == expected and max(after.values()) == 1  # conserved, and no duplicate
    source_left = {key for key in after if key[0].endswith("@101")}
    assert source_left == {("Ana Ruiz@101", "Legacy quiz"), ("Dev Shah@101", "Legacy quiz")}  # unmapped: kept
    assert main(["plan", "specs", "--detailed-exitcode"]) == 0  # idempotent


def test_members_not_enrolled_are_an_error_unless_enroll(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(space, enroll=False)
    assert main(["plan", "specs"]) == 1
    err = capsys.readouterr().err
    assert "specs/migration.yaml:5:14: 2 member(s) with progress to migrate are not enrolled in 'Onboarding 2026'" \
        in err and "Cleo Park, Dev Shah" in err


def test_strict_makes_unmapped_lessons_an_error(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(space)
    path = space / "specs" / "migration.yaml"
    path.write_text(path.read_text() + "strict: true\n")
    assert main(["plan", "specs"]) == 1
    assert "specs/migration.yaml:3:18: lesson 'Legacy quiz'" in capsys.readouterr().err


def test_keep_source_and_a_partly_migrated_member_get_only_what_they_lack(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(space, source="keep")
    assert main(["plan", "specs", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["delete"] == 0
    ana = [a for a in doc["actions"] if a["member"]["name"] == "Ana Ruiz"]
    assert [(a["action"], a["lesson"]["title"]) for a in ana] == [("create", "Safety & security")]
    assert ana[0]["system_id"] == "reconciler:onboarding-2025-to-2026"
    ben = [a for a in doc["actions"] if a["member"]["name"] == "Ben Ode"]
    assert [a["lesson"]["title"] for a in ben] == ["Welcome", "Safety & security", "Kitchen and coffee"]  # one twin


def test_a_pair_the_migration_carries_and_a_spec_revokes_is_an_error(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each apply would undo the last: the revoke deletes what the migration made, the next one makes it again."""
    write(space, source="keep")
    completions_spec(space, "revoke.yaml", "takes-back", "Onboarding 2026",
                     "mode: additive\nrevoke:\n  - {email: ana@example.com, lessons: [Safety & security, Welcome]}\n")
    assert main(["plan", "specs"]) == 1
    err = capsys.readouterr().err
    assert "specs/revoke.yaml:7:13: Ana Ruiz has 'Safety & security' both migrated (specs/migration.yaml:8:3) and " \
        "revoked; remove one of them" in err
    assert "Ana Ruiz has 'Welcome' both migrated (specs/migration.yaml:7:3)" in err  # kept there: the same loop
    assert main(["apply", "specs", "--yes"]) == 1 and completions(space)[("Ana Ruiz@102", "Welcome")] == 1
    capsys.readouterr()
    completions_spec(space, "revoke.yaml", "takes-back", "Onboarding 2026",  # Cleo, whom the migration enrols
                     "mode: additive\nrevoke:\n  - {email: cleo@example.com, lessons: [Welcome]}\n")
    assert main(["plan", "specs"]) == 1
    assert "specs/revoke.yaml:7:13: Cleo Park has 'Welcome' both migrated" in capsys.readouterr().err


def test_a_source_pair_a_spec_declares_and_the_migration_removes_is_an_error(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`source: remove` deletes what the spec declares, and the spec makes it again at the next apply."""
    write(space, source="remove")
    completions_spec(space, "old.yaml", "old-edition", "Onboarding 2025",
                     "mode: additive\nmembers:\n  - {email: ana@example.com, completed: [Welcome]}\n")
    assert main(["plan", "specs", "--allow-deletes", "100"]) == 1
    assert "specs/migration.yaml:7:3: Ana Ruiz has 'Welcome' both declared (specs/old.yaml:7:13) and removed from " \
        "the source by this migration (source: remove); remove one of them" in capsys.readouterr().err
    write(space, source="keep")  # keeping the source: the two agree
    assert main(["plan", "specs"]) == 0


def test_a_pair_a_migration_carries_and_a_spec_declares_is_created_once(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(space, source="keep")
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "members:\n  - {email: ben@example.com, completed: [Welcome, Safety & security]}\n")
    assert main(["plan", "specs", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ben = [(a["action"], a["lesson"]["title"], a["reason"]) for a in doc["actions"] if a["member"]["name"] == "Ben Ode"]
    assert ben == [("create", "Welcome", "migrated"), ("create", "Safety & security", "migrated"),
                   ("create", "Kitchen and coffee", "migrated")]  # once each, by the migration
    assert doc["summary"]["create"] == sum(1 for a in doc["actions"] if a["action"] == "create")
    assert main(["apply", "specs", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "skipped        0" in out and "another writer" not in out
    target = {key: count for key, count in completions(space).items() if key[0].endswith("@102")}
    assert max(target.values()) == 1 and main(["plan", "specs", "--detailed-exitcode"]) == 0


def two_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, rest: str) -> None:
    """Ana has Intro in Basics A and in Basics B; `target` is the course Basics 2027 (its lessons and members), into
    which a migration from each carries Intro (`rest`: their enroll and source)."""
    seeded(tmp_path, monkeypatch, "seed.yaml",
           "coworkers:\n  - {name: Ana Ruiz, email: ana@example.com}\n"
           "courses:\n"
           "  - {title: Basics A, lessons: [Intro], members: [{email: ana@example.com, completed: all}]}\n"
           "  - {title: Basics B, lessons: [Intro], members: [{email: ana@example.com, completed: all}]}\n"
           f"  - {{title: Basics 2027, {target}}}\n")
    for source in ("A", "B"):
        (tmp_path / "specs" / f"{source}.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: Migration\nmetadata: {{name: from-{source.lower()}}}\n"
            f"from: {{course: Basics {source}}}\nto: {{course: Basics 2027}}\nlessons: {{Intro: Intro}}\n{rest}")


def test_two_migrations_into_one_course_enrol_and_create_each_pair_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    two_migrations(tmp_path, monkeypatch, "lessons: [Intro], members: []", "enroll: true\nsource: remove\n")
    assert main(["plan", "specs", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert Counter(a["action"] for a in doc["actions"]) == {"enroll": 1, "create": 1, "delete": 2}
    assert main(["apply", "specs", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "created        1" in out and "deleted        2" in out
    assert "enrolled       1" in out and "skipped        0" in out
    assert main(["plan", "specs", "--detailed-exitcode"]) == 0


def test_a_pair_carried_twice_and_declared_counts_once_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Unchanged counts pairs: one that two migrations carry (and a spec of the target declares) is one."""
    two_migrations(tmp_path, monkeypatch,
                   "lessons: [Intro, Extra], members: [{email: ana@example.com, completed: all}]", "source: keep\n")
    assert main(["plan", "specs", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["unchanged"] == 1
    completions_spec(tmp_path, "new.yaml", "new-edition", "Basics 2027",
                     "members:\n  - {email: ana@example.com, completed: [Intro, Extra]}\n")
    assert main(["plan", "specs"]) == 0
    assert "Plan: 0 to create, 0 to delete, 0 to enrol, 2 unchanged." in capsys.readouterr().out


NEW_EDITION = """apiVersion: reconciler/v1
kind: Completions
metadata: {name: new-edition}
course: Onboarding 2026
members:
  - {email: cleo@example.com, completed: [Welcome, Kitchen and coffee]}
"""


def test_a_spec_may_name_a_member_the_migration_enrols(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PRODUCT: a member not enrolled is an error "unless a migration enrols" them. Cleo is in 2025 only; the
    migration enrols her in 2026 (she has progress to carry), and the spec's creates for her follow the enrolment."""
    write(space, source="keep")
    (space / "specs" / "new.yaml").write_text(NEW_EDITION)
    assert main(["validate", "specs"]) == 0
    capsys.readouterr()
    assert main(["plan", "specs", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    cleo = [(a["action"], a["lesson"]["title"], a["spec"], a.get("coworker_id") is not None)
            for a in doc["actions"] if a["member"]["name"] == "Cleo Park"]
    assert cleo == [("enroll", "", "onboarding-2025-to-2026", True),
                    ("create", "Welcome", "onboarding-2025-to-2026", True),  # carried once, by the migration
                    ("create", "Kitchen and coffee", "new-edition", True)]
    assert main(["apply", "specs", "--yes"]) == 0
    assert "skipped        0" in capsys.readouterr().out
    assert {key for key in completions(space) if key[0] == "Cleo Park@102"} == {
        ("Cleo Park@102", "Welcome"), ("Cleo Park@102", "Kitchen and coffee")}
    assert main(["plan", "specs", "--detailed-exitcode"]) == 0


def test_a_member_the_migration_does_not_enrol_is_not_enrolled(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The migration enrols only members with progress to carry: Cleo's only completion is of an unmapped lesson."""
    (space / "specs" / "migration.yaml").write_text(MIGRATION.format(enroll="true", source="keep").replace(
        "  Welcome: Welcome\n", ""))
    (space / "specs" / "new.yaml").write_text(NEW_EDITION)
    for command in (["validate", "specs"], ["plan", "specs"]):
        assert main(command) == 1
        assert "specs/new.yaml:6:13: Cleo Park is not enrolled in 'Onboarding 2026', and the migration into it " \
            "enrols only members with progress to carry: they have none" in capsys.readouterr().err
    (space / "specs" / "migration.yaml").unlink()  # and without the migration, as before
    assert main(["plan", "specs"]) == 1
    assert "specs/new.yaml:6:13: cleo@example.com is not enrolled in 'Onboarding 2026'" in capsys.readouterr().err


def test_duplicates_of_a_migrated_pair_are_removed_where_the_migration_made_them(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Duplicates in a target course no Completions spec manages (a concurrent apply, say): the plan keeps the
    oldest, deletes the others that carry the migration's marker, and reports the rest as drift."""
    write(space, source="keep")
    assert main(["apply", "specs", "--yes"]) == 0
    capsys.readouterr()
    store = Store(str(space / ".reconciler" / "local.sqlite"))
    ben = next(m["Id"] for m in store.iter_rows("coursemembers") if m["CourseId"] == 102 and m["CoworkerId"] == 10002)
    welcome = next(x["Id"] for x in store.iter_rows("courselessons")
                   if x["CourseId"] == 102 and x["Title"] == "Welcome")
    made = store.insert("coursecompletedlessons", {"CourseLessonId": welcome, "CourseMemberId": ben,
                                                   "SystemId": "reconciler:onboarding-2025-to-2026"}, updated_by="x")
    other = store.insert("coursecompletedlessons", {"CourseLessonId": welcome, "CourseMemberId": ben}, updated_by="y")
    store.close()
    # Another migration into the course, planned first (its name sorts first): the duplicate is still the first's.
    (space / "specs" / "a.yaml").write_text(MIGRATION.format(enroll="true", source="keep").replace(
        "onboarding-2025-to-2026", "a-first"))
    assert main(["plan", "specs", "--detailed-exitcode"]) == 2
    out = capsys.readouterr().out
    assert "Plan: 0 to create, 1 to delete, 0 to enrol" in out
    assert f"- delete   Welcome  #{made['Id']}, completed " in out and "[duplicate: " in out
    assert f"duplicate completion #{other['Id']} of lesson Welcome for Ben Ode" in out
    assert main(["apply", "specs", "--yes"]) == 0
    capsys.readouterr()
    assert completions(space)[("Ben Ode@102", "Welcome")] == 2  # the oldest, and the one the migration did not make
    store = Store(str(space / ".reconciler" / "local.sqlite"))
    assert made["Id"] not in {r["Id"] for r in store.iter_rows("coursecompletedlessons")}
    store.close()


def test_a_source_pair_revoked_and_carried_is_an_error_unless_its_twin_exists(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A revoke in the source course takes a credit away that the migration would make again in the target: an
    error at the revoke, with either source policy. Where the twin exists already, the migration carries nothing:
    the revoke and `source: remove` both delete the source record, once."""
    for source in ("keep", "remove"):
        write(space, source=source)
        completions_spec(space, "old.yaml", "old-edition", "Onboarding 2025",
                         "mode: additive\nrevoke:\n  - {email: ben@example.com, lessons: [Kitchen]}\n")
        assert main(["plan", "specs", "--allow-deletes", "100"]) == 1
        assert "specs/old.yaml:7:13: Ben Ode has 'Kitchen' both revoked and carried to 'Onboarding 2026' by a " \
            "migration (specs/migration.yaml:9:3); remove one of them" in capsys.readouterr().err
    completions_spec(space, "old.yaml", "old-edition", "Onboarding 2025",  # Ana has Welcome in 2026 already
                     "mode: additive\nrevoke:\n  - {email: ana@example.com, lessons: [Welcome]}\n")
    assert main(["plan", "specs", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ana = [(a["lesson"]["title"], a["reason"]) for a in doc["actions"]
           if a["action"] == "delete" and a["member"]["name"] == "Ana Ruiz"]
    assert sorted(ana) == [("Safety briefing", "migrated"), ("Welcome", "migrated")]
    ids = [a["record"]["Id"] for a in doc["actions"] if a["action"] == "delete"]
    assert len(ids) == len(set(ids)) == doc["summary"]["delete"]


def test_a_source_record_a_spec_and_the_migration_both_delete_is_deleted_once_and_restored_once(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An authoritative spec of the source course gives Ana none of it, and `source: remove` moves her progress:
    each source record is deleted once, by the migration (which waits for the twin). The apply sends one delete a
    record, and its undo restores each pair once: Ben's duplicate Welcome, which the migration also removed, is
    not made again."""
    write(space, source="remove")
    completions_spec(space, "old.yaml", "old-edition", "Onboarding 2025",
                     "mode: authoritative\nmembers:\n  - {email: ana@example.com, completed: []}\n")
    assert main(["plan", "specs", "--format", "json", "--allow-deletes", "100"]) == 0
    doc = json.loads(capsys.readouterr().out)
    deletes = [a for a in doc["actions"] if a["action"] == "delete"]
    ids = [a["record"]["Id"] for a in deletes]
    assert len(ids) == len(set(ids)) == doc["summary"]["delete"] == 11
    ana = sorted((a["lesson"]["title"], a["reason"]) for a in deletes if a["member"]["name"] == "Ana Ruiz")
    assert ana == [("Legacy quiz", "undeclared"), ("Safety briefing", "migrated"), ("Welcome", "migrated")]
    before = completions(space)
    assert main(["apply", "specs", "--yes", "--allow-deletes", "100"]) == 0
    assert "deleted       11" in capsys.readouterr().out
    journal = next((space / ".reconciler" / "journal").glob("*.jsonl"))
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    sent = [e["action"]["record"]["Id"] for e in entries
            if e.get("type") == "intent" and e["action"]["action"] == "delete"]
    assert sorted(sent) == sorted(ids)
    assert main(["undo", str(journal), "--out", "undo.json"]) == 3  # its deletes of the twins: over the budget
    undo = json.loads((space / "undo.json").read_text())
    restores = [(a["member"]["id"], a["lesson"]["id"]) for a in undo["actions"] if a["action"] == "create"]
    assert len(restores) == len(set(restores)) == 10  # Ben's two Welcome records: one pair
    assert any("is not made again (a duplicate)" in a["note"] for a in undo["actions"] if a["action"] == "create")
    capsys.readouterr()
    assert main(["apply", "--plan", "undo.json", "--yes", "--allow-deletes", "100"]) == 0
    after = completions(space)
    assert max(after.values()) == 1 and after == before - Counter({("Ben Ode@101", "Welcome"): 1})


def test_a_source_lesson_two_migrations_carry_and_one_removes_is_an_error(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`source: remove` deletes a source record once its own twin exists: a second migration carrying that lesson
    elsewhere could lose its copy. Migrations that split a course, each carrying other lessons, are fine."""
    write(space, source="remove")
    second = MIGRATION.format(enroll="true", source="keep").replace("onboarding-2025-to-2026", "a-copy")
    (space / "specs" / "a.yaml").write_text(second)
    assert main(["plan", "specs", "--allow-deletes", "100"]) == 1
    err = capsys.readouterr().err
    assert "lesson 'Welcome' of 'Onboarding 2025' is carried by 'a-copy' (specs/a.yaml:7:3) and by " \
        "'onboarding-2025-to-2026', and 'onboarding-2025-to-2026' removes it from the source (source: remove)" in err
    assert err.startswith("error: 3 problems found") and "specs/migration.yaml:7:3: lesson 'Welcome'" in err
    split = second.replace("  Welcome: Welcome\n  Safety briefing: Safety & security\n", "")  # Kitchen alone
    (space / "specs" / "a.yaml").write_text(split)
    (space / "specs" / "migration.yaml").write_text(MIGRATION.format(enroll="true", source="remove").replace(
        "  Kitchen: Kitchen and coffee\n", ""))
    assert main(["plan", "specs", "--allow-deletes", "100"]) == 0


def test_progress_a_spec_of_the_source_creates_is_carried_in_the_same_apply(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A completion a spec of the source course creates in this apply is progress the migration carries: one apply
    converges (it took two), and what the next plan would have refused is refused now (a member not enrolled in the
    target, or a declared source the migration would remove)."""
    seeded(tmp_path, monkeypatch, "seed.yaml",
           "coworkers: [{name: Ann, email: ann@example.com}]\ncourses:\n"
           "  - {title: Old, lessons: [Intro], members: [ann@example.com]}\n"
           "  - {title: New, lessons: [Intro], members: [ann@example.com]}\n")
    completions_spec(tmp_path, "old.yaml", "old", "Old",
                     "mode: additive\nmembers:\n  - {email: ann@example.com, completed: all}\n")

    def migration(rest: str) -> None:
        (tmp_path / "specs" / "mig.yaml").write_text("apiVersion: reconciler/v1\nkind: Migration\n"
                                                     "metadata: {name: mig}\nfrom: {course: Old}\nto: {course: New}\n"
                                                     f"lessons: {{Intro: Intro}}\n{rest}")

    migration("source: remove\n")
    assert main(["plan", "specs"]) == 1
    assert "specs/mig.yaml:6:11: Ann has 'Intro' both declared (specs/old.yaml:7:13) and removed from the source by " \
        "this migration (source: remove)" in capsys.readouterr().err
    migration("")
    assert main(["plan", "specs", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted((a["course"]["title"], a["reason"], a.get("note")) for a in doc["actions"]) == [
        ("New", "migrated", "from 'Intro' (created by this apply)"), ("Old", "declared", None)]
    assert main(["apply", "specs", "--yes"]) == 0
    assert main(["plan", "specs", "--detailed-exitcode"]) == 0
    capsys.readouterr()
    completions_spec(tmp_path, "old.yaml", "old", "Old",  # Bea, in Old only: the migration does not enrol her
                     "mode: additive\nmembers:\n  - {email: ann@example.com, completed: all}\n"
                     "  - {email: bea@example.com, completed: all}\n")
    store = Store(str(tmp_path / ".reconciler" / "local.sqlite"))
    coworker = store.insert("coworkers", {"FullName": "Bea", "Email": "bea@example.com"}, updated_by="x")
    store.insert("coursemembers", {"CourseId": next(c["Id"] for c in store.iter_rows("courses") if c["Title"] == "Old"),
                                   "CoworkerId": coworker["Id"]}, updated_by="x")
    store.close()
    assert main(["plan", "specs"]) == 1
    assert "1 member(s) with progress to migrate are not enrolled in 'New' (Bea)" in capsys.readouterr().err


@pytest.mark.parametrize(("source", "saved"), [("remove", False), ("keep", False), ("remove", True)])
def test_a_pair_an_owned_spec_takes_back_and_a_migration_carries_keeps_its_credit(
        space: Path, capsys: pytest.CaptureFixture[str], source: str, saved: bool) -> None:
    """An `owned` spec of the target course gave Ben two lessons, then drops him, while a migration carries his
    2025 progress into the course: the spec takes back its records, and the migration makes its own twins (its
    marker). With `source: remove` the plan deleted the spec's records as orphaned and the source's as migrated
    (their twins existed when it was read): both went, and the credit with them. The apply does not take the
    records it deletes for twins that are there (`saved`: a saved plan's, re-checked with --strict)."""
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "mode: owned\nmembers:\n  - {email: ben@example.com, completed: [Welcome, Safety & security]}\n")
    assert main(["apply", "specs", "--yes"]) == 0
    assert completions(space)[("Ben Ode@102", "Welcome")] == 1
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "mode: owned\nmembers:\n  - {email: eli@example.com, completed: []}\n")
    write(space, source=source)
    capsys.readouterr()
    assert main(["plan", "specs", "--format", "json", "--allow-deletes", "100", "--out", "plan.json"]) == 0
    doc = json.loads((space / "plan.json").read_text())
    ben = sorted((a["action"], a["course"]["title"], a["lesson"]["title"], a["reason"])
                 for a in doc["actions"] if a["member"]["name"] == "Ben Ode" and a["action"] != "enroll")
    taken = [("delete", "Onboarding 2026", "Safety & security", "orphaned"),
             ("delete", "Onboarding 2026", "Welcome", "orphaned")]
    made = [("create", "Onboarding 2026", title, "migrated")
            for title in ("Kitchen and coffee", "Safety & security", "Welcome")]
    moved = [("delete", "Onboarding 2025", title, "migrated")  # two Welcome records
             for title in ("Kitchen", "Safety briefing", "Welcome", "Welcome")]
    assert ben == sorted(made + taken + (moved if source == "remove" else []))
    applied = ["--plan", "plan.json", "--strict"] if saved else ["specs", "--allow-deletes", "100"]
    assert main(["apply", *applied, "--yes"]) == 0
    after = completions(space)
    assert {lesson: after[("Ben Ode@102", lesson)] for lesson in ("Welcome", "Safety & security", "Kitchen and coffee")
            } == {"Welcome": 1, "Safety & security": 1, "Kitchen and coffee": 1}
    assert (after[("Ben Ode@101", "Welcome")] == 0) == (source == "remove")
    assert main(["plan", "specs", "--detailed-exitcode"]) == 0


def test_an_apply_that_swapped_a_pairs_record_is_verified_and_undone_as_a_swap(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One apply deleted an `owned` spec's records as orphaned and made the migration's twins of the same pairs. Its
    verification is no "made again since (drift)": the apply made them. Its undo deletes the twins and restores the
    spec's records: it skipped them, the pairs having "a completion again" (the twins it deletes), and left Ben
    with neither."""
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "mode: owned\nmembers:\n  - {email: ben@example.com, completed: [Welcome, Safety & security]}\n")
    assert main(["apply", "specs", "--yes"]) == 0
    before = completions(space)
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "mode: owned\nmembers:\n  - {email: eli@example.com, completed: []}\n")
    write(space, source="keep")
    capsys.readouterr()
    journals = set((space / ".reconciler" / "journal").glob("*.jsonl"))
    assert main(["apply", "specs", "--yes", "--allow-deletes", "100"]) == 0
    out = capsys.readouterr().out
    assert "deleted        2" in out and "Converged" in out
    assert "made again" not in out
    [journal] = set((space / ".reconciler" / "journal").glob("*.jsonl")) - journals
    assert main(["undo", str(journal), "--out", "undo.json"]) == 0
    undo = json.loads((space / "undo.json").read_text())
    ben = sorted((a["action"], a["lesson"]["title"]) for a in undo["actions"] if a["member"]["name"] == "Ben Ode")
    assert ben == [("create", "Safety & security"), ("create", "Welcome"), ("delete", "Kitchen and coffee"),
                   ("delete", "Safety & security"), ("delete", "Welcome")]
    assert main(["apply", "--plan", "undo.json", "--yes", "--allow-deletes", "100"]) == 0
    assert completions(space) == before


@pytest.mark.parametrize("source", ["keep", "remove"])
def test_a_swap_on_a_server_refusing_a_second_record_of_a_pair_converges_in_one_apply(
        space: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Whether the server takes two records of one pair is unknown (nexudus-api.md). One that refuses it refuses the
    migration's twin while the spec's record is there; that record is then deleted (orphaned). The twin was
    "refused, not sent again": the pair stayed empty until the next apply, and the apply failed (exit 4). A
    refused create whose pair this run has since emptied is sent again once, and the source deletes that waited for
    it follow."""
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "mode: owned\nmembers:\n  - {email: ben@example.com, completed: [Welcome, Safety & security]}\n")
    assert main(["apply", "specs", "--yes"]) == 0
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "mode: owned\nmembers:\n  - {email: eli@example.com, completed: []}\n")
    write(space, source=source)
    monkeypatch.setenv("NEXUDUS_TOKEN", "swap-test-9f2c")  # (redacted wherever it appears: no word of output)
    store = Store(str(space / ".reconciler" / "local.sqlite"))
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False, refuse_duplicates=True))
    try:
        with BackgroundServer(app) as server:
            capsys.readouterr()
            assert main(["--api", server.url, "apply", "specs", "--yes", "--allow-deletes", "100"]) == 0
            assert "Converged" in capsys.readouterr().out
            after = completions(space)
            assert [after[("Ben Ode@102", lesson)] for lesson in ("Welcome", "Safety & security")] == [1, 1]
            assert main(["--api", server.url, "apply", "specs", "--yes", "--allow-deletes", "100"]) == 0
            assert main(["--api", server.url, "plan", "specs", "--detailed-exitcode"]) == 0
    finally:
        store.close()
    after = completions(space)
    assert [after[("Ben Ode@102", lesson)] for lesson in ("Welcome", "Safety & security", "Kitchen and coffee")
            ] == [1, 1, 1]
    assert after[("Ben Ode@101", "Welcome")] == (0 if source == "remove" else 2)


def test_source_deletes_waiting_for_a_twin_are_resumed_not_taken_as_done(
        space: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same swap while the server refuses every delete: the spec's records stay, so the twins are refused (a
    second record of their pairs), and the sources wait for them (exit 4). Journaled as skipped, a resume took them
    for done: it made the twins once the deletes went through, and left the sources. They are "waiting" now, which a
    resume looks at again."""
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "mode: owned\nmembers:\n  - {email: ben@example.com, completed: [Welcome, Safety & security]}\n")
    assert main(["apply", "specs", "--yes"]) == 0
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "mode: owned\nmembers:\n  - {email: eli@example.com, completed: []}\n")
    write(space)
    monkeypatch.setenv("NEXUDUS_TOKEN", "swap-test-9f2c")
    store = Store(str(space / ".reconciler" / "local.sqlite"))
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False, refuse_duplicates=True))
    refusing = [True]

    def deletes_refused(environ: dict[str, Any], start_response: Any) -> Any:
        if refusing[0] and environ["REQUEST_METHOD"] == "DELETE":
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [b'{"Message": "refused", "Errors": [{"Message": "refused for the test"}], "WasSuccessful": false}']
        return app(environ, start_response)

    journals = set((space / ".reconciler" / "journal").glob("*.jsonl"))
    try:
        with BackgroundServer(deletes_refused) as server:  # type: ignore[arg-type]
            assert main(["--api", server.url, "apply", "specs", "--yes", "--allow-deletes", "100"]) == 4
            [journal] = set((space / ".reconciler" / "journal").glob("*.jsonl")) - journals
            waiting = [e for e in map(json.loads, journal.read_text().splitlines())
                       if e["type"] == "outcome" and e["status"] == "waiting"]
            assert len(waiting) == 3  # Ben's two Welcome records and his Safety briefing
            refusing[0] = False
            capsys.readouterr()
            assert main(["--api", server.url, "apply", "--resume", str(journal), "--yes"]) == 0
            assert "Converged" in capsys.readouterr().out
    finally:
        store.close()
    after = completions(space)
    assert [after[("Ben Ode@101", lesson)] for lesson in ("Welcome", "Safety briefing", "Kitchen")] == [0, 0, 0]
    assert [after[("Ben Ode@102", lesson)] for lesson in ("Welcome", "Safety & security", "Kitchen and coffee")
            ] == [1, 1, 1]


@pytest.mark.parametrize(("lender", "said"), [
    ("owned", "of the owned spec 'new-edition' only, which takes them back once it stops declaring them"),
    ("additive", "of the additive spec 'new-edition' only, which could take them back once owned; revoke them in a "
                 "spec of 'Onboarding 2025' to have them removed anyway"),
    ("left out", "carrying 'reconciler:new-edition' only, the marker of no spec or migration of this run"),
])
def test_a_source_whose_only_twin_a_spec_could_take_back_is_kept_until_the_migration_has_its_own(
        space: Path, capsys: pytest.CaptureFixture[str], lender: str, said: str) -> None:
    """A spec of the target course gave Ben two lessons; then a `source: remove` migration carries his 2025
    progress. Were the spec's records the twins the sources go for, the spec (owned, or made owned later) dropping
    Ben would take the only copies: his credit gone over two applies, each plan correct on its own. So too with the
    spec `additive` when the migration runs, or left out of the run that applies it (`apply specs/migration.yaml`).
    The sources are kept (a warning names the spec or its marker); once the spec, owned, drops Ben, the migration
    makes its own twins and the sources go, and Ben keeps every lesson."""
    ben = "{email: ben@example.com, completed: [Welcome, Safety & security]}"
    mode = "additive" if lender == "additive" else "owned"
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026", f"mode: {mode}\nmembers:\n  - {ben}\n")
    assert main(["apply", "specs", "--yes"]) == 0
    write(space)
    capsys.readouterr()
    assert main(["apply", "specs/migration.yaml" if lender == "left out" else "specs", "--yes",
                 "--allow-deletes", "100"]) == 0
    assert ("3 source completion(s) of 'Onboarding 2025' kept (source: remove): their copies in 'Onboarding 2026' are "
            f"records {said}") in capsys.readouterr().out
    after = completions(space)
    assert [after[("Ben Ode@101", lesson)] for lesson in ("Welcome", "Safety briefing", "Kitchen")] == [2, 1, 0]
    assert [after[("Ben Ode@102", lesson)] for lesson in ("Welcome", "Safety & security", "Kitchen and coffee")
            ] == [1, 1, 1]
    assert main(["plan", "specs", "--detailed-exitcode"]) == 0  # the sources stay while the spec declares them
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026",
                     "mode: owned\nmembers:\n  - {email: eli@example.com, completed: []}\n")
    assert main(["apply", "specs", "--yes", "--allow-deletes", "100"]) == 0
    after = completions(space)
    assert [after[("Ben Ode@101", lesson)] for lesson in ("Welcome", "Safety briefing", "Kitchen")] == [0, 0, 0]
    assert [after[("Ben Ode@102", lesson)] for lesson in ("Welcome", "Safety & security", "Kitchen and coffee")
            ] == [1, 1, 1]
    assert main(["plan", "specs", "--detailed-exitcode"]) == 0


def test_a_twin_the_plan_deletes_as_the_migrations_duplicate_is_not_the_one_a_source_goes_for(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ben's 2026 Welcome has two records: the older carries the marker of a spec not in the run, the newer the
    migration's. The plan keeps the oldest and deletes the migration's duplicate: the twin left is the unknown
    spec's, so the sources are kept (the plan counted the duplicate it deletes as the twin, and removed them)."""
    store = Store(str(space / ".reconciler" / "local.sqlite"))
    try:
        ben = next(m["Id"] for m in store.iter_rows("coursemembers")
                   if m["CourseId"] == 102 and m["CoworkerId"] == 10002)
        welcome = next(x["Id"] for x in store.iter_rows("courselessons")
                       if x["CourseId"] == 102 and x["Title"] == "Welcome")
        for marker in ("reconciler:old-spec", "reconciler:onboarding-2025-to-2026"):  # (the first is the older)
            store.insert("coursecompletedlessons",
                         {"CourseLessonId": welcome, "CourseMemberId": ben, "SystemId": marker}, updated_by="x")
    finally:
        store.close()
    write(space)
    assert main(["plan", "specs", "--format", "json", "--allow-deletes", "100"]) == 0
    doc = json.loads(capsys.readouterr().out)
    welcome_of_ben = sorted((a["course"]["title"], a["reason"]) for a in doc["actions"]
                            if a["member"]["name"] == "Ben Ode" and a["lesson"]["title"] == "Welcome")
    assert welcome_of_ben == [("Onboarding 2026", "duplicate")]
    assert any("2 source completion(s) of 'Onboarding 2025' kept (source: remove): their copies in 'Onboarding 2026' "
               "are records carrying 'reconciler:old-spec' only" in w for w in doc["warnings"])


def test_a_kept_source_is_removed_anyway_the_way_the_warning_gives(
        space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    completions_spec(space, "new.yaml", "new-edition", "Onboarding 2026", "mode: additive\nmembers:\n"
                     "  - {email: ben@example.com, completed: [Welcome, Safety & security]}\n")
    assert main(["apply", "specs", "--yes"]) == 0  # (the spec's records first: the migration's run finds them)
    write(space)
    assert main(["apply", "specs", "--yes", "--allow-deletes", "100"]) == 0
    assert "revoke them in a spec of 'Onboarding 2025' to have them removed anyway" in capsys.readouterr().out
    completions_spec(space, "old.yaml", "old-edition", "Onboarding 2025",
                     "revoke:\n  - {email: ben@example.com, lessons: [Safety briefing], reason: moved}\n")
    assert main(["apply", "specs", "--yes", "--allow-deletes", "100"]) == 0
    after = completions(space)
    assert [after[("Ben Ode@101", lesson)] for lesson in ("Welcome", "Safety briefing")] == [2, 0]
    assert [after[("Ben Ode@102", lesson)] for lesson in ("Welcome", "Safety & security")] == [1, 1]
    assert main(["plan", "specs", "--detailed-exitcode"]) == 0


def test_a_lesson_map_names_lessons_by_id_in_its_list_form(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Two lessons of the source course share a title: the map's error says how to name one by Id (its list form,
    which the schema takes), a target may be named by Id in either form, and one lesson named twice, by its title
    and by its Id, is an error at the second."""
    seeded(tmp_path, monkeypatch, "seed.yaml",
           "coworkers: [{name: Ann, email: ann@example.com}]\ncourses:\n"
           "  - {title: Old, lessons: [Intro, Quiz], members: [{email: ann@example.com, completed: all}]}\n"
           "  - {title: New, lessons: [Intro, Quiz], members: [ann@example.com]}\n")
    head = "apiVersion: reconciler/v1\nkind: Migration\nmetadata: {name: mig}\nfrom: {course: Old}\nto: {course: New}\n"
    path = tmp_path / "specs" / "mig.yaml"
    path.write_text(head + "lessons:\n  Intro: Intro\n")
    assert main(["plan", "specs"]) == 0
    store = Store(str(tmp_path / ".reconciler" / "local.sqlite"))
    try:  # a second Intro in Old (a seed refuses one), completed
        old = next(c["Id"] for c in store.iter_rows("courses") if c["Title"] == "Old")
        lesson = store.insert("courselessons", {"CourseId": old, "Title": "Intro", "DisplayOrder": 9}, updated_by="x")
        member = next(m["Id"] for m in store.iter_rows("coursemembers") if m["CourseId"] == old)
        store.insert("coursecompletedlessons", {"CourseLessonId": lesson["Id"], "CourseMemberId": member},
                     updated_by="x")
        lessons = {(x["CourseId"] == old, x["Title"], x["Id"]) for x in store.iter_rows("courselessons")}
    finally:
        store.close()
    capsys.readouterr()
    assert main(["plan", "specs"]) == 1
    first, second = sorted(i for is_old, title, i in lessons if is_old and title == "Intro")
    new_quiz = next(i for is_old, title, i in lessons if not is_old and title == "Quiz")
    assert (f"specs/mig.yaml:7:3: lesson title 'Intro' is ambiguous in 'Old' (Ids {first}, {second}); name it by "
            "Id, in a list: lessons: [{from: {id: N}, to: ...}]") in capsys.readouterr().err
    path.write_text(head + f"lessons:\n  - {{from: {{id: {second}}}, to: Intro}}\n"
                           f"  - {{from: Quiz, to: {{id: {new_quiz}}}}}\n")
    assert main(["plan", "specs", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted((a["action"], a["lesson"]["title"]) for a in doc["actions"]) == [("create", "Intro"),
                                                                                     ("create", "Quiz")]
    assert any("lesson 'Intro' of 'Old' has 1 completion(s) but no mapping" in w for w in doc["warnings"])  # first
    path.write_text(head + f"lessons:\n  Quiz: {{id: {new_quiz}}}\n  Intro: Intro\n")
    assert main(["plan", "specs"]) == 1  # (the mapping form takes a target's Id)
    assert "specs/mig.yaml:8:3: lesson title 'Intro' is ambiguous in 'Old'" in capsys.readouterr().err
    path.write_text(head + "lessons:\n  - {from: Quiz, to: Quiz}\n"
                           f"  - {{from: {{id: {second}}}, to: {{id: {new_quiz}}}}}\n")
    assert main(["plan", "specs"]) == 1
    assert f"specs/mig.yaml:8:28: target lesson {{id: {new_quiz}}} is 'Quiz', named already at specs/mig.yaml:7:22" \
        in capsys.readouterr().err
    path.write_text(head + "lessons:\n  - {from: Quiz, to: Quiz}\n  - {from: Quiz, to: Intro}\n")
    assert main(["plan", "specs"]) == 1
    assert "specs/mig.yaml:8:12: source lesson 'Quiz' is named twice in the map (also at specs/mig.yaml:7:12)" \
        in capsys.readouterr().err
    old_quiz = next(i for is_old, title, i in lessons if is_old and title == "Quiz")
    path.write_text(head + f"lessons:\n  - {{from: Quiz, to: Quiz}}\n  - {{from: {{id: {old_quiz}}}, to: Intro}}\n")
    assert main(["plan", "specs"]) == 1
    assert f"specs/mig.yaml:8:12: source lesson {{id: {old_quiz}}} is 'Quiz', named already at specs/mig.yaml:7:12" \
        in capsys.readouterr().err


def test_a_source_whose_twin_is_gone_by_the_apply_is_kept(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ana's 2026 Welcome is there when the plan is saved, so the plan removes her 2025 one with no create; it is
    deleted before the apply: the source's delete reads the twin first, and keeps the source (it was deleted, and
    the credit with it, with "Converged")."""
    write(space, source="remove")
    assert main(["plan", "specs", "--out", "plan.json", "--allow-deletes", "100"]) == 0
    store = Store(str(space / ".reconciler" / "local.sqlite"))
    try:
        ana_2026 = next(m["Id"] for m in store.iter_rows("coursemembers") if m["CourseId"] == 102
                        and m["CoworkerId"] == 10001)
        twin = next(r["Id"] for r in store.iter_rows("coursecompletedlessons") if r["CourseMemberId"] == ana_2026)
        store.delete("coursecompletedlessons", twin)
    finally:
        store.close()
    capsys.readouterr()
    main(["apply", "--plan", "plan.json", "--yes"])
    out = capsys.readouterr().out
    assert "is gone: the source is kept" in out
    assert completions(space)[("Ana Ruiz@101", "Welcome")] == 1
