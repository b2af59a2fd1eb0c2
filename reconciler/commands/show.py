"""`reconciler show`: re-render a saved plan, checked as `apply --plan` checks it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from reconciler.commands import Console, Outcome
from reconciler.planning import load_plan
from reconciler.render import markdown, quiet_lines, write_json, write_text
from reconciler.render_html import html_page


def show(plan_file: Path, *, output_format: Literal["text", "json", "markdown", "html"] = "text",
         console: Console) -> Outcome:
    saved = load_plan(plan_file)  # validated and typed, exactly as apply --plan reads it
    doc = saved.document
    if output_format == "json":
        write_json(doc, console.stdout)
    elif output_format == "markdown":
        console.stdout.write(markdown(doc, full_plan_hint=f"`{plan_file}`"))
    elif output_format == "html":
        console.stdout.write(html_page(doc))
    elif console.quiet:  # as `plan -q`: the target, the warnings, the summary line and why it is blocked
        print("\n".join(quiet_lines(doc)), file=console.stdout)
    else:
        write_text(doc, console.stdout, color=console.color)
    return Outcome.OK
