"""A quick start: `--help`, `--version` and `validate --offline` load neither the HTTP client, the emulator,
the plan machinery nor the other commands (what they load is checked, not how long it takes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import chosen_command
from reconciler.emulator.app import Settings
from reconciler.emulator.limits import Limits

from .conftest import EXAMPLES, EmulatorFactory, run_cli

HEAVY = ("httpx", "werkzeug", "deepdiff", "sqlite3", "tqdm", "shtab", "reconciler.emulator", "reconciler.client",
         "reconciler.target", "reconciler.plan", "reconciler.apply", "reconciler.doctor")
RUNNER = """
import json, sys
from reconciler.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
print(json.dumps({"code": code, "modules": sorted(name for name, module in sys.modules.items() if module)}),
      file=sys.stderr)  # an entry of None is a module marked missing, not one loaded
"""


def loaded(*argv: str, cwd: Path = EXAMPLES) -> tuple[int, set[str]]:
    """Run the command line in a fresh interpreter: its exit code and every module it imported."""
    result = subprocess.run([sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, timeout=60,
                            cwd=cwd)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("argv", [("--help",), ("--version",), ()], ids=["help", "version", "nothing"])
def test_help_and_version_load_no_command(argv: tuple[str, ...]) -> None:
    code, modules = loaded(*argv)
    assert code == (1 if not argv else 0)
    assert heavy(modules) == []
    assert "jsonschema" not in modules and "yaml" not in modules
    assert sorted(m for m in modules if m.startswith("reconciler.commands.")) == []


def test_validate_offline_loads_only_its_own_command() -> None:
    code, modules = loaded("validate", "--offline", ".")
    assert code == 0
    assert heavy(modules) == []
    assert sorted(m for m in modules if m.startswith("reconciler.commands.")) == ["reconciler.commands.validate"]


def test_jsonschema_is_loaded_only_to_explain_a_document_that_breaks_its_schema(tmp_path: Path) -> None:
    """Valid specs and configuration are validated without importing jsonschema (`schema_check.conforms`); a spec
    that breaks its schema is explained by jsonschema, with its place."""
    code, modules = loaded("validate", "--offline", ".")
    assert code == 0 and "jsonschema" not in modules and "reconciler.spec" in modules
    spec = (EXAMPLES / "onboarding.yaml").read_text(encoding="utf-8")
    (tmp_path / "onboarding.yaml").write_text(spec.replace("mode: owned", "mode: ownd", 1), encoding="utf-8")
    result = subprocess.run([sys.executable, "-c", RUNNER, "validate", "--offline", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["code"] == 1 and "jsonschema" in report["modules"]
    said = result.stdout + result.stderr
    assert "onboarding.yaml:8:7: mode must be one of" in said and "did you mean 'owned'" in said


def test_a_plan_loads_neither_httpx_command_line_nor_jsonschema(demo: Path, emulator: EmulatorFactory,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx imports its command line (click, pygments) whenever they are installed, as they are here (pytest
    needs pygments); a plan never runs it, nor needs jsonschema for specs that conform (the local emulator's
    seed loader does: the plan is made against a served emulator)."""
    server = emulator(seed=EXAMPLES / "seed.yaml", settings=Settings(limits=Limits.off(), require_auth=False))
    monkeypatch.setenv("NEXUDUS_TOKEN", "token")
    code, modules = loaded("--api", server.url, "plan", cwd=demo)
    assert code == 0 and "reconciler.commands.plan" in modules and "httpx" in modules
    assert not {"httpx._main", "click", "pygments", "jsonschema"} & modules


def test_the_runner_sees_what_a_command_loads() -> None:
    """The checks above can fail: running a command imports its module and what it needs."""
    code, modules = loaded("show", "no-such-plan.json")
    assert code == 1 and {"reconciler.commands.show", "reconciler.planning", "reconciler.render"} <= modules
    code, modules = loaded("plan", "--help")  # a command's help builds its options without importing it
    assert code == 0 and heavy(modules) == [] and "reconciler.commands.plan" not in modules


@pytest.mark.parametrize(("words", "command"), [
    ([], None), (["--help"], None), (["frobnicate"], None), (["-q", "plan"], "plan"),
    (["--api", "plan", "validate"], "validate"), (["--ap", "local", "plan"], "plan"),
    (["--config=reconciler.yaml", "apply", "--yes"], "apply"), (["-vv", "--no-color", "export"], "export"),
    (["emulator", "serve", "--port", "0"], "emulator"),
])
def test_the_command_is_found_before_parsing(words: list[str], command: str | None) -> None:
    assert chosen_command(words) == command


def test_global_options_with_values_before_the_command_still_parse(demo: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Only the chosen command's arguments are built: the options before it must not hide it."""
    for words in (["--api", "local", "validate", "--offline"], ["--ap", "local", "-q", "validate", "--offline"],
                  ["--config", "reconciler.yaml", "validate", "--offline", "."]):
        code, out, _ = run_cli(capsys, *words)
        assert (code, out) == (0, "valid: 4 specs in 4 files (offline: names not resolved)\n"), words
