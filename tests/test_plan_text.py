"""What a newcomer reads in a plan: estimates formatted like the counts (and the docs' table agreeing with
them), "to be enrolled", enrolments without a lesson 0, and `source: remove` migrations outside the budget."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.actions import Enroll, Ref, describe
from reconciler.cli import main
from reconciler.config import DOCUMENTED_LIMITS, ClientLimits, Safety
from reconciler.model import Completion
from reconciler.pacing import Pacer
from reconciler.plan import Change, Plan, apply_budgets, estimate_writes

from .conftest import ROOT

REAL_NEXUDUS = ROOT / "docs" / "real-nexudus.md"


@pytest.mark.parametrize(("writes", "limits", "expected"), [
    (1, DOCUMENTED_LIMITS, "1 write request: about 1 second at 60 writes a minute"),
    (1_200, DOCUMENTED_LIMITS, "1,200 write requests: about 19 minutes at 60 writes a minute"),
    (20_000, DOCUMENTED_LIMITS, "20,000 write requests: 4 days at 5,000 writes a day"),
    (10, ClientLimits(writes_per_minute=1_000_000), "10 write requests: about 1 second at 1,000,000 writes a minute"),
    (10, ClientLimits(min_interval_ms=70), "10 write requests: about 1 second at 857 writes a minute"),
    (3, ClientLimits(writes_per_minute=2, min_interval_ms=40_000), "3 write requests: about 2 minutes at 1.5 writes "
                                                                    "a minute"),
    (12, ClientLimits(writes_per_day=100), "12 write requests: within one day's cap of 100 writes"),
    (0, DOCUMENTED_LIMITS, "no writes"),
])
def test_estimates_read_like_the_counts(writes: int, limits: ClientLimits, expected: str) -> None:
    text = estimate_writes(writes, limits).describe()
    assert text == expected
    assert not re.search(r"\de[+-]\d|\.\d{3}", text)  # never 1e+06 or 857.143


def test_the_docs_table_of_bulk_changes_is_what_plan_prints() -> None:
    """RECONCILER_REGENERATE=1 rewrites the table from the estimate, for review."""
    text = REAL_NEXUDUS.read_text()
    rows = re.findall(r"^\| ([\d,]+) \| (.+) \|$", text, re.MULTILINE)
    assert [r[0] for r in rows] == ["500", "5,000", "20,000", "30,000"]
    expected = {count: estimate_writes(int(count.replace(",", "")), DOCUMENTED_LIMITS).describe() for count, _ in rows}
    if os.environ.get("RECONCILER_REGENERATE"):
        for count, said in rows:
            text = text.replace(f"| {count} | {said} |", f"| {count} | {expected[count]} |")
        REAL_NEXUDUS.write_text(text)
        rows = [(count, expected[count]) for count, _ in rows]
    assert {count: said for count, said in rows} == expected
    assert "days at 5,000 writes a day" in expected["20,000"]  # the daily cap binds


def test_a_plan_says_to_be_enrolled_and_names_no_lesson_0(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "  Rosa Kim (to be enrolled)\n    ~ enrol    in Coffee Bar Basics 2027" in out
    assert "enrolled by this apply" not in out and "lesson 0" not in out and "contact support.." not in out
    enrol = Enroll(course=Ref(105, "Coffee Bar Basics 2027"), member=Ref(None, "Rosa Kim"), lesson=Ref(0, ""),
                   spec="m", reason="migrated", coworker_id=10027)
    assert describe(enrol) == "enrol Rosa Kim in Coffee Bar Basics 2027"


def test_a_partial_read_block_offers_no_allow_deletes() -> None:
    deletes = [Change("delete", 1, m, 2, "s", "orphaned", record=Completion(m, m, 2, "2026-01-01", "2026-01-01"))
               for m in range(20)]
    plan = apply_budgets(Plan(actions=deletes, existing_in_scope=20, partial=["a page came back short"]), Safety())
    assert plan.blocked and plan.deletes_to_allow is None
    plan = apply_budgets(Plan(actions=deletes, existing_in_scope=20), Safety())
    assert plan.deletes_to_allow == 20


def test_source_deletes_of_a_migration_are_outside_the_delete_budget(demo: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    migration = demo / "coffee-bar-migration.yaml"
    migration.write_text(migration.read_text().replace("source: keep", "source: remove"))
    # The revoke and the undeclared delete are two; the migration's source deletes are more, and conserved.
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\n"
                                          "safety: {max_deletes: 2, max_delete_fraction: 0.3, min_existing: 1}\n")
    assert main(["plan", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["blocked"] is None
    migrated = sum(1 for a in doc["actions"] if a["action"] == "delete" and a["reason"] == "migrated")
    assert migrated > 2 and doc["summary"]["delete"] == migrated + 2
    assert (f"{migrated} source deletes of a migration are outside the delete budget: each is made only once its "
            "copy in the target course exists, so no credit is lost") in doc["warnings"]
    # Other deletes still count: one more than the budget blocks, and the number to allow leaves them out.
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nsafety: {max_deletes: 1}\n")
    assert main(["plan"]) == 3
    out = capsys.readouterr().out
    assert "Blocked: 2 deletes exceed max_deletes (1)." in out and "--allow-deletes 2 " in out
    assert main(["plan", "--allow-deletes", "2"]) == 0


def played_out(writes: int, limits: ClientLimits) -> float:
    """The pacer played out write by write, every window in it (below the extrapolation's threshold): what the
    estimate's simulation must come to whichever windows it leaves out."""
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    pacer = Pacer(replace(limits, writes_per_day=None), clock=lambda: clock[0], sleep=sleep)
    for _ in range(writes):
        pacer.before(write=True)
        pacer.after(write=True)
    return clock[0] + (limits.min_interval_ms or 0) / 1000.0


caps = st.one_of(st.none(), st.integers(1, 400), st.just(100_000_000))


@settings(max_examples=150, deadline=None)
@given(writes=st.integers(0, 300), per_minute=caps, requests_per_minute=caps, per_hour=caps,
       least=st.one_of(st.none(), st.just(0), st.integers(1, 2_000)))
def test_the_estimate_leaves_out_only_windows_that_never_fill(writes: int, per_minute: int | None,
                                                             requests_per_minute: int | None, per_hour: int | None,
                                                             least: int | None) -> None:
    limits = ClientLimits(writes_per_minute=per_minute, requests_per_minute=requests_per_minute,
                          requests_per_hour=per_hour, min_interval_ms=least)
    expected = played_out(writes, limits) if (per_minute or requests_per_minute or per_hour or least) else 0.0
    assert estimate_writes(writes, limits).seconds == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("writes", "limits"), [
    (2_977, DOCUMENTED_LIMITS),  # 60 writes a minute and the least interval bind
    (6_000, DOCUMENTED_LIMITS),  # the hour's window fills and slides
    (1_500, ClientLimits(writes_per_minute=7, requests_per_minute=11, requests_per_hour=400, min_interval_ms=999)),
])
def test_the_estimate_is_the_pacers_schedule_for_thousands_of_writes(writes: int, limits: ClientLimits) -> None:
    """Every window filling and sliding many times over, past what the property test above reaches."""
    assert estimate_writes(writes, replace(limits, writes_per_day=None)).seconds == \
        pytest.approx(played_out(writes, limits), abs=1e-6)

