"""What moved in a record between the plan and now, said field by field (the one user of deepdiff)."""

from __future__ import annotations

from typing import Any

from deepdiff import DeepDiff


def describe_changes(planned: dict[str, Any], found: dict[str, Any]) -> str:
    """What moved in a record between the plan and now, field by field (deepdiff does the comparing)."""
    keys = [key for key in planned if key in found]
    diff = DeepDiff({k: planned[k] for k in keys}, {k: found[k] for k in keys}, verbose_level=2)
    changes = []
    for kind in ("values_changed", "type_changes"):
        for path, change in diff.get(kind, {}).items():
            name = path.removeprefix("root[").removesuffix("]").strip("'")
            changes.append(f"{name} {change['old_value']!r} → {change['new_value']!r}")
    return "; ".join(sorted(changes)) or "UpdatedOn moved"
