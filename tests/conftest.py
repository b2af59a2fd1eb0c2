"""Shared fixtures: emulators over real HTTP on 127.0.0.1 (port 0), started and stopped by the tests."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
API_SEED = DATA / "api-seed.yaml"
EXAMPLES = ROOT / "examples"

EmulatorFactory = Callable[..., BackgroundServer]


@pytest.fixture(autouse=True)
def contained(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets back the "reconciler" loggers as they were (the CLI points them at the streams of its
    run, which pytest closes), and a bug report the CLI saves lands in the test's own temporary folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmp")))
    loggers = [logging.getLogger(name) for name in ("reconciler", "reconciler.http")]
    saved = [(logger, logger.level, list(logger.handlers)) for logger in loggers]
    yield
    for logger, level, handlers in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`reconciler ARGV` in process: its exit code, standard output and standard error."""
    from reconciler.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def seeded(folder: Path, monkeypatch: pytest.MonkeyPatch, seed_name: str, seed: str,
           specs: dict[str, str] | None = None) -> Path:
    """`folder` as the current directory, its local target seeded from `seed` (written as `seed_name`, a YAML seed
    or a JSON snapshot), with `specs` (file name → text) in `specs/`."""
    monkeypatch.chdir(folder)
    monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
    (folder / seed_name).write_text(seed)
    (folder / "reconciler.yaml").write_text(f"seed: {seed_name}\n")
    (folder / "specs").mkdir(exist_ok=True)
    for name, text in (specs or {}).items():
        (folder / "specs" / name).write_text(text)
    return folder


def example_specs(folder: Path) -> Path:
    """`folder`, made, holding the examples' spec files (not their seed nor their configuration): for a target that
    the test serves itself."""
    folder.mkdir(parents=True, exist_ok=True)
    for spec in EXAMPLES.glob("*.yaml"):
        if spec.name not in ("seed.yaml", "reconciler.yaml"):
            (folder / spec.name).write_text(spec.read_text())
    return folder


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of examples/ as the current directory, as a new user would have it."""
    folder = tmp_path / "demo"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns(".reconciler", "github-actions"))
    monkeypatch.chdir(folder)
    monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
    return folder


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorFactory]:
    """Start emulators on demand: `emulator(seed=..., settings=..., db=...)`; all stopped at teardown."""
    running: list[tuple[BackgroundServer, Store]] = []

    def start(seed: Path | None = API_SEED, settings: Settings | None = None, db: Path | None = None,
              store: Store | None = None) -> BackgroundServer:
        store = store or Store(str(db) if db else None)
        if seed is not None and store.is_empty():
            load_seed(seed, store)
        app = EmulatorApp(store, settings or Settings(limits=Limits.off()))
        server = BackgroundServer(app)
        server.__enter__()
        running.append((server, store))
        return server

    yield start
    for server, store in running:
        server.__exit__(None, None, None)
        store.close()
