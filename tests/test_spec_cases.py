"""The bad-spec corpus: each folder under tests/spec_cases holds spec files and expected.txt, the exact
`file:line:col: message` lines (or NO ERROR, or `error: message` for an error that is not about one
place, such as finding no spec at all). Folders named resolve_* are resolved against the API test
seed through the real client and the in-process emulator.

Regenerate for review with RECONCILER_REGENERATE=1 (then read the diff: the file is the assertion).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.client import NexudusClient
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import Store
from reconciler.errors import SpecError, UsageError
from reconciler.resolve import resolve
from reconciler.spec import load_specs
from reconciler.state import StateReader

from .conftest import API_SEED

CASES = Path(__file__).parent / "spec_cases"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def api_client() -> Iterator[NexudusClient]:
    store = Store()
    load_seed(API_SEED, store)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    with httpx.Client(transport=InProcessTransport(app)) as http:
        yield NexudusClient("http://local", http)
    store.close()


def outcome(folder: Path, client: NexudusClient) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # paths in messages are then as a user in that folder sees them
        try:
            specs = load_specs([Path(".")])
            if not folder.name.startswith("resolve_"):
                return "NO ERROR"
            result = resolve(specs, StateReader(client).catalog(specs))
            return "NO ERROR" + "".join(f"\nwarning: {w}" for w in result.warnings)
        except SpecError as e:
            return "\n".join(str(p) for p in e.problems)
        except UsageError as e:
            return f"error: {e}"


def test_the_corpus_is_large_enough() -> None:
    assert len([n for n in CASE_NAMES if (CASES / n / "expected.txt").read_text().strip() != "NO ERROR"]) >= 30


@pytest.mark.parametrize("name", CASE_NAMES)
def test_spec_case(name: str, api_client: NexudusClient) -> None:
    folder = CASES / name
    actual = outcome(folder, api_client)
    expected_file = folder / "expected.txt"
    if os.environ.get("RECONCILER_REGENERATE"):
        expected_file.write_text(actual + "\n")
    expected = expected_file.read_text().rstrip("\n")
    assert actual == expected, f"\n--- expected\n{expected}\n--- actual\n{actual}"
