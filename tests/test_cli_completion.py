"""`reconciler completion bash|zsh|fish`: scripts generated from the parser (shtab) that know every command."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from reconciler.cli import COMMANDS

from .conftest import ROOT, run_cli


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_names_every_command(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, script, err = run_cli(capsys, "completion", shell)
    assert code == 0 and err == ""
    for name in COMMANDS:
        assert name in script, name
    for option in ("detailed-exitcode", "allow-deletes", "resume", "offline"):  # fish writes `-l resume`
        assert option in script, option
    if shutil.which(shell):  # the shell itself reads the script without a syntax error
        checked = subprocess.run([shell, "-n"], input=script, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr


def test_an_unknown_shell_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "completion", "powershell")
    assert code == 1 and out == "" and err.startswith("error: reconciler completion: argument shell: invalid choice")


def test_the_readme_says_how_to_install_completion() -> None:
    readme = (ROOT / "README.md").read_text()
    for shell in ("bash", "zsh", "fish"):
        assert f"reconciler completion {shell}" in readme
