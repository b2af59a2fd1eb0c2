"""The HTML review page: a plan (or a report) as one self-contained file, drawn per course as a members ×
lessons matrix, with filters, counts that follow them, and the full action list.

No network, ever: styles and script are inline, the data rides in the page as JSON, and a
Content-Security-Policy forbids every fetch, so the page works opened from disk or as a CI artifact.
The matrix and the action table are virtualised (only the rows in view are in the DOM), so 20,000
members × 30 lessons stay quick (benchmarks/bench_html.py measures it). Pure: a document in, text out.
"""

from __future__ import annotations

import json
from collections import Counter
from html import escape as html_escape
from typing import Any, TextIO

from reconciler.matrix import CourseGrid, Placement, course_grids, rate
from reconciler.render import blocked_lines, shown, summary_line


def escape(text: str) -> str:
    """Live text for the page's static parts: `shown` (a control character, line break or direction override as
    its escape, as the text plan has it), then HTML-escaped."""
    return html_escape(shown(text))


# Not even a font or an image may be fetched: anything that tried would be refused by the browser.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")


def write_html(doc: dict[str, Any], out: TextIO) -> None:
    out.write(html_page(doc))


def html_page(doc: dict[str, Any]) -> str:
    """The page for a plan document (specs/plan.schema.json) or a report document (report.py)."""
    is_plan = "summary" in doc
    grids, placements = course_grids(doc)
    data = page_data(doc, grids, placements, is_plan=is_plan)
    title = "reconciler plan" if is_plan else "reconciler report"
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        '<meta name="referrer" content="no-referrer">\n',
        f"<title>{escape(title)} · {escape(str(doc.get('target', '')))}</title>\n",
        f"<style>{_CSS}</style>\n</head>\n<body>\n",
        _header(doc, grids, is_plan=is_plan),
        _overview(doc, grids, is_plan=is_plan),
        _controls(is_plan=is_plan),
        '<main id="courses">\n',
        *(_course_section(index, grid, is_plan=is_plan) for index, grid in enumerate(grids)),
        "</main>\n",
        _actions_section() if is_plan else "",
        '<noscript><p class="note">The matrix and the action list need JavaScript; the summary above, and the '
        "JSON plan, hold everything.</p></noscript>\n",
        f'<script type="application/json" id="reconciler-data">{_embed(data)}</script>\n',
        f"<script>{_JS}</script>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def _embed(data: dict[str, Any]) -> str:
    """JSON that cannot end its <script> element early (no `<`, `>` or `&` survives as itself)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_data(doc: dict[str, Any], grids: list[CourseGrid], placements: list[Placement], *,
              is_plan: bool) -> dict[str, Any]:
    """The compact model the page's script draws: rows as [member Id, coworker Id, name, team indexes,
    cells, enrolled-by-this-apply], and the actions as a flat list of (course, row, column, why) with the
    repeated parts (kind, reason, spec, origin) interned, and the rarer notes and records on the side."""
    teams = sorted({t for grid in grids for row in grid.rows for t in row.teams}, key=lambda t: (t.casefold(), t))
    team_index = {team: i for i, team in enumerate(teams)}
    whys: list[list[str]] = []
    why_index: dict[tuple[str, str, str, str], int] = {}
    flat: list[int] = []
    notes: list[list[Any]] = []
    records: list[list[Any]] = []
    for number, (entry, place) in enumerate(zip(doc.get("actions") or [], placements, strict=True)):
        key = (entry["action"], entry.get("reason", ""), entry.get("spec", ""), entry.get("origin") or "")
        why = why_index.get(key)
        if why is None:
            why = why_index[key] = len(whys)
            whys.append(list(key))
        flat += [place.course, place.row, place.column, why]
        if entry.get("note"):
            notes.append([number, entry["note"]])
        if entry["action"] == "delete":
            record = entry.get("record") or {}
            records.append([number, record.get("Id"), str(record.get("CreatedOn") or "")])
    return {
        "kind": "plan" if is_plan else "report",
        "teams": teams,
        "courses": [{
            "id": grid.id, "title": grid.title, "enrolled": grid.enrolled,
            "lessons": [[lesson_id, title] for lesson_id, title in grid.lessons],
            "rows": [[row.member_id, row.coworker_id, row.name, [team_index[t] for t in row.teams],
                      "".join(row.cells), int(row.enrol)] for row in grid.rows],
        } for grid in grids],
        "why": whys,
        "actions": flat,
        "notes": notes,
        "records": records,
    }


# --- the parts drawn here (static) ----------------------------------------------------------------

def _header(doc: dict[str, Any], grids: list[CourseGrid], *, is_plan: bool) -> str:
    target = escape(str(doc.get("target", "")))
    lines = [f'<header>\n<h1>{"reconciler plan" if is_plan else "reconciler report"}</h1>\n',
             f'<p class="target">Target: <code>{target}</code></p>\n']
    if is_plan:
        # The summary line carries the time the writes take under the limits (days, where the cap binds).
        lines.append(f'<p class="summary" id="summary">{escape(summary_line(doc))}</p>\n')
        blocked = blocked_lines(doc)
        if blocked:
            lines.append('<div class="blocked" role="alert"><strong>⛔ This plan is blocked.</strong><ul>'
                         + "".join(f"<li>{escape(line)}</li>" for line in blocked) + "</ul></div>\n")
        if doc.get("undo_of"):
            lines.append(f'<p class="note">An undo plan: it reverses apply <code>{escape(str(doc["undo_of"]))}'
                         "</code>.</p>\n")
        for title, key, css in (("Warnings", "warnings", "warn"), ("Drift the mode may not repair", "drift", "warn"),
                                ("Partial reads", "partial", "bad")):
            items = doc.get(key) or []
            if items:
                shown = items[:500]
                more = f"<li>… {len(items) - len(shown):,} more (in the JSON plan)</li>" if len(items) > 500 else ""
                lines.append(f'<details class="{css}" open><summary>{title} ({len(items):,})</summary><ul>'
                             + "".join(f"<li>{escape(str(item))}</li>" for item in shown) + more
                             + "</ul></details>\n")
        if not doc.get("actions"):
            lines.append('<p class="summary">No changes.</p>\n')
    else:
        completions = sum(grid.count("k") for grid in grids)
        cells = sum(len(grid.rows) * len(grid.lessons) for grid in grids)
        lines.append(f'<p class="summary" id="summary">Read at {escape(str(doc.get("generated", "")))}: '
                     f"{len(grids):,} course{'s' if len(grids) != 1 else ''}, {completions:,} of {cells:,} "
                     f"lesson completions ({rate(completions, cells)}).</p>\n")
    if any(not grid.from_matrix for grid in grids):
        lines.append('<p class="note">This plan carries no matrix (it was made by an older version, or by undo): '
                     "rows are the members with an action, and a cell without an action (hatched) is unknown, not "
                     "“not completed”.</p>\n")
    lines.append("</header>\n")
    return "".join(lines)


def _overview(doc: dict[str, Any], grids: list[CourseGrid], *, is_plan: bool) -> str:
    if not grids:
        return ""
    if is_plan:
        head = ("<tr><th>Course</th><th>Members</th><th>Lessons</th><th>To create</th><th>To delete</th>"
                "<th>To enrol</th><th>Completed now</th><th>After apply</th></tr>")
    else:
        head = ("<tr><th>Course</th><th>Members</th><th>Lessons</th><th>Completions</th><th>Rate</th>"
                "<th>Every lesson done</th></tr>")
    body = []
    for index, grid in enumerate(grids):
        cells = len(grid.rows) * len(grid.lessons)
        members = f"{len(grid.rows):,}"
        enrolled_rows = sum(1 for row in grid.rows if row.member_id is not None)
        if grid.enrolled is not None and grid.enrolled > enrolled_rows:
            members += f" <small>({grid.enrolled - enrolled_rows:,} more enrolled, out of reach)</small>"
        link = f'<a href="#course-{index}" data-course-link="{index}">{escape(grid.title or f"course {grid.id}")}</a>'
        if is_plan:
            now, after = grid.count("kdu"), grid.count("kcu")
            kinds = Counter(doc["actions"][i]["action"] for row in grid.rows for i in row.actions)
            before_after = (f'<td class="num">{now:,} ({rate(now, cells)})</td>'
                            f'<td class="num">{after:,} ({rate(after, cells)})</td>' if grid.from_matrix else
                            '<td class="num" title="not in this plan">–</td><td class="num">–</td>')
            body.append(f"<tr><th scope=row>{link}</th><td>{members}</td><td>{len(grid.lessons):,}</td>"
                        f'<td class="num">{kinds["create"]:,}</td><td class="num">{kinds["delete"]:,}</td>'
                        f'<td class="num">{kinds["enroll"]:,}</td>{before_after}</tr>')
        else:
            done = grid.count("k")
            complete = sum(1 for row in grid.rows if row.cells and all(cell == "k" for cell in row.cells))
            body.append(f"<tr><th scope=row>{link}</th><td>{members}</td><td>{len(grid.lessons):,}</td>"
                        f'<td class="num">{done:,} of {cells:,}</td><td class="num">{rate(done, cells)}</td>'
                        f'<td class="num">{complete:,} ({rate(complete, len(grid.rows))})</td></tr>')
    return (f'<section id="overview"><h2>Courses</h2><table class="overview"><thead>{head}</thead>'
            f"<tbody>{''.join(body)}</tbody></table></section>\n")


def _figures(grid: CourseGrid, *, is_plan: bool) -> str:
    """By lesson and by team: completed now and after the apply (a report has only now)."""
    rows = len(grid.rows)

    def bar(part: int, whole: int) -> str:
        width = part * 100 // whole if whole else 0
        return f'<span class="bar" aria-hidden="true"><span style="width:{width}%"></span></span>'

    if is_plan:
        lesson_head = ("<tr><th>Lesson</th><th>Completed now</th><th>To create</th><th>To delete</th>"
                       "<th>After apply</th></tr>")
        team_head = "<tr><th>Team</th><th>Members</th><th>Completed now</th><th>After apply</th></tr>"
    else:
        lesson_head = "<tr><th>Lesson</th><th>Completed</th><th>Rate</th></tr>"
        team_head = "<tr><th>Team</th><th>Members</th><th>Completions</th><th>Rate</th><th>Every lesson done</th></tr>"
    lesson_rows = []
    for position, figure in enumerate(grid.by_lesson(), start=1):
        name = f"{position}. {escape(figure.title)}"
        if is_plan:
            lesson_rows.append(f"<tr><th scope=row>{name}</th><td class=num>{figure.now:,} ({rate(figure.now, rows)})"
                               f"</td><td class=num>{figure.create:,}</td><td class=num>{figure.delete:,}</td>"
                               f"<td class=num>{figure.after:,} ({rate(figure.after, rows)}) "
                               f"{bar(figure.after, rows)}</td></tr>")
        else:
            lesson_rows.append(f"<tr><th scope=row>{name}</th><td class=num>{figure.now:,} of {rows:,}</td>"
                               f"<td class=num>{rate(figure.now, rows)} {bar(figure.now, rows)}</td></tr>")
    team_rows = []
    for team in grid.by_team():
        name = escape(team.team)
        if is_plan:
            team_rows.append(f"<tr><th scope=row>{name}</th><td class=num>{team.members:,}</td>"
                             f"<td class=num>{team.now:,} ({rate(team.now, team.possible)})</td>"
                             f"<td class=num>{team.after:,} ({rate(team.after, team.possible)}) "
                             f"{bar(team.after, team.possible)}</td></tr>")
        else:
            team_rows.append(f"<tr><th scope=row>{name}</th><td class=num>{team.members:,}</td>"
                             f"<td class=num>{team.now:,} of {team.possible:,}</td>"
                             f"<td class=num>{rate(team.now, team.possible)} {bar(team.now, team.possible)}</td>"
                             f"<td class=num>{team.all_done_after:,}</td></tr>")
    state = "" if is_plan else " open"
    return (f'<details class="figures"{state}><summary>By lesson and by team</summary><div class="figure-tables">'
            f'<table class="by-lesson"><thead>{lesson_head}</thead><tbody>{"".join(lesson_rows)}</tbody></table>'
            f'<table class="by-team"><thead>{team_head}</thead><tbody>{"".join(team_rows)}</tbody></table>'
            "</div><p class=\"hint\">A member counts in each of their teams.</p></details>\n")


def _course_section(index: int, grid: CourseGrid, *, is_plan: bool) -> str:
    title = escape(grid.title or f"course {grid.id}")
    scope = ""
    outside = (grid.enrolled or 0) - sum(1 for row in grid.rows if row.member_id is not None)
    if outside > 0:
        scope = (f'<p class="note">{outside:,} other enrolled member{"s are" if outside != 1 else " is"} outside '
                 "the plan's reach (named by no spec); their completions were not read and are not shown.</p>")
    return (f'<section class="course" id="course-{index}" data-course="{index}" data-course-id="{grid.id}">\n'
            f'<h2>{title} <small>course {grid.id} · {len(grid.rows):,} members · {len(grid.lessons):,} lessons'
            f"</small></h2>\n{scope}{_figures(grid, is_plan=is_plan) if grid.from_matrix else ''}"
            f'<p class="counts" data-counts="{index}" aria-live="polite"></p>\n'
            f'<div class="grid" data-grid="{index}" tabindex="0" role="region" aria-label="{title}: members by '
            'lessons"></div>\n</section>\n')


def _controls(*, is_plan: bool) -> str:
    if is_plan:
        actions = [("all", "every member"), ("changes", "with changes"), ("create", "with something to create"),
                   ("delete", "with something to delete"), ("enroll", "to enrol"), ("unchanged", "without changes"),
                   ("complete", "with every lesson after apply"), ("incomplete", "missing a lesson after apply")]
        legend = [("kept", "✓", "completed, and stays"), ("create", "+", "to create"),
                  ("delete", "−", "to delete (hover for why)"),
                  ("dedupe", "✓−", "completed; a duplicate record is deleted"), ("none", "", "not completed")]
    else:
        actions = [("all", "every member"), ("complete", "with every lesson"), ("incomplete", "missing a lesson"),
                   ("empty", "with no lesson")]
        legend = [("kept", "✓", "completed"), ("none", "", "not completed")]
    options = "".join(f'<option value="{value}">{escape(text)}</option>' for value, text in actions)
    keys = "".join(f'<li><span class="x {css}">{mark}</span> {escape(text)}</li>' for css, mark, text in legend)
    if is_plan:
        keys += '<li><span class="enrol">⊕ enrol</span> enrolled in the course by this apply</li>'
    return f"""<section id="controls" aria-label="Filters">
<form id="filters" onsubmit="return false">
<label>Course <select id="f-course"><option value="-1">all courses</option></select></label>
<label>Show <select id="f-action">{options}</select></label>
<label>Team <select id="f-team"><option value="-1">all teams</option></select></label>
<label>Lesson <select id="f-lesson" disabled><option value="-1">all lessons</option></select></label>
<label>Search <input id="f-search" type="search" placeholder="member name, Id or team" autocomplete="off"></label>
<label>Sort <select id="f-sort"><option value="name">by name</option><option value="changes">most changes first</option>
<option value="progress">least progress first</option></select></label>
<label><input id="f-group" type="checkbox" checked> group by team</label>
<span id="f-member" hidden></span>
<button type="button" id="f-reset">Clear filters</button>
</form>
<p class="counts" id="counts" aria-live="polite"></p>
<ul class="legend">{keys}</ul>
<p class="hint">Rows are grouped under each member's first team; click a name to follow that person across courses,
a lesson's heading to filter by it.</p>
</section>
"""


def _actions_section() -> str:
    return """<section id="actions"><h2>Actions <small id="actions-count"></small></h2>
<p class="hint">The rows of the JSON plan, in the order apply makes them (# is the position there), filtered as
above.</p>
<div class="atable" id="atable" tabindex="0" role="region" aria-label="actions"></div>
</section>
"""


_CSS = """
:root{--create:#0072B2;--delete:#D55E00;--dedupe:#F0E442;--kept:#d9d9d9;--enrol:#009E73;--ink:#1b1b1b;
--line:#c8c8c8;--soft:#f4f4f4;--row:24px;--cell:30px;--namew:280px}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);margin:0;
padding:16px 24px 48px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:24px 0 6px}h2 small{font-weight:normal;color:#555}
code{font:13px ui-monospace,"DejaVu Sans Mono",monospace;background:var(--soft);padding:1px 4px;border-radius:3px}
.summary{font-weight:600;font-size:15px;margin:6px 0}.target{margin:2px 0}
.blocked{border:2px solid var(--delete);background:#fdece3;padding:8px 12px;border-radius:6px;margin:10px 0}
.blocked ul{margin:4px 0 0 18px;padding:0}
details.warn,details.bad{border-left:4px solid #b58900;padding:4px 10px;margin:8px 0;background:#fbf7e6}
details.bad{border-color:var(--delete);background:#fdece3}
.note{background:#eef4fb;border-left:4px solid var(--create);padding:6px 10px;margin:8px 0}
.hint{color:#555;font-size:12.5px;margin:4px 0}
table{border-collapse:collapse}th,td{padding:3px 10px;border-bottom:1px solid #e4e4e4;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
thead th{background:var(--soft);font-weight:600}
.figure-tables{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start;margin:6px 0}
.bar{display:inline-block;width:80px;height:9px;background:#eee;border:1px solid #bbb;vertical-align:middle}
.bar span{display:block;height:100%;background:var(--create)}
#controls{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);padding:8px 0 4px;
margin-top:12px}
#filters{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center}
#filters label{white-space:nowrap}#filters select,#filters input[type=search]{font:inherit;padding:2px 4px}
#f-search{width:200px}
.chip{background:#e8eef8;border:1px solid #9fb6d9;border-radius:12px;padding:1px 8px}
.chip button{border:0;background:none;cursor:pointer;font:inherit;padding:0 0 0 4px}
.counts{margin:6px 0;font-variant-numeric:tabular-nums}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 16px;padding:0;margin:4px 0}
.legend li{display:flex;align-items:center;gap:5px}.legend .x{display:inline-flex;border:1px solid var(--line)}
.grid{position:relative;overflow:auto;max-height:70vh;width:max-content;max-width:100%;border:1px solid var(--line);
background:#fff}
.ghead{position:sticky;top:0;z-index:3;display:flex;background:var(--soft);border-bottom:1px solid var(--line)}
.ghead .nh{position:sticky;left:0;z-index:4;width:var(--namew);flex:none;background:var(--soft);padding:6px;
display:flex;align-items:flex-end;border-right:1px solid var(--line)}
.ghead .nh button{font:inherit;font-weight:600;border:0;background:none;cursor:pointer;padding:0}
.lh{width:var(--cell);flex:none;height:150px;display:flex;align-items:flex-end;justify-content:center;padding:4px 0;
border-right:1px solid #e2e2e2;cursor:pointer;font-size:12px}
.lh span{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;overflow:hidden;text-overflow:ellipsis;
max-height:142px}
.lh.on{background:#dbe8f6}
.gbody{position:relative}.gwin{position:absolute;left:0;top:0}
.r{display:flex;height:var(--row)}.r:hover .n,.r:hover{background:#f3f7fc}
.r .n{position:sticky;left:0;z-index:2;width:var(--namew);flex:none;background:#fff;border-right:1px solid var(--line);
padding:0 6px;display:flex;align-items:center;gap:6px;overflow:hidden;white-space:nowrap}
.r .n button{font:inherit;border:0;background:none;padding:0;cursor:pointer;color:inherit;text-align:left;
overflow:hidden;text-overflow:ellipsis}
.r .n button:hover{text-decoration:underline}.tm{color:#666;font-size:12px;overflow:hidden;text-overflow:ellipsis}
.r.g{background:#eceff3;font-weight:600}.r.g .n{background:#eceff3;width:auto;min-width:var(--namew)}
.x{width:var(--cell);height:var(--row);flex:none;display:flex;align-items:center;justify-content:center;
border-right:1px solid #ececec;border-bottom:1px solid #ececec;font-weight:700;font-size:13px}
.x.kept{background:var(--kept);color:#222}
.x.create{background:var(--create);color:#fff}
.x.delete{background:var(--delete);color:#fff;background-image:repeating-linear-gradient(45deg,transparent 0 4px,
rgba(255,255,255,.28) 4px 6px)}
.x.dedupe{background:var(--dedupe);color:#222;font-size:11px}
.x.none{background:#fff}.x.unknown{background:repeating-linear-gradient(45deg,#fff 0 3px,#f0f0f0 3px 6px)}
.enrol{background:var(--enrol);color:#fff;border-radius:3px;padding:0 5px;font-size:12px;font-weight:600;flex:none}
.atable{position:relative;overflow:auto;max-height:60vh;border:1px solid var(--line)}
.arow{display:grid;grid-template-columns:70px 86px 170px 190px 190px minmax(220px,1fr) 170px 150px 190px;
height:var(--row);align-items:center;border-bottom:1px solid #eee;min-width:1240px}
.arow>span{padding:0 6px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.arow.h{position:sticky;top:0;z-index:2;background:var(--soft);font-weight:600}
.k-create{color:var(--create);font-weight:700}.k-delete{color:var(--delete);font-weight:700}
.k-enroll{color:var(--enrol);font-weight:700}
.empty{padding:10px;color:#555}
@media print{#controls{position:static}.grid,.atable{max-height:none}}
"""


_JS = r"""
"use strict";
(() => {
const D = JSON.parse(document.getElementById("reconciler-data").textContent);
const ROW = 24, OVERSCAN = 12, PLAN = D.kind === "plan";
const STATE = {".": "none", k: "kept", c: "create", d: "delete", u: "dedupe"};
const MARK = {".": "", k: "✓", c: "+", d: "−", u: "✓−"};
const WORDS = {".": "not completed", k: "completed", c: "to create", d: "to delete",
  u: "completed; a duplicate record is deleted"};
const AFTER = {k: 1, c: 1, u: 1}, CHANGE = {c: 1, d: 1, u: 1};
const KIND_MARK = {create: "+ create", delete: "− delete", enroll: "⊕ enrol"};
const $ = (id) => document.getElementById(id);
// Live text as the text plan shows it (render.shown): a control character, line break or direction override as its
// escape, so that no name reorders what a row says (`vis`); HTML-escaped too for markup (`esc`).
const vis = (s) => String(s)
  .replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]/g,
           (c) => ({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c] || (c.charCodeAt(0) < 0x100
             ? "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0")
             : "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"))));
const esc = (s) => vis(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
  "'": "&#39;"}[c]));
const fmt = (n) => n.toLocaleString("en-US");
const collator = new Intl.Collator(undefined, {sensitivity: "base", numeric: true});
const A = D.actions, nActs = A.length / 4;
const notes = new Map(D.notes), records = new Map(D.records.map((r) => [r[0], [r[1], r[2]]]));
const courses = D.courses.map((c, ci) => ({...c, ci, acts: c.rows.map(() => []), known: c.enrolled !== null,
  text: c.rows.map((r) => [r[2], r[0] ?? "", r[1] ?? "", ...r[3].map((t) => D.teams[t])].join(" ").toLowerCase())}));
for (let i = 0; i < nActs; i++) courses[A[4 * i]].acts[A[4 * i + 1]].push(i);
const F = {course: -1, action: "all", team: -1, lesson: -1, search: "", member: null, sort: "name", desc: false,
  group: true};

// --- filters ------------------------------------------------------------------------------------
function kindOf(i) { return D.why[A[4 * i + 3]][0]; }
function actPasses(i) {
  const col = A[4 * i + 2];
  if (F.lesson >= 0 && col !== F.lesson) return false;
  return !(F.action === "create" || F.action === "delete" || F.action === "enroll") || kindOf(i) === F.action;
}
function cols(c) { return F.lesson >= 0 && F.course === c.ci ? [F.lesson] : null; }
function rowPasses(c, r) {
  const row = c.rows[r];
  if (F.member !== null) {
    if (F.member.coworker !== null ? row[1] !== F.member.coworker : (F.member.ci !== c.ci || F.member.r !== r))
      return false;
  }
  if (F.team >= 0 && !row[3].includes(F.team)) return false;
  if (F.search && !c.text[r].includes(F.search)) return false;
  const only = cols(c), cells = row[4];
  const some = (pred) => only ? pred(cells[only[0]]) : [...cells].some(pred);
  const every = (pred) => only ? pred(cells[only[0]]) : [...cells].every(pred);
  switch (F.action) {
    case "all": return true;
    case "changes": return c.acts[r].some(actPasses);
    case "create": case "delete": case "enroll": return c.acts[r].some(actPasses);
    case "unchanged": return !c.acts[r].some(actPasses);
    case "complete": return cells.length > 0 && every((x) => x in AFTER);
    case "incomplete": return some((x) => !(x in AFTER));
    case "empty": return every((x) => !(x in AFTER));
  }
  return true;
}
function shownCourses() { return F.course >= 0 ? [courses[F.course]] : courses; }

// --- per course: the rows shown, sorted and grouped --------------------------------------------
function afterCount(row) { let n = 0; for (const x of row[4]) if (x in AFTER) n++; return n; }
function view(c) {
  const rows = [];
  for (let r = 0; r < c.rows.length; r++) if (rowPasses(c, r)) rows.push(r);
  const byName = (a, b) => collator.compare(c.rows[a][2], c.rows[b][2]) || a - b;
  let order = byName;
  if (F.sort === "changes") order = (a, b) => c.acts[b].length - c.acts[a].length || byName(a, b);
  if (F.sort === "progress") order = (a, b) => afterCount(c.rows[a]) - afterCount(c.rows[b]) || byName(a, b);
  rows.sort(F.desc ? (a, b) => order(b, a) : order);
  if (!F.group) return {rows, items: rows};
  const groups = new Map();
  for (const r of rows) {
    const t = c.rows[r][3].length ? c.rows[r][3][0] : -1;
    if (!groups.has(t)) groups.set(t, []);
    groups.get(t).push(r);
  }
  const keys = [...groups.keys()].sort((a, b) => (a < 0) - (b < 0) || a - b);
  const items = [];
  for (const t of keys) {
    items.push({group: t < 0 ? "(no team)" : D.teams[t], n: groups.get(t).length});
    items.push(...groups.get(t));
  }
  return {rows, items};
}

// --- counts that follow the filters ---------------------------------------------------------------
function tally(c, rows) {
  const t = {members: rows.length, create: 0, delete: 0, enroll: 0, now: 0, after: 0, cells: 0, unknown: !c.known};
  const only = cols(c);
  for (const r of rows) {
    for (const i of c.acts[r]) if (actPasses(i)) t[kindOf(i)]++;
    const cells = c.rows[r][4];
    for (const x of (only ? [cells[only[0]]] : cells)) {
      t.cells++;
      if (x === "k" || x === "d" || x === "u") t.now++;
      if (x in AFTER) t.after++;
    }
  }
  return t;
}
function describe(t, total) {
  const pct = (n) => t.cells ? ` (${Math.floor(n * 100 / t.cells)}%)` : "";
  let s = `<span data-count="members">${fmt(t.members)}</span> of ${fmt(total)} members`;
  if (PLAN) {
    s += ` · <span class="k-create" data-count="create">${fmt(t.create)}</span> to create` +
      ` · <span class="k-delete" data-count="delete">${fmt(t.delete)}</span> to delete` +
      ` · <span class="k-enroll" data-count="enroll">${fmt(t.enroll)}</span> to enrol`;
    if (!t.unknown)  // without the current state, "completed" would count only what the actions touch
      s += ` · completed <span data-count="now">${fmt(t.now)}</span>${pct(t.now)} now → ` +
        `<span data-count="after">${fmt(t.after)}</span>${pct(t.after)} after apply`;
  } else {
    s += ` · <span data-count="now">${fmt(t.now)}</span> of ${fmt(t.cells)} lessons completed${pct(t.now)}`;
  }
  return s;
}

// --- the virtualised grids ------------------------------------------------------------------------
const grids = courses.map((c) => {
  const box = document.querySelector(`[data-grid="${c.ci}"]`);
  const heads = c.lessons.map(([id, title], k) =>
    `<div class="lh" data-col="${k}" data-lesson="${id ?? ""}" title="${esc(title)} (lesson ${id ?? "?"})">` +
    `<span>${k + 1}. ${esc(title)}</span></div>`).join("");
  const width = `calc(var(--namew) + ${c.lessons.length} * var(--cell))`;
  box.innerHTML = `<div class="ghead" style="width:${width}"><div class="nh"><button type="button" data-sort ` +
    `title="sort by name; again to reverse">Member ↕</button></div>${heads}</div>` +
    `<div class="gbody" style="width:${width}"><div class="gwin" style="width:${width}"></div></div>`;
  const g = {c, box, head: box.querySelector(".ghead"), body: box.querySelector(".gbody"),
    win: box.querySelector(".gwin"), items: [], rows: [], drawn: [-1, -1]};
  box.addEventListener("scroll", () => schedule(g), {passive: true});
  box.querySelector("[data-sort]").addEventListener("click", () => {
    F.desc = F.sort === "name" ? !F.desc : false; F.sort = "name"; $("f-sort").value = "name"; refresh();
  });
  for (const h of box.querySelectorAll(".lh")) h.addEventListener("click", () => {
    const k = +h.dataset.col;
    F.course = c.ci; F.lesson = F.lesson === k && F.course === c.ci ? -1 : k; syncControls(); refresh();
  });
  box.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-who]");
    if (!b) return;
    const r = +b.dataset.who, row = c.rows[r];
    F.member = {coworker: row[1], ci: c.ci, r, name: row[2]}; refresh();
  });
  return g;
});
const pending = new Set();
function schedule(g) {
  if (!pending.size) requestAnimationFrame(() => { for (const p of pending) draw(p); pending.clear(); });
  pending.add(g);
}
function cellTitle(c, r, k, row) {
  const x = row[4][k];
  const what = c.known || x !== "." ? WORDS[x] : "no change (the current state is not in this plan)";
  let s = `${row[2]} · ${c.lessons[k][1]}: ${what}`;
  for (const i of c.acts[r]) {
    if (A[4 * i + 2] !== k) continue;
    const [kind, reason, spec, origin] = D.why[A[4 * i + 3]];
    s += `\n${kind} #${i + 1}: ${reason}`;
    if (notes.has(i)) s += ` — ${notes.get(i)}`;
    if (records.has(i)) {
      const [id, on] = records.get(i);
      s += ` (record #${id}, completed ${(on || "?").slice(0, 10)})`;
    }
    s += ` · spec ${spec}${origin ? ", " + origin : ""}`;
  }
  return s;
}
function rowHtml(c, item) {
  if (typeof item === "object")
    return `<div class="r g" role="row"><div class="n">${esc(item.group)} · ${fmt(item.n)}</div></div>`;
  const r = item, row = c.rows[r];
  const key = row[0] !== null ? "m" + row[0] : "c" + row[1];
  const who = row[0] !== null ? `member ${row[0]}` : `coworker ${row[1]}, enrolled by this apply`;
  let h = `<div class="r" role="row" data-key="${key}" data-row="${r}"><div class="n" title="${esc(row[2])} (${who})` +
    `${row[3].length ? " · " + esc(row[3].map((t) => D.teams[t]).join(", ")) : ""}">` +
    `<button type="button" data-who="${r}">${esc(row[2] || "(no name)")}</button>` +
    (row[5] ? `<span class="enrol" data-enrol>⊕ enrol</span>` : "") +
    `<span class="tm">${esc(row[3].map((t) => D.teams[t]).join(", "))}</span></div>`;
  const cells = row[4];
  for (let k = 0; k < cells.length; k++) {
    const x = cells[k], state = !c.known && x === "." ? "unknown" : STATE[x];
    h += `<div class="x ${state}" role="gridcell" data-col="${k}" data-state="${state}" ` +
      `title="${esc(cellTitle(c, r, k, row))}">${MARK[x]}</div>`;
  }
  return h + "</div>";
}
function draw(g, force) {
  const n = g.items.length, off = g.head.offsetHeight;
  const top = Math.max(0, g.box.scrollTop - off);
  const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
  const last = Math.min(n, Math.ceil((top + g.box.clientHeight) / ROW) + OVERSCAN);
  if (!force && first === g.drawn[0] && last === g.drawn[1]) return;
  g.drawn = [first, last];
  let h = "";
  for (let j = first; j < last; j++) h += rowHtml(g.c, g.items[j]);
  g.win.style.top = `${first * ROW}px`;
  g.win.innerHTML = h || (n ? "" : `<div class="empty">No member matches the filters.</div>`);
}

// --- the virtualised action table -------------------------------------------------------------------
const T = {box: $("atable"), list: new Int32Array(0), drawn: [-1, -1]};
if (T.box) {
  T.box.innerHTML = `<div class="arow h" role="row"><span>#</span><span>Action</span><span>Course</span>` +
    `<span>Member</span><span>Lesson</span><span>Why</span><span>Record</span><span>Spec</span><span>Where</span>` +
    `</div><div class="gbody"><div class="gwin"></div></div>`;
  T.body = T.box.querySelector(".gbody"); T.win = T.box.querySelector(".gwin"); T.head = T.box.querySelector(".arow.h");
  T.box.addEventListener("scroll", () => requestAnimationFrame(() => drawTable(false)), {passive: true});
}
function actionRow(i) {
  const c = courses[A[4 * i]], row = c.rows[A[4 * i + 1]], col = A[4 * i + 2];
  const [kind, reason, spec, origin] = D.why[A[4 * i + 3]];
  const why = reason + (notes.has(i) ? `: ${notes.get(i)}` : "");
  const rec = records.has(i) ? `#${records.get(i)[0]}, completed ${(records.get(i)[1] || "?").slice(0, 10)}` : "";
  const lesson = col >= 0 ? c.lessons[col][1] : "";
  const who = row[0] !== null ? `member ${row[0]}` : `coworker ${row[1]}`;
  const cells = [[i + 1, ""], [KIND_MARK[kind], `k-${kind}`], [c.title, ""], [row[2], "", `${row[2]} (${who})`],
    [lesson, ""], [why, ""], [rec, ""], [spec, ""], [origin, ""]];
  return `<div class="arow" role="row" data-action="${i}">` + cells.map(([v, cls, t]) =>
    `<span class="${cls}" title="${esc(t ?? v)}">${esc(v)}</span>`).join("") + "</div>";
}
function drawTable(force) {
  if (!T.box) return;
  const n = T.list.length, off = T.head.offsetHeight;
  const top = Math.max(0, T.box.scrollTop - off);
  const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
  const last = Math.min(n, Math.ceil((top + T.box.clientHeight) / ROW) + OVERSCAN);
  if (!force && first === T.drawn[0] && last === T.drawn[1]) return;
  T.drawn = [first, last];
  let h = "";
  for (let j = first; j < last; j++) h += actionRow(T.list[j]);
  T.win.style.top = `${first * ROW}px`;
  T.win.innerHTML = h || (n ? "" : `<div class="empty">No action matches the filters.</div>`);
}

// --- controls ---------------------------------------------------------------------------------------
function option(value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = vis(text);
  return o;
}
for (const c of courses) $("f-course").append(option(c.ci, c.title || `course ${c.id}`));
D.teams.forEach((t, k) => $("f-team").append(option(k, t)));
function syncControls() {
  $("f-course").value = F.course; $("f-action").value = F.action; $("f-team").value = F.team;
  const lesson = $("f-lesson");
  lesson.replaceChildren(option(-1, "all lessons"));
  if (F.course >= 0) courses[F.course].lessons.forEach(([, t], k) => lesson.append(option(k, `${k + 1}. ${t}`)));
  lesson.disabled = F.course < 0; lesson.value = F.lesson;
  $("f-sort").value = F.sort; $("f-group").checked = F.group;
  if ($("f-search").value.trim().toLowerCase() !== F.search) $("f-search").value = F.search;
}
$("f-course").addEventListener("change", (e) => {
  F.course = +e.target.value; F.lesson = -1; syncControls(); refresh();
});
$("f-action").addEventListener("change", (e) => { F.action = e.target.value; refresh(); });
$("f-team").addEventListener("change", (e) => { F.team = +e.target.value; refresh(); });
$("f-lesson").addEventListener("change", (e) => { F.lesson = +e.target.value; refresh(); });
$("f-sort").addEventListener("change", (e) => { F.sort = e.target.value; F.desc = false; refresh(); });
$("f-group").addEventListener("change", (e) => { F.group = e.target.checked; refresh(); });
let typing = 0;
$("f-search").addEventListener("input", (e) => {
  clearTimeout(typing);
  typing = setTimeout(() => { F.search = e.target.value.trim().toLowerCase(); refresh(); }, 150);
});
$("f-reset").addEventListener("click", () => {
  Object.assign(F, {course: -1, action: "all", team: -1, lesson: -1, search: "", member: null});
  $("f-search").value = ""; syncControls(); refresh();
});
for (const a of document.querySelectorAll("[data-course-link]")) a.addEventListener("click", () => {
  F.course = +a.dataset.courseLink; F.lesson = -1; syncControls(); refresh();
});

function refresh() {
  const chip = $("f-member");
  if (F.member) {
    chip.hidden = false; chip.className = "chip";
    chip.innerHTML = `Member: ${esc(F.member.name)} ` +
      `<button type="button" aria-label="clear the member filter">✕</button>`;
    chip.querySelector("button").onclick = () => { F.member = null; refresh(); };
  } else { chip.hidden = true; chip.textContent = ""; }
  const total = {members: 0, create: 0, delete: 0, enroll: 0, now: 0, after: 0, cells: 0, unknown: false};
  let all = 0;
  const mark = new Uint8Array(nActs);
  for (const g of grids) {
    const c = g.c, on = F.course < 0 || F.course === c.ci;
    g.box.closest("section").hidden = !on;
    if (!on) continue;
    const v = view(c);
    g.items = v.items; g.rows = v.rows;
    for (const h of g.box.querySelectorAll(".lh"))
      h.classList.toggle("on", F.course === c.ci && +h.dataset.col === F.lesson);
    g.body.style.height = `${v.items.length * ROW}px`;
    const t = tally(c, v.rows);
    for (const key in total) total[key] = key === "unknown" ? total[key] || t[key] : total[key] + t[key];
    all += c.rows.length;
    document.querySelector(`[data-counts="${c.ci}"]`).innerHTML = "Showing " + describe(t, c.rows.length);
    for (const r of v.rows) for (const i of c.acts[r]) if (actPasses(i)) mark[i] = 1;
    draw(g, true);
  }
  $("counts").innerHTML = "Showing " + describe(total, all) +
    (F.course < 0 ? ` in ${fmt(courses.length)} course${courses.length === 1 ? "" : "s"}` : "");
  let n = 0;
  for (let i = 0; i < nActs; i++) n += mark[i];
  const list = new Int32Array(n);
  for (let i = 0, j = 0; i < nActs; i++) if (mark[i]) list[j++] = i;
  T.list = list;
  if (T.box) {
    $("actions-count").textContent = `${fmt(n)} of ${fmt(nActs)}`;
    T.body.style.height = `${n * ROW}px`;
    drawTable(true);
  }
}
syncControls();
refresh();
window.reconcilerReady = performance.now();
document.body.dataset.ready = "1";
})();
"""
