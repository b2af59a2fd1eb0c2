"""Input a user could write or damage, each met with a clear error naming its place, never "a bug in reconciler",
and never a silent loss: YAML values their tag or form promises but does not hold, a migration's lesson map keyed by
what YAML reads as a number, a `kind` that is no text, a malformed URL, a folder that cannot be read, a journal
damaged in the middle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_cli, seeded

HEAD = "apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: t}\ncourse: Onboarding 101\n"


@pytest.mark.parametrize(("value", "said"), [
    ("2026-02-30", "'2026-02-30' is not a valid timestamp (day is out of range for month)"),
    ("2026-13-01", "'2026-13-01' is not a valid timestamp (month must be in 1..12)"),
    ("!!int abc", "'abc' is not a valid int"),
    ("!!float x", "'x' is not a valid float"),
    ("!!bool maybe", "'maybe' is not a valid bool"),
    ("!!timestamp x", "'x' is not a valid timestamp"),
    ("9" * 4301, "'99999999999999999999'... (4,301 characters) is not a valid int"),
])
def test_a_value_its_tag_or_form_promises_but_does_not_hold_is_a_problem_at_its_place(
        demo: Path, capsys: pytest.CaptureFixture[str], value: str, said: str) -> None:
    (demo / "bad.yaml").write_text(HEAD + f"revoke:\n  - {{email: alice@example.com, lessons: all, reason: {value}}}\n")
    code, _, err = run_cli(capsys, "validate", "--offline", "bad.yaml")
    assert code == 1 and "bug" not in err, err
    assert f"bad.yaml:6:54: YAML: {said}" in err, err


def test_the_same_in_the_configuration_file(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "reconciler.yaml").write_text("target: local\nlimits: {writes_per_minute: !!int abc}\n")
    code, _, err = run_cli(capsys, "validate", "--offline")
    assert code == 1 and "bug" not in err and "reconciler.yaml:2:29: YAML: 'abc' is not a valid int" in err, err


@pytest.mark.parametrize(("key", "read"), [("1.10", "the number 1.1"), ("Yes", "the boolean true"),
                                           ("~", "the value null"), ("2", "the number 2")])
def test_a_migration_lesson_key_yaml_reads_as_no_text_is_an_error_not_another_lesson(
        demo: Path, capsys: pytest.CaptureFixture[str], key: str, read: str) -> None:
    """`1.10: A` is the number 1.1: once turned back into text it named lesson "1.1", and migrated it."""
    (demo / "m.yaml").write_text("apiVersion: reconciler/v1\nkind: Migration\nmetadata: {name: m}\n"
                                 "from: {course: Coffee Bar Basics}\nto: {course: Coffee Bar Basics 2027}\n"
                                 f"lessons:\n  {key}: Espresso\n")
    code, _, err = run_cli(capsys, "validate", "--offline", "m.yaml")
    assert code == 1 and "bug" not in err, err
    assert f"m.yaml:7:3: lessons: YAML reads this key as {read}, not as a lesson title" in err, err


def test_every_bad_entry_of_a_lesson_map_in_its_list_form_is_said_at_once(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The list form is one branch of a oneOf: only the deepest problem of the list was said (one entry's), and each
    fix showed the next."""
    (demo / "m.yaml").write_text("apiVersion: reconciler/v1\nkind: Migration\nmetadata: {name: m}\n"
                                 "from: {course: Coffee Bar Basics}\nto: {course: Coffee Bar Basics 2027}\n"
                                 "lessons:\n  - {from: {id: 0}, to: Espresso}\n  - {from: Milk}\n"
                                 "  - {from: Milk, to: Milk, extra: 1}\n  - {from: '', to: {idd: 3}}\n")
    code, _, err = run_cli(capsys, "validate", "--offline", "m.yaml")
    assert code == 1 and "bug" not in err, err
    assert [line for line in err.splitlines() if line.startswith("m.yaml:")] == [
        "m.yaml:7:17: lessons[0].from.id must be at least 1",
        "m.yaml:8:5: missing required key 'to' in lessons[1]",
        "m.yaml:9:28: unknown key 'extra' in lessons[2] (allowed: from, to)",
        "m.yaml:10:12: lessons[3].from must not be empty",
        "m.yaml:10:20: missing required key 'id' in lessons[3].to",
        "m.yaml:10:21: unknown key 'idd' in lessons[3].to; did you mean 'id'?"]


@pytest.mark.parametrize(("text", "said"), [
    (HEAD.replace("course: Onboarding 101\n", "course: Onboarding 101\nmode: null\n") + "members: []\n",
     "n.yaml:5:7: mode must be one of 'additive', 'owned', 'authoritative', not null\n"),
    ("apiVersion: reconciler/v1\nkind: Migration\nmetadata: {name: m}\nfrom: {course: Coffee Bar Basics}\n"
     "to: {course: Coffee Bar Basics 2027}\nlessons: null\n",
     "n.yaml:6:10: lessons must be a mapping or a list, not null"),
    (HEAD + "members:\n  - {email: alice@example.com, completed: [null]}\n",
     "n.yaml:6:44: members[0].completed[0] must be a string or a mapping, not null"),
])
def test_a_null_is_said_as_yaml_writes_it(demo: Path, capsys: pytest.CaptureFixture[str], text: str, said: str) -> None:
    """Not as Python's `None`, which no spec contains."""
    (demo / "n.yaml").write_text(text)
    code, _, err = run_cli(capsys, "validate", "--offline", "n.yaml")
    assert code == 1 and said in err and "None" not in err, err


@pytest.mark.parametrize(("header", "said"), [
    ("apiVersion: reconciler/v1\nKind: Completions\n", ["h.yaml:2:1: unknown key 'Kind'; did you mean 'kind'?"]),
    ("apiversion: reconciler/v1\nkind: Completions\n",
     ["h.yaml:1:1: unknown key 'apiversion'; did you mean 'apiVersion'?"]),
    ("ApiVersion: reconciler/v1\nKind: Completions\n",
     ["h.yaml:1:1: unknown key 'ApiVersion'; did you mean 'apiVersion'?",
      "h.yaml:2:1: unknown key 'Kind'; did you mean 'kind'?"]),
    ("apiVersion: reconciler/v1\nKIND: Completions\nKind: Completions\n",
     ["h.yaml:2:1: unknown key 'KIND'; did you mean 'kind'?", "h.yaml:3:1: unknown key 'Kind'; did you mean 'kind'?"]),
])
def test_a_header_key_in_another_case_is_said_once_at_its_place(
        demo: Path, capsys: pytest.CaptureFixture[str], header: str, said: list[str]) -> None:
    """`Kind:` was "missing kind" at 1:1, with no word of the key written; `apiversion:` was said three times."""
    (demo / "h.yaml").write_text(header + "metadata: {name: t}\ncourse: Onboarding 101\nmembers: []\n")
    code, _, err = run_cli(capsys, "validate", "--offline", "h.yaml")
    assert code == 1 and [line for line in err.splitlines() if line.startswith("h.yaml:")] == [
        f"{line} (keys are case-sensitive)" for line in said], err


def test_other_yaml_with_a_key_like_kind_is_not_taken_for_a_spec(demo: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A Kubernetes manifest beside the specs (`Kind: Deployment`) is none of ours: skipped, as before."""
    (demo / "deploy.yaml").write_text("Kind: Deployment\nspec: {replicas: 1}\n")
    code, out, err = run_cli(capsys, "validate", "--offline")
    assert code == 0 and "deploy.yaml" not in out + err, out + err


def test_a_mistyped_team_is_an_error_where_the_plan_would_take_back_what_the_team_was_given(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`team: Comunity` in the owned onboarding spec: no member is in it, so the plan deleted the Community members'
    completions as orphaned, and validate passed with a warning. A team no one is in yet, near one that members are
    in, stays a warning where nothing of the near team is deleted: a rule may come before its team's members."""
    assert run_cli(capsys, "apply", "--yes")[0] == 0
    onboarding = demo / "onboarding.yaml"
    text = onboarding.read_text()
    onboarding.write_text(text.replace("  - team: Community ", "  - team: Comunity "))
    code, out, err = run_cli(capsys, "plan")
    assert code == 1 and "Plan:" not in out, out
    assert ("onboarding.yaml:10:11: no member of 'Onboarding 101' is in team 'Comunity'; did you mean 'Community'? "
            "This plan would delete 5 completion(s) of members of 'Community' that this rule would declare under that "
            "name") in err, err
    code, _, err = run_cli(capsys, "validate")  # (it plans nothing: the name is a warning there)
    assert code == 0 and "is in team 'Comunity'; did you mean 'Community'?" in err
    onboarding.write_text(text.replace("  - team: Community ", "  - team: Community EU\n    completed: all\n"
                                                               "  - team: Community "))
    code, out, err = run_cli(capsys, "plan", "--detailed-exitcode")
    assert code == 0 and ("onboarding.yaml:10:11: no member of 'Onboarding 101' is in team 'Community EU'; did you "
                          "mean 'Community'?") in out, out + err


@pytest.mark.parametrize("typo", [False, True])
def test_a_mistyped_team_in_one_authoritative_spec_is_caught_where_another_names_its_members(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], typo: bool) -> None:
    """Two authoritative specs of a course: one gives the Community team every lesson, the other names Ann for one.
    With the team mistyped, what Ann has beyond that one is undeclared and deleted, by the other spec: the typo
    is still the cause, and an error."""
    seed = ("coworkers:\n  - {name: Ann, email: ann@example.com, teams: [Community]}\n"
            "  - {name: Bo, email: bo@example.com, teams: [Community]}\n"
            "courses:\n  - {title: C, lessons: [A, B], members: [{email: ann@example.com, completed: all}, "
            "{email: bo@example.com, completed: all}]}\n")
    head = "apiVersion: reconciler/v1\nkind: Completions\nmetadata: {{name: {}}}\ncourse: C\nmode: authoritative\n"
    seeded(tmp_path, monkeypatch, "seed.yaml", seed, {
        "a.yaml": head.format("a") + f"members:\n  - {{team: {'Comunity' if typo else 'Community'}, completed: all}}\n",
        "b.yaml": head.format("b") + "members:\n  - {email: ann@example.com, completed: [A]}\n"})
    code, out, err = run_cli(capsys, "plan", "specs")
    if not typo:
        assert code == 0 and "No changes." in out, out + err
        return
    assert code == 1 and ("specs/a.yaml:7:12: no member of 'C' is in team 'Comunity'; did you mean 'Community'? "
                          "This plan would delete 1 completion(s)") in err, out + err


@pytest.mark.parametrize("kind", ["[Completions]", "{a: 1}"])
def test_a_kind_that_is_no_text_is_a_problem_at_its_place(demo: Path, capsys: pytest.CaptureFixture[str],
                                                          kind: str) -> None:
    (demo / "k.yaml").write_text(HEAD.replace("kind: Completions", f"kind: {kind}") + "members: []\n")
    code, _, err = run_cli(capsys, "validate", "--offline", "k.yaml", "makerspace.yaml")
    assert code == 1 and "bug" not in err and "k.yaml:2:7: unknown kind" in err, err


@pytest.mark.parametrize(("url", "said"), [("https://[::1", "Invalid IPv6 URL"),
                                           ("http://[zz]:80", "'zz' does not appear to be an IPv4 or IPv6 address")])
def test_a_malformed_url_is_a_clear_error(demo: Path, capsys: pytest.CaptureFixture[str], url: str, said: str) -> None:
    code, _, err = run_cli(capsys, "--api", url, "plan")
    assert code == 1 and f"the target from --api is not a valid URL ({said})" in err and "bug" not in err, err


def test_a_folder_that_cannot_be_read_is_an_error_not_specs_left_out(tmp_path: Path) -> None:
    """Run without the right to read what its mode forbids (root would read it anyway)."""
    demo = tmp_path / "demo"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples", demo,
                    ignore=shutil.ignore_patterns(".reconciler", "github-actions"))
    (demo / "sub").mkdir()
    (demo / "sub" / "more.yaml").write_text(HEAD + "members: []\n")
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: a folder's mode does not stop root")
        prefix = [setpriv, "--inh-caps=-dac_override,-dac_read_search",
                  "--bounding-set=-dac_override,-dac_read_search"]
    (demo / "sub").chmod(0)
    try:
        ran = subprocess.run([*prefix, sys.executable, "-m", "reconciler", "validate", "--offline", "."], cwd=demo,
                             capture_output=True, text=True, timeout=120, check=False)
    finally:
        (demo / "sub").chmod(0o755)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "./sub:1:1: cannot read folder: Permission denied; its specs would be left out" in ran.stderr, ran.stderr


def applied_journal(demo: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines of the journal of an apply of the examples."""
    code, _, err = run_cli(capsys, "apply", "--yes")
    assert code == 0, err
    return next((demo / ".reconciler" / "journal").glob("*.jsonl")).read_text().splitlines()


def test_undo_refuses_a_journal_that_lost_an_intent_to_a_cut_line(demo: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An intent carries the record a delete removes: undo must not plan without it as if nothing were deleted."""
    lines = applied_journal(demo, capsys)
    at = next(i for i, line in enumerate(lines) if '"type":"intent"' in line and '"record"' in line)
    damaged = demo / "damaged.jsonl"
    damaged.write_text("\n".join([*lines[:at], lines[at][:len(lines[at]) // 2], *lines[at + 1:]]) + "\n")
    code, out, err = run_cli(capsys, "undo", str(damaged))
    assert code == 1 and f"damaged.jsonl:{at + 1}: the journal is damaged: a line cut short where the intent" in err
    assert "Plan:" not in out


def test_undo_says_a_start_entry_action_of_another_shape_is_damage(demo: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    lines = applied_journal(demo, capsys)
    start = json.loads(lines[0])
    start["actions"][0]["member"] = None
    damaged = demo / "damaged.jsonl"
    damaged.write_text("\n".join([json.dumps(start), *lines[1:]]) + "\n")
    for command in (["undo", str(damaged)], ["apply", "--resume", str(damaged), "--yes"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1 and "start.actions[0]: the journal is damaged: not an action as an apply writes it" in err
        assert "bug" not in err, err


def test_a_least_interval_past_a_minute_is_refused_not_waited(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """9,007,199,254,740,992 ms between requests was accepted, and a plan then waited without a word."""
    (demo / "reconciler.yaml").write_text("target: local\nlimits: {min_interval_ms: 9007199254740992}\n")
    code, _, err = run_cli(capsys, "validate", "--offline")
    assert code == 1 and "limits.min_interval_ms: 9007199254740992 is greater than the maximum of 60000" in err, err


def test_a_device_or_pipe_given_or_found_as_a_spec_is_named_for_what_it_is(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "plan", "/dev/null")
    assert code == 1 and "/dev/null:1:1: not a file or folder (a device, pipe or socket)" in err, err
    assert "no such file" not in err
    os.mkfifo(demo / "piped.yaml")  # found in a folder: named, never read (a read would wait for a writer forever)
    code, _, err = run_cli(capsys, "validate", "--offline", ".")
    assert code == 1 and "piped.yaml:1:1: not a file (a pipe, socket or device named as a spec)" in err, err
    code, _, err = run_cli(capsys, "plan", "piped.yaml")
    assert code == 1 and "piped.yaml:1:1: not a file or folder" in err, err
