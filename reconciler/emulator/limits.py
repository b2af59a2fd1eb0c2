"""The documented Nexudus rate limits, enforced per client with sliding windows."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    """Per-client limits; None switches one off. Defaults are the documented ones (nexudus-api.md)."""

    min_interval_ms: int | None = 100
    requests_per_minute: int | None = 120
    requests_per_hour: int | None = 5000
    requests_per_day: int | None = 200_000
    writes_per_minute: int | None = 60
    writes_per_day: int | None = 5000

    @classmethod
    def off(cls) -> Limits:
        return cls(**{f.name: None for f in fields(cls)})


_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0


class _Window:
    """Timestamps of the requests counted in the last `span` seconds."""

    def __init__(self, span: float, cap: int) -> None:
        self.span = span
        self.cap = cap
        self.stamps: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self.stamps and self.stamps[0] <= now - self.span:
            self.stamps.popleft()
        if len(self.stamps) < self.cap:
            return 0.0
        return self.stamps[len(self.stamps) - self.cap] + self.span - now


class _Client:
    def __init__(self, limits: Limits) -> None:
        self.min_interval = (limits.min_interval_ms or 0) / 1000.0
        self.last: float | None = None
        self.all = [_Window(span, cap) for span, cap in (
            (_MINUTE, limits.requests_per_minute), (_HOUR, limits.requests_per_hour),
            (_DAY, limits.requests_per_day)) if cap is not None]
        self.writes = [_Window(span, cap) for span, cap in (
            (_MINUTE, limits.writes_per_minute), (_DAY, limits.writes_per_day)) if cap is not None]


class RateLimiter:
    """Decides whether a request may pass now; a throttled request is not counted."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._clients: dict[str, _Client] = {}

    def admit(self, client: str, *, write: bool) -> float:
        """0.0 if the request may pass (and it is counted); else the seconds until it would."""
        state = self._clients.setdefault(client, _Client(self.limits))
        now = self.clock()
        windows = state.all + (state.writes if write else [])
        wait = max((w.wait(now) for w in windows), default=0.0)
        if state.last is not None and state.min_interval:
            wait = max(wait, state.last + state.min_interval - now)
        if wait > 0:
            return wait
        state.last = now
        for window in windows:
            window.stamps.append(now)
        return 0.0


def whole_seconds(wait: float) -> int:
    """The `Retry-After` / `Wait N seconds` figure: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


def wait_figure(wait: float) -> str:
    """The N of a 429 body's `Wait N seconds`: tenths rounded up (`1.5`), whole when that is whole (`2`)."""
    tenths = max(1, math.ceil(round(wait * 10, 6)))
    return str(tenths // 10) if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}"
