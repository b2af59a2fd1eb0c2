"""A bulk migration: 5,000 members of Onboarding 2025 (~25,000 completions) to an empty 2026 edition.

Figures: the requests planning it takes against the floor (one full page per 1,000 records needed),
planning time, and what the plan says about the writes at the real service's documented cap.

Run: python -m benchmarks.bench_migration
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.space import STAMP, build_space
from reconciler.client import NexudusClient
from reconciler.config import Config, Credentials
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import Store
from reconciler.planning import make_plan
from reconciler.render import summary_line
from reconciler.spec import load_specs
from reconciler.target import Target

MEMBERS, LESSONS = 5000, 10


def main() -> None:
    store = Store()
    build_space(store, members=MEMBERS, lessons=LESSONS, per_member=5, course_title="Onboarding 2025")
    store.load("courses", [{"Id": 102, "Title": "Onboarding 2026", "Active": True, "DisplayOrder": 2,
                            "GroupName": None, "Visibility": "Everyone", "UniqueId": "c102", "CreatedOn": STAMP,
                            "UpdatedOn": STAMP, "UpdatedBy": "x", "IsNew": False, "SystemId": None}])
    store.load("courselessons", [{"Id": 3001 + n, "CourseId": 102, "Title": f"Lesson {n + 1}", "DisplayOrder": n + 1,
                                  "Active": True, "SectionTitle": None, "UnlockType": "Always",
                                  "CompletionType": "Manual", "UniqueId": f"l{n}", "CreatedOn": STAMP,
                                  "UpdatedOn": STAMP, "UpdatedBy": "x", "IsNew": False, "SystemId": None}
                                 for n in range(LESSONS)])
    completions = len(store.rows["coursecompletedlessons"])
    # Records the plan needs: the courses, both courses' lessons, the 2025 enrolments (the 2026 list is
    # empty but must still be asked for), and every completion of either course.
    floor = 1 + 2 + math.ceil(MEMBERS / 1000) + 1 + math.ceil(completions / 1000)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        (folder / "m.yaml").write_text(
            "apiVersion: reconciler/v1\nkind: Migration\nmetadata: {name: onboarding-2025-to-2026}\n"
            "from: {course: Onboarding 2025}\nto: {course: Onboarding 2026}\nlessons:\n"
            + "".join(f"  Lesson {n + 1}: Lesson {n + 1}\n" for n in range(LESSONS)) + "enroll: true\nsource: keep\n")
        config = Config(target="local", target_origin="bench", base_dir=folder, state_dir=folder / ".reconciler")
        with httpx.Client(transport=InProcessTransport(app)) as http:
            client = NexudusClient("http://local", http)
            started = time.perf_counter()
            planned = make_plan(Target(client, "local", Credentials()), load_specs([folder]), config)
            elapsed = time.perf_counter() - started
    print(f"migration of {MEMBERS:,} members, {completions:,} completions: planned in {elapsed:.1f} s with "
          f"{client.stats.requests} requests; floor {floor}; ratio {client.stats.requests / floor:.2f}x")
    print(summary_line(planned.doc))


if __name__ == "__main__":
    main()
