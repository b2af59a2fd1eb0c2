"""Apply's progress: done, applied, failed and skipped counts, with the rate and time left read from the
client's pacing schedule (not from a burst's speed) and, once all is done, the rate measured; and a word while
the client waits, whatever for (the write budget, the server's throttling, a backoff before a retry): the
executor makes `Progress.on_wait` the client's wait listener.

A bar on a terminal; otherwise a plain line every few seconds, waits included."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from reconciler.pacing import Pacer, duration

EVERY = 5.0  # seconds between plain lines, and the longest a wait goes without one
SHORT_WAIT = 1.0  # a wait shorter than this starts no line of its own (the least interval's ~0.1 s, say)
_SLACK = 0.05  # a wait reported every `every` seconds gets its line, however the clock's float adds up


class Progress:
    """Counts of the actions done so far, shown as they change; `step` after each, `waiting` during waits."""

    def __init__(self, total: int, out: TextIO, *, every: float = EVERY, pacer: Pacer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.out = out
        self.every = every
        self.pacer = pacer
        self.clock = clock
        self.counts = {"applied": 0, "failed": 0, "skipped": 0}
        self.started = clock()
        self._last_line: float | None = None
        self._in_wait = False  # a wait has been shown since the last step
        self._bar: Any = None
        isatty = getattr(out, "isatty", None)
        if isatty and isatty() and total:
            from tqdm import tqdm

            # tqdm's own rate and ETA would measure the burst before a wait: ours come from the schedule.
            self._bar = tqdm(total=total, file=out, unit="action", dynamic_ncols=True,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]{postfix}")

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def step(self, status: str = "applied") -> None:
        """One action finished: `failed`, `skipped`, or anything else (created, deleted...) as applied."""
        self.counts[status if status in ("failed", "skipped") else "applied"] += 1
        self._in_wait = False
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(self._apart(self._pace()), refresh=True)
            return
        now = self.clock()
        if self._last_line is None or now - self._last_line >= self.every or self.done == self.total:
            self._show(self._pace(), now)

    def retried(self, status: str) -> None:
        """A failed action was tried again at the end: count it as it came out this time."""
        if status == "failed":
            return
        self.counts["failed"] -= 1
        self.counts[status if status == "skipped" else "applied"] += 1
        if self._bar is not None:
            self._bar.set_postfix_str(self._apart("retried the failures"), refresh=True)
        else:
            self._show("after retrying the failures", self.clock())

    def waiting(self, seconds: float, budget: str) -> None:
        """A wait of `seconds` for the budget is under way (called again as it goes on): say so at least
        every `every` seconds."""
        self.on_wait(seconds, f"for the {budget}")

    def on_wait(self, seconds: float, reason: str) -> None:
        """The client's wait listener: a wait with `seconds` left is under way, `reason` saying what for
        ("for the server: it throttled ..."); called as it starts and again at least every `every` seconds
        as it goes on (the client sleeps in slices that long). A line as a long wait starts, and whenever
        this wait (or its next slice) would leave the output silent for more than `every` seconds: so a run
        of short waits (a server answering `Retry-After: 1` for a minute) is said every few seconds too. A
        wait under a second starts no line of its own: it is shown only when a line is overdue."""
        short = seconds < SHORT_WAIT
        what = f"waiting {'under 1 s' if short else _short(seconds)} {reason}".rstrip()
        if self._bar is not None:
            if not short:
                self._bar.set_postfix_str(self._apart(what), refresh=True)
            return
        now = self.clock()
        since = now - (self._last_line if self._last_line is not None else self.started)
        show = since >= self.every - _SLACK  # a line is overdue
        if not short:
            starts_long_wait = not self._in_wait and seconds >= self.every
            first = self._last_line is None
            silent_past_every = since + min(seconds, self.every) > self.every + _SLACK
            self._in_wait = True
            show = show or starts_long_wait or first or silent_past_every
        if show:
            self._show(what, now)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _show(self, tail: str, now: float) -> None:
        self._last_line = now
        counts = ", ".join(f"{count:,} {name}" for name, count in self.counts.items())
        print(f"{self.done:,}/{self.total:,} done ({counts}); {tail}", file=self.out, flush=True)

    def _apart(self, tail: str) -> str:
        """The bar's postfix: failures and skips, which the bar's count includes, then `tail`."""
        apart = [f"{self.counts[name]:,} {name}" for name in ("failed", "skipped") if self.counts[name]]
        return ", ".join([*apart, tail])

    def _pace(self) -> str:
        """`60/min, about 3 min left`: the rate and time left the budget's schedule allows, or what was
        seen when that is slower (the requests themselves take time). Once every action is done, the rate
        measured over the run (a burst inside the budget's windows goes faster than its long-run rate)."""
        left = self.total - self.done
        elapsed = max(self.clock() - self.started, 1e-9)
        seen = self.done / elapsed  # actions a second so far
        if not left:
            if elapsed < 1:
                return "done in under 1 s, 0 s left"
            return f"{seen * 60:,.0f}/min measured over {duration(round(elapsed, 1))}, 0 s left"
        allowed = self.pacer.write_rate() if self.pacer is not None else None
        rate = min(seen, allowed) if allowed is not None and self.done else (allowed or seen)
        eta = left / seen if seen else 0.0
        if self.pacer is not None:
            eta = max(eta, self.pacer.time_for_writes(left))
        return f"{rate * 60:,.0f}/min, about {_short(eta)} left"


def _short(seconds: float) -> str:
    """`12 s`, `3.5 min`, `2.1 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
