"""`reconciler plan`: what apply would change, as text, JSON, Markdown or the HTML review page."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from reconciler import UNPAIRED
from reconciler.commands import Console, Outcome
from reconciler.config import load_config
from reconciler.foreign_yaml import load_spec_set
from reconciler.journal import write_budget
from reconciler.planning import make_plan, save_plan
from reconciler.render import apply_hint, markdown, quiet_lines, write_json, write_text
from reconciler.target import connect, trust_store

Format = Literal["text", "json", "markdown", "html"]


def plan(paths: list[Path], *, config_file: Path | None, api: str | None, out: Path | None = None,
         out_html: Path | None = None, output_format: Format = "text", allow_deletes: int | None = None,
         cache: bool = True, console: Console) -> Outcome:
    """Plan against the target; CHANGES or NO_CHANGES, or BLOCKED when a safety budget or a partial read stops it.
    With `console.quiet`, the text form is only the target, the warnings, the summary line and why it is blocked."""
    config = load_config(config_flag=config_file, api_flag=api, paths=paths)
    trust = trust_store(config)  # loaded while the specs are
    specs = load_spec_set(paths or [Path(".")], [config.seed] if config.seed else [])
    with connect(config, cache=cache, trust=trust) as target:
        planned = make_plan(target, specs, config, allow_deletes=allow_deletes, confirm_creates=True)
    doc = planned.doc
    # The estimate is the writes under the limits; what earlier applies spent of today's cap is this machine's.
    per_day, writes = target.client.pacer.limits.writes_per_day, doc["summary"]["writes"]
    capped = write_budget(config.state_dir / "journal", target.description).cap_note(writes, per_day) \
        if per_day and writes else None
    if out:  # with --format json, the printed plan is written beside the saved one (its actions encoded once)
        save_plan(doc, out, planned.spec_files, echo=console.stdout if output_format == "json" else None)
    if out_html or output_format == "html":
        from reconciler.render_html import html_page  # imported only for the page

    if out_html:
        write_page(html_page(doc), out_html)
    stdout = console.stdout
    if output_format == "json":
        if not out:
            write_json(doc, stdout)
    elif output_format == "markdown":
        stdout.write(markdown(doc, full_plan_hint=f"`{out}`" if out else "the JSON plan"))
    elif output_format == "html":
        stdout.write(html_page(doc))
    elif console.quiet:
        print("\n".join(quiet_lines(doc)), file=stdout)
    else:
        write_text(doc, stdout, color=console.color)
    if out:
        console.note(apply_hint(doc, out))
    if out_html:
        console.note(f"wrote the review page to {out_html}")
    if capped:
        console.warn(capped)
    if planned.plan.blocked:
        return Outcome.BLOCKED
    return Outcome.CHANGES if planned.plan.has_changes else Outcome.NO_CHANGES


def write_page(text: str, path: Path) -> None:
    """Write a page atomically, so a reader never opens half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8", errors=UNPAIRED)
    partial.replace(path)
