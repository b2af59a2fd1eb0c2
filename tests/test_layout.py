"""The line between the product and the emulator (issue 16): the emulator imports nothing from the product,
and the product imports the emulator only in reconciler/target.py, inside the functions that need it (the
`local` target, and `reconciler emulator ...`). The two share the seed schema and snapshot format as data."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.emulator import seed as emulator_seed
from reconciler.emulator import store as emulator_store
from reconciler.emulator.errors import SeedError as EmulatorSeedError
from reconciler.emulator.store import Store
from reconciler.schemas import schema
from reconciler.snapshot import COLLECTIONS, SNAPSHOT_FORMAT, snapshot_document
from reconciler.timestamps import timestamp_instant

from .conftest import EXAMPLES, ROOT, run_cli

PACKAGE = ROOT / "reconciler"
EMULATOR = PACKAGE / "emulator"
GATE = PACKAGE / "target.py"  # the one product module allowed to import the emulator, and only lazily
BAD_SEED = "coworkers:\n  - {name: A, email: a@x.io, colour: red}\n"


@dataclass(frozen=True)
class Import:
    module: str  # the absolute name imported; `from a import b` gives both a and a.b
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(text: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import in `text` (the source of `module`) at any depth, relative ones made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    anchor = parts[:len(parts) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append(Import(base, child.lineno, in_function))
                found.extend(Import(f"{base}.{alias.name}", child.lineno, in_function)
                             for alias in child.names if alias.name != "*")
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(text), False)
    return found


def imports(path: Path) -> list[Import]:
    return imports_in(path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py")


def is_emulator(name: str) -> bool:
    return name == "reconciler.emulator" or name.startswith("reconciler.emulator.")


def is_product(name: str) -> bool:
    """Product code: anything of the reconciler package but the emulator (`from reconciler import x` too)."""
    return (name == "reconciler" or name.startswith("reconciler.")) and not is_emulator(name)


def product_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if EMULATOR not in p.parents)


def emulator_modules() -> list[Path]:
    return sorted(EMULATOR.rglob("*.py"))


# --- the import graph, read with ast ------------------------------------------------------------------

def test_the_scan_sees_imports_at_every_depth_and_resolves_relative_ones() -> None:
    """The checker itself: an import it missed would let the layout tests below pass for nothing."""
    sample = ("import json\nfrom reconciler.emulator.store import Store\n"
              "def f():\n    from reconciler.errors import Problem\n"
              "class C:\n    def g(self):\n        import reconciler.spec\n"
              "if True:\n    from ..schemas import validator\nfrom . import seed\n"
              "h = lambda: __import__('x')\n")
    found = [(i.module, i.in_function) for i in imports_in(sample, "reconciler.emulator.probe")]
    assert found == [
        ("json", False), ("reconciler.emulator.store", False), ("reconciler.emulator.store.Store", False),
        ("reconciler.errors", True), ("reconciler.errors.Problem", True), ("reconciler.spec", True),
        ("reconciler.schemas", False), ("reconciler.schemas.validator", False),
        ("reconciler.emulator", False), ("reconciler.emulator.seed", False)]
    assert [i.module for i in imports_in("from .. import errors\n", "reconciler.emulator", is_package=True)] == \
        ["reconciler", "reconciler.errors"]
    assert [i.module for i in imports_in(sample, "reconciler.emulator.probe") if is_product(i.module)] == \
        ["reconciler.errors", "reconciler.errors.Problem", "reconciler.spec", "reconciler.schemas",
         "reconciler.schemas.validator"]


def test_the_emulator_imports_nothing_from_the_product() -> None:
    assert len(emulator_modules()) >= 7
    crossing = [f"{path.relative_to(ROOT)}:{found.line}: {found.module}"
                for path in emulator_modules() for found in imports(path) if is_product(found.module)]
    assert crossing == []


def test_only_target_imports_the_emulator_and_only_inside_functions() -> None:
    assert len(product_modules()) >= 30
    crossing = [f"{path.relative_to(ROOT)}:{found.line}: {found.module}"
                for path in product_modules() for found in imports(path)
                if is_emulator(found.module) and (path != GATE or not found.in_function)]
    assert crossing == []
    assert any(is_emulator(found.module) for found in imports(GATE))  # the gate is where the connection is


# --- at run time --------------------------------------------------------------------------------------

def loaded_after(script: str, cwd: Path) -> dict[str, list[str]]:
    """Run `script` in a fresh interpreter; it prints a JSON object of the module lists it measured."""
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    measured: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def test_the_emulator_runs_without_loading_the_product(tmp_path: Path) -> None:
    """Every emulator module imported, a seed loaded, a bad one refused and the emulator's own command line
    run (also as `python -m reconciler.emulator`): not one product module is loaded on the way."""
    names = sorted(module_name(p) for p in emulator_modules() if p.name != "__main__.py")
    (tmp_path / "bad.yaml").write_text(BAD_SEED)
    script = f"""
import io, json, sys
from pathlib import Path
for name in {names!r}:
    __import__(name)
from reconciler.emulator.cli import main
from reconciler.emulator.errors import SeedError
from reconciler.emulator.seed import load_seed
from reconciler.emulator.store import Store
load_seed(Path({str(EXAMPLES / "seed.yaml")!r}), Store())
try:
    load_seed(Path("bad.yaml"), Store())
    raise SystemExit("a bad seed was loaded")
except SeedError as e:
    assert "unknown key 'colour'" in str(e), e
out, err = io.StringIO(), io.StringIO()
assert main(["seed", {str(EXAMPLES / "seed.yaml")!r}, "--db", "copy.sqlite"], stdout=out, stderr=err) == 0, err
assert main(["serve", "--fail-rate", "2"], stdout=out, stderr=err) == 1
import runpy
sys.argv = ["python -m reconciler.emulator", "seed", {str(EXAMPLES / "seed.yaml")!r}, "--db", "run.sqlite"]
try:
    runpy.run_module("reconciler.emulator", run_name="__main__")
except SystemExit as e:
    assert e.code == 0, e.code
print(json.dumps({{"loaded": sorted(m for m in sys.modules if m == "reconciler" or m.startswith("reconciler."))}}))
"""
    loaded = loaded_after(script, tmp_path)["loaded"]
    assert set(names) <= set(loaded) and (tmp_path / "run.sqlite").is_file()  # the script did run the emulator
    assert [name for name in loaded if is_product(name) and name != "reconciler"] == []


def test_the_product_loads_the_emulator_only_for_the_local_target(tmp_path: Path) -> None:
    """Every product module imported, and commands run that reach no target: no emulator module is loaded
    until a command connects the local target."""
    folder = tmp_path / "demo"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns(".reconciler", "github-actions"))
    names = [module_name(p) for p in product_modules() if p.name != "__main__.py"]
    assert "reconciler.target" in names and "reconciler.cli" in names
    script = f"""
import io, json, sys
for name in {names!r}:
    __import__(name)
from reconciler.cli import main
out, err = io.StringIO(), io.StringIO()
assert main(["validate", "--offline"], stdout=out, stderr=err) == 0, err.getvalue()
assert main(["schemas", "--out", "schemas-copy"], stdout=out, stderr=err) == 0, err.getvalue()
before = sorted(m for m in sys.modules if m.startswith("reconciler.emulator"))
assert main(["plan"], stdout=out, stderr=err) in (0, 2), err.getvalue()
after = sorted(m for m in sys.modules if m.startswith("reconciler.emulator"))
print(json.dumps({{"before": before, "after": after}}))
"""
    measured = loaded_after(script, folder)
    assert measured["before"] == []
    assert "reconciler.emulator.app" in measured["after"] and "reconciler.emulator.seed" in measured["after"]


# --- `reconciler emulator ...`, handed over to the emulator's own command line ------------------------

def test_emulator_commands_run_through_the_product_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(BAD_SEED)
    code, out, err = run_cli(capsys, "emulator", "seed", "bad.yaml", "--db", "a.sqlite")
    assert code == 1 and out == ""
    assert err == "error: 1 problem found\nbad.yaml:2:30: unknown key 'colour' in coworkers[0] (allowed: name, " \
                  "email, company, teams, system_id)\n"
    code, out, err = run_cli(capsys, "-v", "emulator", "seed", str(EXAMPLES / "seed.yaml"), "--db", "b.sqlite", "-q")
    assert code == 0 and out.startswith("seeded b.sqlite: ") and "coworkers" in out and err == ""
    store = Store(str(tmp_path / "b.sqlite"))
    assert not store.is_empty()
    store.close()
    code, out, err = run_cli(capsys, "emulator")
    assert code == 1 and "serve" in out and "seed" in out
    code, out, err = run_cli(capsys, "emulator", "serve", "--fail-rate", "2")
    assert (code, out, err) == (1, "", "error: --fail-rate must be between 0 and 1\n")
    for port in ("-5", "70000", "http"):
        code, out, err = run_cli(capsys, "emulator", "serve", "--port", port)
        assert code == 1 and f"argument --port: '{port}' is not a port (0 to 65535)" in err and "bug" not in err
    code, out, err = run_cli(capsys, "emulator", "sever")
    assert code == 1 and err.startswith("error: reconciler emulator: argument COMMAND: invalid choice: 'sever'")
    code, out, err = run_cli(capsys, "emulator", "seed", "missing.yaml", "--db", "c.sqlite")
    assert code == 1 and "missing.yaml:1:1: cannot read file" in err and "Traceback" not in err


def test_emulator_help_lists_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "emulator", "seed", "--help")
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: reconciler emulator seed ") and "--replace" in out


def test_a_bad_seed_of_the_local_target_is_the_products_seed_error(demo: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "seed.yaml").write_text(BAD_SEED)
    code, _, err = run_cli(capsys, "plan")
    assert code == 1
    assert err.startswith("error: 1 problem found\n") and "seed.yaml:2:30: unknown key 'colour'" in err


# --- what the two sides share, as data ----------------------------------------------------------------

def test_the_snapshot_the_product_writes_is_the_one_the_emulator_reads(tmp_path: Path) -> None:
    assert SNAPSHOT_FORMAT == emulator_seed.SNAPSHOT_FORMAT and COLLECTIONS == emulator_store.LOAD_ORDER
    source = Store()
    emulator_seed.load_seed(EXAMPLES / "seed.yaml", source)
    records = {name: [source.render(emulator_store.ENTITIES[name], row, full=False) for row in source.iter_rows(name)]
               for name in reversed(COLLECTIONS)}
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snapshot_document(records)))
    copy = Store()
    counts = emulator_seed.load_seed(path, copy).counts
    assert counts == {name: len(records[name]) for name in COLLECTIONS} and counts["coursecompletedlessons"] > 0
    with pytest.raises(EmulatorSeedError, match="not a snapshot"):
        path.write_text(json.dumps({**snapshot_document(records), "format": "nexudus-snapshot/0"}))
        emulator_seed.load_seed(path, Store())


def test_the_emulator_reads_the_seed_schema_the_product_publishes() -> None:
    assert emulator_seed.seed_schema() == schema("seed")


@pytest.mark.parametrize("stamp", ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.1234567Z", "2024-05-01T10:00:00.5Z",
                                   "2024-05-01T10:00:00", "2024-05-01T12:00:00+02:00", " 2024-05-01T10:00:00Z ",
                                   "2024-05-01T10:00:00.123Z"])
def test_the_products_timestamps_read_as_the_emulator_writes_them(stamp: str) -> None:
    assert timestamp_instant(stamp) == emulator_store.timestamp_instant(stamp)


@pytest.mark.parametrize("stamp", [None, 5, "", "yesterday", "2024-13-01T10:00:00Z"])
def test_what_is_not_a_date_has_no_instant(stamp: object) -> None:
    assert timestamp_instant(stamp) is None


def test_a_timestamp_is_read_to_the_microsecond() -> None:
    assert timestamp_instant("2024-05-01T10:00:00.1234567Z") == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
