"""The cyclic collector paused while a stage builds millions of objects, and those objects kept out of its sight
afterwards, so that the first collection after the pause does not scan them all (a second at 200,000 members)."""

from __future__ import annotations

import gc

from reconciler.gc_pause import gc_paused


def test_the_pause_stops_the_collector_and_leaving_it_freezes_what_was_made() -> None:
    before = gc.get_freeze_count()
    with gc_paused():
        assert not gc.isenabled()
        made = [[n] for n in range(20_000)]  # tracked containers, as a plan's are
    assert gc.isenabled()
    assert gc.get_freeze_count() >= before + len(made)
    assert gc.collect() >= 0 and len(made) == 20_000  # refcounting still holds (and would free) them as ever


def test_a_pause_inside_another_leaves_the_collector_paused_and_freezes_nothing() -> None:
    with gc_paused():
        before = gc.get_freeze_count()
        with gc_paused():
            made = [[n] for n in range(1_000)]
        assert not gc.isenabled() and gc.get_freeze_count() == before and len(made) == 1_000
    assert gc.isenabled()


def test_a_collector_the_caller_paused_stays_paused() -> None:
    gc.disable()
    try:
        before = gc.get_freeze_count()
        with gc_paused():
            pass
        assert not gc.isenabled() and gc.get_freeze_count() == before
    finally:
        gc.enable()
