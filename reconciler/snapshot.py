"""The JSON snapshot `reconciler snapshot` writes: the raw API records of the scope, which `reconciler emulator
seed` loads (the emulator reads the same format on its side, `reconciler/emulator/seed.py`; the two share the
format, not code)."""

from __future__ import annotations

from typing import Any

SNAPSHOT_FORMAT = "nexudus-snapshot/1"
# The collections of a snapshot, each after the ones its records refer to (the order a seed loads them in).
COLLECTIONS = ("coworkers", "courses", "courselessons", "coursemembers", "coursecompletedlessons")


def snapshot_document(records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A snapshot holding `records` (collection → API records), in the load order."""
    return {"format": SNAPSHOT_FORMAT, **{name: records.get(name, []) for name in COLLECTIONS}}
