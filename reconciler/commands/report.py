"""`reconciler report`: where the courses stand, per lesson and team, and the members × lessons matrix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from reconciler.commands import Console, Outcome
from reconciler.config import load_config
from reconciler.foreign_yaml import load_spec_set
from reconciler.model import SpecSet
from reconciler.render_html import html_page
from reconciler.report import read_report, report_markdown
from reconciler.target import connect, trust_store


def report(paths: list[Path], *, courses: list[str], config_file: Path | None, api: str | None,
           output_format: Literal["markdown", "html"] = "markdown", cache: bool = True,
           console: Console) -> Outcome:
    """The courses named by `courses`, else the specs' courses, else (no spec under PATH) every course."""
    config = load_config(config_flag=config_file, api_flag=api, paths=paths)
    trust = trust_store(config)  # loaded while the specs are
    specs = SpecSet() if courses else load_spec_set(paths or [Path(".")], [config.seed] if config.seed else [],
                                                     require_any=False)
    with connect(config, cache=cache, trust=trust) as target:
        doc = read_report(target, specs, courses, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    console.stdout.write(html_page(doc) if output_format == "html" else report_markdown(doc))
    return Outcome.OK
