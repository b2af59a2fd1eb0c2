"""`reconciler plan` through the command line, on the local emulator seeded with examples/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from reconciler.actions import document_digest
from reconciler.cli import main
from reconciler.config import DOCUMENTED_LIMITS
from reconciler.model import Completion
from reconciler.plan import Change, Plan
from reconciler.render import MARKDOWN_LIMIT, Labels, markdown, plan_dict
from reconciler.schemas import schema


def test_plan_text_names_the_target_first_and_summarises(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"Target: local emulator ({demo / '.reconciler' / 'local.sqlite'})"
    assert "Plan: 26 to create, 2 to delete, 2 to enrol, 51 unchanged." in out
    assert "- delete   Welcome  #" in out and "[revoked: marked complete by mistake, ticket 812]" in out
    assert "\033[" not in out  # no colour when not a terminal


def test_detailed_exitcode(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--detailed-exitcode"]) == 2
    empty = demo / "empty"
    empty.mkdir()
    (empty / "x.yaml").write_text("apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: x}\n"
                                  "course: Onboarding 101\nmembers:\n  - {email: alice@example.com, completed: all}\n")
    assert main(["plan", "empty", "--detailed-exitcode"]) == 0
    assert "No changes." in capsys.readouterr().out


def test_json_format_validates_and_out_saves_it(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--format", "json", "--out", "plan.json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((demo / "plan.json").read_text())
    assert saved.pop("spec_paths") == ["coffee-bar-migration.yaml", "host-training.yaml", "makerspace.yaml",
                                       "onboarding.yaml"]  # exactly the spec files, not the seed beside them
    assert len(saved.pop("actions_digest")) == 64
    assert saved.pop("document_digest") == document_digest(saved)
    assert printed == saved
    Draft202012Validator(schema("plan")).validate(saved)
    assert saved["summary"]["create"] == 26 and saved["format_version"] == 1 and len(saved["spec_digest"]) == 64
    delete = next(a for a in saved["actions"] if a["action"] == "delete")
    assert delete["record"]["CourseMemberId"] == delete["member"]["id"]
    record = delete["record"]
    assert delete["precondition"] == {"exists": {"Id": record["Id"], "CourseMemberId": record["CourseMemberId"],
                                                 "CourseLessonId": record["CourseLessonId"],
                                                 "UpdatedOn": record["UpdatedOn"]}}


def test_a_blocked_plan_renders_in_full_and_exits_3(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nsafety: {max_deletes: 1}\n")
    assert main(["plan"]) == 3
    out = capsys.readouterr().out
    assert "Blocked: 2 deletes exceed max_deletes (1)." in out and "--allow-deletes 2" in out
    assert "+ create" in out and "lifted" not in out
    assert main(["plan", "--allow-deletes", "2"]) == 0
    # A lift is said in every form of the plan (a repository variable left set is never silent).
    lifted = "the delete budget is lifted by --allow-deletes 2: 2 deletes exceed max_deletes (1) (review its deletes)"
    assert lifted in capsys.readouterr().out
    assert main(["plan", "--allow-deletes", "5", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == [lifted.replace("--allow-deletes 2", "--allow-deletes 5")]
    assert main(["plan", "--allow-deletes", "2", "--format", "markdown"]) == 0
    assert "lifted by --allow-deletes 2: 2 deletes exceed max\\_deletes (1)" in capsys.readouterr().out
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\n")  # within the budget: nothing to say
    assert main(["plan", "--allow-deletes", "2"]) == 0 and "lifted" not in capsys.readouterr().out


def test_markdown_is_for_pull_requests(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### reconciler plan") and "#### Deletes (2: every one listed)" in out
    assert "| Carol Jensen | Welcome | revoked: marked complete by mistake, ticket 812 | onboarding.yaml:23:12 |" in out
    assert out.index("#### Deletes") < out.index("+ create")


def test_markdown_stays_under_the_limit_for_100000_actions() -> None:
    actions = [Change("create", 1, m, m % 400, "s", "declared") for m in range(50_000)]
    actions += [Change("delete", 1, m, 7, "s", "revoked", record=Completion(m, m, 7, "2026-01-01", "2026-01-01"),
                       note="x" * 200) for m in range(50_000)]
    plan = Plan(actions=actions, warnings=["w" * 300] * 500)
    labels = Labels({1: "Course " + "é" * 50}, {i: f"Lesson {i} " + "|" * 30 for i in range(400)},
                    {m: f"Member {m}" for m in range(50_000)})
    doc = plan_dict(plan, labels, target="https://spaces.nexudus.com", spec_digest="d", limits=DOCUMENTED_LIMITS)
    text = markdown(doc)
    assert len(text) < MARKDOWN_LIMIT
    assert "of 100,000 actions, by course and lesson" in text and "too many to name here (cut to fit)" in text
    assert "… cut: 300 more lessons" in text


def test_python_dash_m_is_the_same_program(demo: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "reconciler", "plan", "--detailed-exitcode"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stdout.startswith("Target: local emulator")


def test_the_process_ends_at_once_with_its_output_whole_and_its_code(demo: Path) -> None:
    """The command ends its process without the interpreter's teardown (`cli.run`): what it printed into a pipe is
    all there, and the exit code is main's."""
    result = subprocess.run([sys.executable, "-m", "reconciler", "plan", "--format", "json", "--detailed-exitcode"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    printed = json.loads(result.stdout)
    assert printed["summary"]["create"] > 0 and printed["actions"]


RUN_UNFLUSHED = """
import sys
import reconciler.cli as cli

def main():  # prints more than any pipe holds, a piece at a time, flushes nothing, and returns a code of its own
    for _ in range(3_000):
        sys.stdout.write("x" * 999 + "y")  # the last few kB stay in the buffers until flushed
    return 3

cli.main = main
cli.run()
"""


def test_the_process_flushes_what_main_left_before_it_ends() -> None:
    """`run` flushes standard output itself before ending the process: whatever `main` left in its buffers (after
    more than the widened pipe holds) arrives whole, with main's exit code."""
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a user's shell runs it
    result = subprocess.run([sys.executable, "-c", RUN_UNFLUSHED], capture_output=True, text=True, timeout=60,
                            env=buffered)
    assert (result.returncode, len(result.stdout), result.stderr) == (3, 3_000_000, "")
    assert result.stdout.endswith("x" * 999 + "y")


def test_unknown_flags_and_bad_specs_exit_1_without_a_traceback(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--frobnicate"]) == 1
    (demo / "bad.yaml").write_text("apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: b}\n"
                                   "course: Onboarding 101\nmembers:\n"
                                   "  - {email: nobody@example.com, completed: all}\n")
    assert main(["plan"]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:6:13: no coworker with email 'nobody@example.com'" in err and "Traceback" not in err
