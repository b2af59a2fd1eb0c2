"""A synthetic coworking space of any size: N members of one course, L lessons, ~10 completions each,
with the spec that asks for the first lessons. Benchmarks measure the tool on it and tests use it for
large states; `members`, `lessons` and `seed` make it repeatable."""

from __future__ import annotations

import random
from pathlib import Path

from reconciler.emulator.store import Store, StoredRow

STAMP = "2026-01-01T00:00:00.000Z"


def _row(record_id: int, **fields: object) -> StoredRow:
    # Made as the store keeps it, so that loading adopts it rather than copying (a copy of millions of rows
    # leaves the memory of the originals scattered and unused).
    return StoredRow({"Id": record_id, "UniqueId": f"u{record_id}", "CreatedOn": STAMP, "UpdatedOn": STAMP,
                      "UpdatedBy": "bench@example.com", "IsNew": False, "SystemId": None, **fields})


def build_space(store: Store, members: int = 3000, lessons: int = 20, per_member: int = 10,
                course_title: str = "Cohort 2026", seed: int = 1) -> list[str]:
    """Fill an empty store; returns the members' emails."""
    rng = random.Random(seed)
    store.load("courses", [_row(101, Title=course_title, Active=True, DisplayOrder=1, GroupName=None,
                                Visibility="Everyone")])
    lesson_ids = list(range(2001, 2001 + lessons))
    store.load("courselessons", [_row(i, CourseId=101, Title=f"Lesson {n + 1}", DisplayOrder=n + 1, Active=True,
                                      SectionTitle=None, UnlockType="Always", CompletionType="Manual")
                                 for n, i in enumerate(lesson_ids)])
    emails = [f"member{n}@example.com" for n in range(members)]
    store.load("coworkers", [_row(10_001 + n, FullName=f"Member {n}", Email=email, CompanyName="Co",
                                  TeamNames="Cohort") for n, email in enumerate(emails)])
    store.load("coursemembers", [_row(50_001 + n, CourseId=101, CoworkerId=10_001 + n, Approved=True, Blocked=False)
                                 for n in range(members)])
    rows = []
    next_id = 900_001
    for n in range(members):
        for lesson in sorted(rng.sample(lesson_ids, per_member)):
            rows.append(_row(next_id, CourseLessonId=lesson, CourseMemberId=50_001 + n))
            next_id += 1
    store.load("coursecompletedlessons", rows)
    return emails


def write_spec(folder: Path, emails: list[str], course_title: str = "Cohort 2026", through: int = 12,
               mode: str = "owned") -> Path:
    """A spec in `folder` that gives each of `emails` lessons 1 to `through`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["apiVersion: reconciler/v1", "kind: Completions", "metadata: {name: cohort}", f"course: {course_title}",
             f"mode: {mode}", "members:"]
    lines += [f"  - {{email: {email}, completed: {{through: Lesson {through}}}}}" for email in emails]
    path = folder / "cohort.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
