"""The client-side request budget: sliding windows per minute and hour, writes per minute and day, and the
least interval between requests. Pure (a clock and a sleep are handed in), so that the client paces real
requests with it and the plan's estimate plays the same pacer out on a simulated clock."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from reconciler.config import ClientLimits
from reconciler.errors import DailyCapReached


class Pacer:
    """The client-side budget: waits before a request so that the service never has to throttle it.

    The server counts a request when it arrives, which is some time between our sending it and our
    receiving its answer. So every stamp here is the time the answer came back (an upper bound on the
    arrival), and the next request waits from there: whatever the network's jitter, the server never
    sees two requests closer than the budget allows.
    """

    def __init__(self, limits: ClientLimits, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.limits = limits
        self.clock = clock
        self.sleep = sleep
        self._last: float | None = None
        self._all = [(span, cap, deque[float]()) for span, cap in (
            (60.0, limits.requests_per_minute), (3600.0, limits.requests_per_hour)) if cap]
        self._writes = [(span, cap, deque[float]()) for span, cap in ((60.0, limits.writes_per_minute),) if cap]
        self._day_writes: deque[float] = deque()

    def writes_left_today(self) -> int | None:
        cap = self.limits.writes_per_day
        if not cap:
            return None
        now = self.clock()
        while self._day_writes and self._day_writes[0] <= now - 86400:
            self._day_writes.popleft()
        return cap - len(self._day_writes)

    def before(self, *, write: bool) -> None:
        """Wait until a request may be sent."""
        left = self.writes_left_today() if write else None
        if left is not None and left <= 0:
            # The budget frees up as the oldest counted write leaves the 24-hour window.
            resume = max(0.0, self._day_writes[0] + 86400 - self.clock()) if self._day_writes else None
            when = f"; the next write is allowed in {_duration(resume)}" if resume is not None else ""
            raise DailyCapReached(f"the daily write budget of {self.limits.writes_per_day} is spent{when}",
                                  resume_after=resume)
        windows = self._all + (self._writes if write else [])
        while True:
            now = self.clock()
            wait = 0.0
            for span, cap, stamps in windows:
                while stamps and stamps[0] <= now - span:
                    stamps.popleft()
                if len(stamps) >= cap:
                    wait = max(wait, stamps[len(stamps) - cap] + span - now)
            if self._last is not None and self.limits.min_interval_ms:
                wait = max(wait, self._last + self.limits.min_interval_ms / 1000.0 - now)
            if wait <= 0:
                return
            self.sleep(wait)

    def note_past_writes(self, ages: list[float]) -> None:
        """Count writes made `ages` seconds ago (by earlier runs) against the daily and minute budgets."""
        now = self.clock()
        for age in sorted(ages, reverse=True):
            if age < 86400 and self.limits.writes_per_day:
                self._day_writes.append(now - age)
            if age < 60:
                for _, _, stamps in self._writes:
                    stamps.append(now - age)

    def after(self, *, write: bool) -> None:
        """Count a request whose answer (or failure) has just come back."""
        now = self.clock()
        self._last = now
        for _, _, stamps in self._all + (self._writes if write else []):
            stamps.append(now)
        if write and self.limits.writes_per_day:
            self._day_writes.append(now)


def _duration(seconds: float) -> str:
    """`1.5 s`, `300 s (5 min)`, `86,400 s (24 h)`: exact seconds, and a readable size when large."""
    shown = f"{seconds:,.1f}".removesuffix(".0") + " s"
    if seconds < 60:
        return shown
    minutes = round(seconds / 60)
    hours, rest = divmod(minutes, 60)
    size = f"{hours} h" + (f" {rest} min" if rest else "") if hours else f"{minutes} min"
    return f"{shown} ({size})"
