"""The client-side request budget: sliding windows per minute and hour, writes per minute and day, and the
least interval between requests. Pure (a clock and a sleep are handed in), so that the client paces real
requests with it, the plan's estimate plays the same pacer out on a simulated clock, and apply's progress
reads its rate and time left from the schedule. Also the stop flag that Ctrl-C sets, which every wait
of the client watches."""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable

from reconciler.config import ClientLimits
from reconciler.errors import DailyCapReached

log = logging.getLogger(__name__)

SLICE = 0.2  # the longest sleep that does not look at the stop flag: Ctrl-C acts within it
LOGGED_WAIT = 2.0  # waits at least this long are explained at -v (a paced apply waits ~1 s per write)


class StopFlag:
    """Set by a signal handler (so a plain attribute: no lock a handler could deadlock on); waits that
    sleep through `sleep` wake within `SLICE` of it being set."""

    def __init__(self) -> None:
        self.is_set = False

    def set(self) -> None:
        self.is_set = True

    def clear(self) -> None:
        self.is_set = False

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds` in short slices, returning early once the flag is set."""
        end = time.monotonic() + seconds
        while not self.is_set:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, SLICE))


class Pacer:
    """The client-side budget: waits before a request so that the service never has to throttle it.

    The server counts a request when it arrives, which is some time between our sending it and our
    receiving its answer. So every stamp here is the time the answer came back (an upper bound on the
    arrival), and the next request waits from there: whatever the network's jitter, the server never
    sees two requests closer than the budget allows.
    """

    def __init__(self, limits: ClientLimits, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 wait: Callable[[float, str], None] | None = None) -> None:
        self.limits = limits
        self.clock = clock
        self.sleep = sleep
        # A sleep told what it waits for (the budget), as the client's is so that it can report the wait;
        # `sleep` when none is given.
        self.wait = wait
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

    def daily_write_frees(self) -> float | None:
        """Seconds until the daily cap, once reached, allows a write again, by the writes counted in the last 24
        hours (this run's, and earlier runs' that `note_past_writes` told): until the count drops below the cap as
        they leave the window. None when none is counted (or no daily cap)."""
        cap = self.limits.writes_per_day
        if not cap or self.writes_left_today() is None or not self._day_writes:
            return None
        leaving = self._day_writes[max(0, len(self._day_writes) - cap)]
        return max(0.0, leaving + 86400 - self.clock())

    def before(self, *, write: bool) -> None:
        """Wait until a request may be sent."""
        while True:
            wait, budget = self.next_slot(write=write)
            if wait <= 0:
                return
            if wait >= LOGGED_WAIT:
                log.info("waiting %s for the %s", duration(round(wait, 1)), budget)
            if self.wait is not None:
                self.wait(wait, budget)
            else:
                self.sleep(wait)

    def next_slot(self, *, write: bool) -> tuple[float, str]:
        """Seconds until a request may be sent (0 when it may go now), and the budget it waits for.
        Raises DailyCapReached for a write when the daily budget is spent."""
        left = self.writes_left_today() if write else None
        if left is not None and left <= 0:
            # The budget frees up as the oldest counted write leaves the 24-hour window.
            resume = max(0.0, self._day_writes[0] + 86400 - self.clock()) if self._day_writes else None
            when = f"; the next write is allowed in {duration(resume)}" if resume is not None else ""
            raise DailyCapReached(f"the daily write budget of {self.limits.writes_per_day} is spent{when}",
                                  resume_after=resume)
        now = self.clock()
        wait, budget = 0.0, ""
        for kind, windows in (("request", self._all), ("write", self._writes if write else [])):
            for span, cap, stamps in windows:
                while stamps and stamps[0] <= now - span:
                    stamps.popleft()
                if len(stamps) >= cap and stamps[len(stamps) - cap] + span - now > wait:
                    wait = stamps[len(stamps) - cap] + span - now
                    budget = _budget(kind, cap, span)
        if self._last is not None and self.limits.min_interval_ms:
            gap = self._last + self.limits.min_interval_ms / 1000.0 - now
            if gap > wait:
                wait, budget = gap, _least(self.limits.min_interval_ms)
        return max(0.0, wait), budget

    def write_rate(self) -> float | None:
        """Writes a second the budget allows in the long run (None: unlimited)."""
        rates = [cap / span for span, cap, _ in self._all + self._writes]
        if self.limits.min_interval_ms:
            rates.append(1000.0 / self.limits.min_interval_ms)
        return min(rates, default=None)

    def time_for_writes(self, count: int) -> float:
        """Seconds from now until `count` more back-to-back writes can all have been sent, on the budget's
        schedule (what the windows and the least interval allow; the daily cap and the time the requests
        themselves take are not counted)."""
        if count <= 0:
            return 0.0
        now = self.clock()
        end = now
        for span, cap, stamps in self._all + self._writes:
            recent = [t for t in stamps if t > now - span][-cap:]
            free = cap - len(recent)
            if count <= free:
                continue
            slots = recent + [now] * free  # the window as it is, then the writes that may go at once
            cycles, index = divmod(count - free - 1, cap)
            end = max(end, slots[index] + span * (cycles + 1))
        if self.limits.min_interval_ms:
            interval = self.limits.min_interval_ms / 1000.0
            first = max(now, self._last + interval) if self._last is not None else now
            end = max(end, first + (count - 1) * interval)
        return end - now

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


@functools.cache  # (the estimate asks for the same few thousands of times)
def _budget(kind: str, cap: int, span: float) -> str:
    return f"{kind} budget ({cap:,} {kind}s {_per(span)})"


@functools.cache
def _least(interval_ms: int) -> str:
    return f"least interval between requests ({interval_ms} ms)"


def _per(span: float) -> str:
    named = {60.0: "a minute", 3600.0: "an hour", 86400.0: "a day"}.get(span)
    return named if named is not None else f"per {duration(span)}"


def duration(seconds: float) -> str:
    """`1.5 s`, `300 s (5 min)`, `86,400 s (24 h)`: exact seconds, and a readable size when large."""
    shown = f"{seconds:,.1f}".removesuffix(".0") + " s"
    if seconds < 60:
        return shown
    minutes = round(seconds / 60)
    hours, rest = divmod(minutes, 60)
    size = f"{hours} h" + (f" {rest} min" if rest else "") if hours else f"{minutes} min"
    return f"{shown} ({size})"
