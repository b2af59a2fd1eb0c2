"""Dates the API writes, read as instants where a missing or unreadable date must stay visible (None)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.model import instant

_UNKNOWN = instant("")  # what `instant` answers for a stamp that is not a date


def timestamp_instant(stamp: Any) -> datetime | None:
    """The instant `stamp` names, to the microsecond, whatever its precision; None when it is not a date."""
    if not isinstance(stamp, str):
        return None
    moment = instant(stamp)
    return None if moment == _UNKNOWN else moment
