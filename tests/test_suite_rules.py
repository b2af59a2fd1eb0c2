"""The test suite's own rules, checked on its source: tests go through public names only (no private
import, no reaching into another object's private attribute), never import the benchmarks, never change
the process's directory behind pytest's back; warnings are errors and mypy checks the tests."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from .conftest import ROOT

TESTS = sorted((ROOT / "tests").glob("*.py"))


def broken_rules(path: Path) -> list[str]:
    """Each place in `path` that breaks a rule, as `file:line: what`."""
    found: list[str] = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top == "benchmarks":
                found.append(f"{where}: imports {node.module} (benchmarks are not a test helper)")
            if top == "reconciler":
                private = [alias.name for alias in node.names if alias.name.startswith("_")
                           and not alias.name.startswith("__")]
                private += [part for part in node.module.split(".") if part.startswith("_")]
                if private:
                    found.append(f"{where}: imports private {', '.join(private)} from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "benchmarks":
                    found.append(f"{where}: imports {alias.name} (benchmarks are not a test helper)")
                if parts[0] == "reconciler" and any(part.startswith("_") for part in parts):
                    found.append(f"{where}: imports private {alias.name}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "chdir":
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == "os":
                found.append(f"{where}: os.chdir (use monkeypatch.chdir, which pytest undoes)")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{where}: reaches into private {ast.unparse(node)}")
    return sorted(found, key=lambda text: int(text.split(":")[1]))


@pytest.mark.parametrize("path", TESTS, ids=[p.name for p in TESTS])
def test_the_tests_keep_the_suite_rules(path: Path) -> None:
    assert broken_rules(path) == []


def test_the_rule_checker_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "test_bad.py"
    bad.write_text("import os\nimport benchmarks.space\nfrom benchmarks.space import build_space\n"
                   "from reconciler.export import _scalar, yaml_scalar\nfrom reconciler._private import x\n"
                   "from reconciler import __version__\nimport reconciler._hidden\ndef test_x() -> None:\n"
                   "    os.chdir('/')\n    reader._coworkers(1)\n    self._mine = reader.__class__\n")
    assert broken_rules(bad) == [
        "test_bad.py:2: imports benchmarks.space (benchmarks are not a test helper)",
        "test_bad.py:3: imports benchmarks.space (benchmarks are not a test helper)",
        "test_bad.py:4: imports private _scalar from reconciler.export",
        "test_bad.py:5: imports private _private from reconciler._private",
        "test_bad.py:7: imports private reconciler._hidden",
        "test_bad.py:9: os.chdir (use monkeypatch.chdir, which pytest undoes)",
        "test_bad.py:10: reaches into private reader._coworkers",
    ]


def test_warnings_are_errors_and_slow_tests_are_marked_not_skipped() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pytest_options = config["tool"]["pytest"]["ini_options"]
    assert pytest_options["filterwarnings"][0] == "error"
    assert any(marker.startswith("slow:") for marker in pytest_options["markers"])
    assert "-m" not in pytest_options["addopts"].split()  # the default run is the whole suite, slow tests too
    assert config["tool"]["mypy"]["files"] == ["reconciler", "tests", "benchmarks"] and config["tool"]["mypy"]["strict"]
