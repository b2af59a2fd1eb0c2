"""The cyclic garbage collector paused while a stage builds millions of small objects that are not garbage."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Loading a spec of 200,000 members, reading a million completions, planning and building the plan document
    make millions of small acyclic objects: the cyclic collector would scan them all again each time the heap
    grew by a quarter (a fifth of a spec's load, about 40% of planning a million records) without ever finding
    garbage. A collector already paused by the caller stays paused.

    Leaving the pause moves every object there is out of the collector's sight (`gc.freeze`): the next collection
    would otherwise scan at once all that was made while it was paused (a second after planning 200,000 members),
    to find none of it garbage. Refcounting frees them as ever; only a cycle dropped before leaving (a few hundred
    bytes a request the pause saw: httpx's answer and its stream point at each other) is then left until the
    process ends: a few megabytes at 200,000 members."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()
