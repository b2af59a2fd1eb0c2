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
    # leaves the memory of the originals scattered and unused). UniqueIds are GUIDs, as the service's are
    # (deterministic: a version-4 layout around the Id).
    unique = f"{record_id:08x}-5eed-4000-8000-{record_id * 2654435761 % 16**12:012x}"
    return StoredRow({"Id": record_id, "UniqueId": unique, "CreatedOn": STAMP, "UpdatedOn": STAMP,
                      "UpdatedBy": "bench@example.com", "IsNew": False, "SystemId": None, **fields})


def build_space(store: Store, members: int = 3000, lessons: int = 20, per_member: int = 10,
                course_title: str = "Cohort 2026", seed: int = 1) -> list[str]:
    """Fill an empty store with one course; returns the members' emails."""
    return build_courses(store, 1, members, lessons, per_member, course_title, seed)[0][1]


def build_courses(store: Store, courses: int, members: int, lessons: int = 20, per_member: int = 10,
                  course_title: str = "Cohort 2026", seed: int = 1) -> list[tuple[str, list[str]]]:
    """Fill an empty store with `courses` courses of `members` members each (every member enrolled in one
    course); returns each course's title and its members' emails. One course is titled `course_title`, several
    `course_title (01)`, `(02)`, ..."""
    rng = random.Random(seed)
    titles = [course_title] if courses == 1 else [f"{course_title} ({k + 1:02d})" for k in range(courses)]
    store.load("courses", [_row(101 + k, Title=title, Active=True, DisplayOrder=k + 1, GroupName=None,
                                Visibility="Everyone") for k, title in enumerate(titles)])
    lesson_ids = [list(range(2001 + k * lessons, 2001 + (k + 1) * lessons)) for k in range(courses)]
    store.load("courselessons", [_row(i, CourseId=101 + k, Title=f"Lesson {n + 1}", DisplayOrder=n + 1, Active=True,
                                      SectionTitle=None, UnlockType="Always", CompletionType="Manual")
                                 for k in range(courses) for n, i in enumerate(lesson_ids[k])])
    emails = [f"member{n}@example.com" for n in range(members * courses)]
    store.load("coworkers", [_row(10_001 + n, FullName=f"Member {n}", Email=email, CompanyName="Co",
                                  TeamNames="Cohort") for n, email in enumerate(emails)])
    store.load("coursemembers", [_row(50_001 + n, CourseId=101 + n // members, CoworkerId=10_001 + n, Approved=True,
                                      Blocked=False) for n in range(members * courses)])
    rows = []
    next_id = 900_001
    for n in range(members * courses):
        for lesson in sorted(rng.sample(lesson_ids[n // members], per_member)):
            rows.append(_row(next_id, CourseLessonId=lesson, CourseMemberId=50_001 + n))
            next_id += 1
    store.load("coursecompletedlessons", rows)
    return [(title, emails[k * members:(k + 1) * members]) for k, title in enumerate(titles)]


def marker_name(course_title: str) -> str:
    """A spec name for a course's title: `cohort` for the one course, `cohort-03` for `... (03)`."""
    return "cohort" + ("-" + course_title.rsplit("(", 1)[1].rstrip(")") if course_title.endswith(")") else "")


def write_spec(folder: Path, emails: list[str], course_title: str = "Cohort 2026", through: int = 12,
               mode: str = "owned") -> Path:
    """A spec in `folder` that gives each of `emails` lessons 1 to `through`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = marker_name(course_title)
    lines = ["apiVersion: reconciler/v1", "kind: Completions", f"metadata: {{name: {name}}}",
             f"course: {course_title}", f"mode: {mode}", "members:"]
    lines += [f"  - {{email: {email}, completed: {{through: Lesson {through}}}}}" for email in emails]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
