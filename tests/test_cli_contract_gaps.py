"""Contract gaps closed (PRODUCT.md): -q keeps a plan's warnings; every plan and apply names its target on its
first line (with -q and in Markdown too); `apply --plan` takes no PATH; an undo is held to the delete budgets
like any plan; credentials never go over plain http to a host that is not loopback, whatever the flags."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import load_config
from reconciler.errors import ConfigError

from .conftest import run_cli

SUMMARY = re.compile(r"^Plan: [\d,]+ to create, [\d,]+ to delete, [\d,]+ to enrol, [\d,]+ unchanged\. ")
RULE = "credentials are sent only over https, or over plain http to a loopback address (the emulator)"


def local_target(demo: Path) -> str:
    return f"local emulator ({demo / '.reconciler' / 'local.sqlite'})"


def journals(demo: Path) -> list[Path]:
    return sorted((demo / ".reconciler" / "journal").glob("*.jsonl"))


def warned_spec(demo: Path) -> None:
    """A team named in the wrong case, and a migration that leaves a source lesson with completions unmapped."""
    onboarding = demo / "onboarding.yaml"
    onboarding.write_text(onboarding.read_text().replace("  - team: Sales\n", "  - team: sales\n"))
    migration = demo / "coffee-bar-migration.yaml"
    migration.write_text("".join(line for line in migration.read_text().splitlines(keepends=True)
                                 if "Milk steaming" not in line))


def warning_block(text: str) -> list[str]:
    """The "Warnings:" heading and its lines, as the plan's text shows them."""
    lines = text.splitlines()
    start = lines.index("Warnings:")
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        block.append(line)
    return block


# --- 1. -q keeps the plan's warnings ---------------------------------------------------------------

def test_quiet_plan_prints_the_same_warnings_as_the_full_plan(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warned_spec(demo)
    code, loud, _ = run_cli(capsys, "plan")
    assert code == 0
    block = warning_block(loud)
    assert any("no member of 'Onboarding 101' is in team 'sales'; did you mean 'Sales'?" in line for line in block)
    assert any("'Milk steaming'" in line and "no mapping" in line for line in block)
    code, quiet, _ = run_cli(capsys, "-q", "plan")
    assert code == 0
    assert quiet.splitlines() == [f"Target: {local_target(demo)}", *block, loud.splitlines()[-1]]
    assert SUMMARY.match(quiet.splitlines()[-1])


def test_quiet_apply_prints_the_plans_warnings(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warned_spec(demo)
    block = warning_block(run_cli(capsys, "plan")[1])
    code, out, _ = run_cli(capsys, "-q", "apply", "--yes")
    assert code == 0
    lines = out.splitlines()
    assert lines[1:1 + len(block)] == block
    assert SUMMARY.match(lines[1 + len(block)]) and lines[-1].startswith("Converged: ")


# --- 2. the target on the first line ----------------------------------------------------------------

def test_quiet_plan_and_apply_name_the_target_on_their_first_line(demo: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for words in (["-q", "plan"], ["plan", "-q", "--detailed-exitcode"], ["-q", "apply", "--yes"]):
        _, out, _ = run_cli(capsys, *words)
        lines = out.splitlines()
        assert lines[0] == f"Target: {local_target(demo)}", words
        assert sum(bool(SUMMARY.match(line)) for line in lines) == 1, words  # the summary: a line of its own


def test_markdown_names_the_target_on_its_first_line(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "plan", "--format", "markdown", "--out", "plan.json")
    assert code == 0
    first, blank, summary = out.splitlines()[:3]
    assert first == f"### reconciler plan for `{local_target(demo)}`"
    assert blank == "" and summary.startswith("**Plan: 26 to create, 2 to delete, 2 to enrol, ")
    assert out.count(local_target(demo)) == 1  # named once, not twice
    code, shown, _ = run_cli(capsys, "show", "plan.json", "--format", "markdown")
    assert code == 0 and shown.splitlines()[0] == first


# --- 3. apply --plan takes no PATH ------------------------------------------------------------------

def test_apply_with_a_saved_plan_and_paths_is_a_usage_error(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "plan", "--out", "plan.json")[0] == 0
    code, out, err = run_cli(capsys, "apply", "--plan", "plan.json", "onboarding.yaml", "--yes")
    assert code == 1 and out == ""
    assert err == "error: --plan takes the saved plan alone, without PATH (the plan names its own spec files)\n"
    assert journals(demo) == []
    assert run_cli(capsys, "apply", "--plan", "plan.json", "--yes")[0] == 0  # alone, it applies


# --- 4. undo under the delete budgets -----------------------------------------------------------------

def applied(demo: Path, capsys: pytest.CaptureFixture[str], safety: str) -> Path:
    """Apply the demo's plan (26 creates, 2 deletes) under `safety`; the journal it wrote."""
    (demo / "reconciler.yaml").write_text(f"target: local\nseed: seed.yaml\nsafety: {safety}\n")
    code, out, err = run_cli(capsys, "apply", "--yes", "--allow-deletes", "2")
    assert code == 0, out + err
    (journal,) = journals(demo)
    return journal


def test_undo_past_max_deletes_is_blocked_and_its_saved_plan_refused(demo: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    journal = applied(demo, capsys, "{max_deletes: 1, min_existing: 1000}")
    code, out, err = run_cli(capsys, "undo", str(journal), "--out", "undo.json")
    assert code == 3
    assert ("saved the undo plan to undo.json; it is blocked: once its deletes are reviewed, apply it with: "
            "reconciler apply --plan undo.json --allow-deletes 26") in err  # (the command it gives works: below)
    lines = out.splitlines()
    assert lines[0] == f"Target: {local_target(demo)}"
    assert lines[-2:] == ["Blocked: 26 deletes exceed max_deletes (1).",
                          "Review the deletes, then re-run with --allow-deletes 26 to proceed."]
    saved: dict[str, Any] = json.loads((demo / "undo.json").read_text())
    assert saved["blocked"] == {"reasons": ["26 deletes exceed max_deletes (1)"], "allow_deletes": 26}
    code, quiet, _ = run_cli(capsys, "-q", "undo", str(journal))
    assert code == 3 and quiet.splitlines()[-2:] == lines[-2:]

    # The saved blocked undo plan is refused as a blocked plan is: exit 3, nothing written, until lifted.
    for extra in ([], ["--allow-deletes", "25"]):
        code, out, _ = run_cli(capsys, "apply", "--plan", "undo.json", "--yes", *extra)
        assert code == 3 and "re-run with --allow-deletes 26 to proceed" in out and len(journals(demo)) == 1
    code, out, err = run_cli(capsys, "apply", "--plan", "undo.json", "--yes", "--allow-deletes", "26")
    assert code == 0 and "Converged" in out, out + err


def test_undo_allow_deletes_lifts_its_budget(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = applied(demo, capsys, "{max_deletes: 1, min_existing: 1000}")
    assert run_cli(capsys, "undo", str(journal), "--allow-deletes", "25")[0] == 3
    code, out, err = run_cli(capsys, "undo", str(journal), "--allow-deletes", "26", "--out", "undo.json")
    assert code == 0 and "Blocked" not in out
    assert "saved the undo plan to undo.json; apply it with: reconciler apply --plan undo.json\n" in err
    assert json.loads((demo / "undo.json").read_text())["blocked"] is None
    code, out, err = run_cli(capsys, "apply", "--plan", "undo.json", "--yes")
    assert code == 0 and "Converged" in out, out + err


def test_undo_fraction_budget_is_measured_against_what_the_apply_left_in_scope(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = applied(demo, capsys, "{max_deletes: 500, max_delete_fraction: 0.3, min_existing: 10}")
    code, out, _ = run_cli(capsys, "undo", str(journal), "--out", "undo.json")
    assert code == 3
    assert ("Blocked: 26 deletes are 60% of the 43 existing completions in scope, over max_delete_fraction (30%)."
            in out.splitlines())
    assert json.loads((demo / "undo.json").read_text())["summary"]["existing_in_scope"] == 43
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\n"
                                          "safety: {max_deletes: 500, max_delete_fraction: 0.7, min_existing: 10}\n")
    assert run_cli(capsys, "undo", str(journal))[0] == 0


# --- 5. no credentials over plain http to a remote host -----------------------------------------------

@pytest.mark.parametrize("api", ["http://lab.example:8080", "https://spaces.nexudus.com", "local"])
def test_the_retired_insecure_http_flag_is_refused_with_the_rule(api: str, demo: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for words in (["--allow-insecure-http", "plan", "--api", api], ["plan", "--api", api, "--allow-insecure-http"]):
        code, out, err = run_cli(capsys, *words)
        assert code == 1 and out == ""
        assert err == f"error: --allow-insecure-http is no longer accepted: {RULE}, whatever the flags; use https\n"


def test_plain_http_to_a_remote_host_is_refused_naming_the_rule(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    for remote in ("http://lab.example:8080", "http://spaces.nexudus.com.localhost"):  # (DNS may answer for one)
        with pytest.raises(ConfigError, match=re.escape(RULE)):
            load_config(api_flag=remote, env={}, cwd=tmp_path)
    assert load_config(api_flag="http://localhost:8080", env={}, cwd=tmp_path).target == "http://localhost:8080"
    assert load_config(api_flag="http://127.0.0.1:8080", env={}, cwd=tmp_path).target == "http://127.0.0.1:8080"
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "insecure" not in out


def test_a_member_named_only_to_revoke_loses_that_lesson_not_the_rest_in_authoritative_mode(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`authoritative` deletes what the spec does not declare for the members it names in `members`; `revoke` is an
    explicit removal of the lessons it lists. A member named only by a revoke of one lesson lost all seven."""
    (demo / "onboarding.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: onboarding-101}\ncourse: Onboarding 101\n"
        "mode: authoritative\nmembers:\n  - {email: bob@example.com, completed: [Welcome, House rules]}\n"
        "revoke:\n  - {email: alice@example.com, lessons: [Welcome], reason: ticket 1}\n")
    code, out, err = run_cli(capsys, "plan", "onboarding.yaml", "--format", "json", "--allow-deletes", "10")
    assert code == 0, err
    deletes = [(a["member"]["name"], a["lesson"]["title"], a["reason"])
               for a in json.loads(out)["actions"] if a["action"] == "delete"]
    assert sorted(deletes) == [("Alice Martin", "Welcome", "revoked"), ("Bob Okafor", "Safety briefing", "undeclared")]


def test_validate_says_every_problem_at_once_across_files(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A schema problem in one file used to hide the names another file gets wrong until it was fixed: the files
    without problems are resolved too, and everything is said at once (offline too, for what it checks)."""
    (demo / "makerspace.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: makerspace}\ncourse: Makerspace Saftey\n"
        "members:\n  - {email: alice@example.com, completed: all}\n")
    (demo / "broken.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: broken}\ncourse: Coffee Bar Basics\n"
        "members:\n  - {email: bob@example.com, completed: 7}\n")
    code, out, err = run_cli(capsys, "validate")
    assert code == 1 and out == ""
    assert "broken.yaml:6:41: members[0].completed must be" in err
    assert "makerspace.yaml:4:9: no course 'Makerspace Saftey'; did you mean 'Makerspace Safety'?" in err
    code, out, err = run_cli(capsys, "validate", "--offline")
    assert code == 1 and "broken.yaml:6:41" in err and "Saftey" not in err


def test_show_quiet_prints_what_plan_quiet_prints(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-q is "only what a script needs" for every command: `show -q` of a saved plan prints the lines `plan -q` does."""
    code, planned, _ = run_cli(capsys, "-q", "plan", "--out", "plan.json")
    assert code == 0
    code, shown, _ = run_cli(capsys, "-q", "show", "plan.json")
    assert code == 0 and shown == planned and "Plan: 26 to create" in shown and "+ create" not in shown


def test_a_plan_of_another_target_is_refused_before_anything_is_made_here(
        demo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The local target is the store in this folder's .reconciler: a plan of another folder's is refused (exit 3)
    before the store and the lock are made here."""
    assert run_cli(capsys, "plan", "--out", "plan.json")[0] == 0
    elsewhere = demo.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = run_cli(capsys, "apply", "--plan", str(demo / "plan.json"), "--yes")
    assert code == 3 and "stale plan: it was made against local emulator" in err
    assert list(elsewhere.iterdir()) == []


def test_schemas_into_a_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("x")
    code, out, err = run_cli(capsys, "schemas", "--out", str(tmp_path / "taken"))
    assert code == 1 and out == "" and err == f"error: --out {tmp_path / 'taken'} is a file: name a folder to write " \
                                              "the schemas into\n"
