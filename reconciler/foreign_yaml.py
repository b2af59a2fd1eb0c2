"""Other tools' YAML in the spec tree: a file whose every document names another `apiVersion` (a Kubernetes
`apps/v1` manifest, say) is not a spec, and is skipped rather than failed.

A near miss of ours (`reconciler/v2`, `reconcilr/v1`) or one of our kinds is still a spec with a problem,
which the spec loader reports with its place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from reconciler.model import SpecSet
from reconciler.spec import API_VERSION, KINDS, discover, load_specs
from reconciler.yamlfile import load_file

# Found anywhere and kept where it starts a line: a pattern that opens with text is searched for as text,
# ten times faster over a large spec than one that opens with `^`. (A match never crosses a line's end,
# so one found inside a line cannot hide one that starts the next.)
_API_VERSION = re.compile(r"apiVersion:[ \t]*([^#\n]*)")


def load_spec_set(paths: Sequence[Path], seed: Sequence[Path] = (), *, require_any: bool = True,
                  keep_going: bool = False) -> SpecSet:
    """The spec set below `paths`, other tools' YAML (a Kubernetes manifest, say) skipped, not failed."""
    foreign = foreign_files(paths, seed)
    if foreign:
        logging.getLogger("reconciler").info("skipped %d YAML file(s) of other tools (apiVersion not ours): %s",
                                             len(foreign), ", ".join(map(str, foreign[:5])))
    return load_specs(paths, exclude=[*seed, *foreign], require_any=require_any, keep_going=keep_going)


def foreign_files(paths: Sequence[Path], exclude: Iterable[Path] = ()) -> list[Path]:
    """The YAML files below `paths` (as the spec loader would find them) that belong to another tool."""
    return [path for path in discover(paths, exclude) if is_foreign(path)]


def is_foreign(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # the spec loader says what is wrong with it
    versions = [found[1].strip().strip("'\"") for found in _API_VERSION.finditer(text)
                if found.start() == 0 or text[found.start() - 1] == "\n"]
    # The cheap test first: most files are either ours or have no apiVersion at all.
    if not versions or any(_ours(v) for v in versions):
        return False
    documents, problems = load_file(path)
    data = [d.data for d in documents if d.data is not None]
    return not problems and bool(data) and all(_foreign_document(d) for d in data)


def _foreign_document(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    version, kind = data.get("apiVersion"), data.get("kind")
    return isinstance(version, str) and not _ours(version) and not (isinstance(kind, str) and kind in KINDS)


def _ours(version: str) -> bool:
    version = version.strip().casefold()
    if version.startswith("reconciler"):
        return True
    import difflib  # (imported only for a version that is not ours)

    return difflib.SequenceMatcher(None, version, API_VERSION).ratio() >= 0.75
