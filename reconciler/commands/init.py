"""`reconciler init`: a working repository layout.

The layout: `completions/` with one example spec and the schemas its first line points at, `reconciler.yaml`
with the documented limits and safety budgets, the three GitHub workflows (through action.yml), and the
pre-commit configuration. The templates live in `scaffold/`; the example workflows in
examples/github-actions/ are the same files.
"""

from __future__ import annotations

import json
import re
from importlib import metadata, resources
from pathlib import Path

from reconciler import __version__
from reconciler.commands import Console, Outcome
from reconciler.errors import UsageError
from reconciler.schemas import FOLDER as SCHEMA_FOLDER
from reconciler.schemas import write_schemas

DISTRIBUTION = "nexudus-reconciler"  # the name on the package index (pyproject.toml); `reconciler` is another's
SPEC_FOLDER = "completions"
# What the templates say where the reconciler repository belongs: `init --action` (or the GitHub commit this
# copy was installed from) replaces it.
PLACEHOLDER_REPOSITORY = "your-org/reconciler"
PLACEHOLDER_REF = f"v{__version__}"
LAYOUT = {  # file written → template in scaffold/
    "reconciler.yaml": "reconciler.yaml",
    f"{SPEC_FOLDER}/onboarding.yaml": "onboarding.yaml",
    ".github/workflows/reconciler-plan.yml": "plan.yml",
    ".github/workflows/reconciler-apply.yml": "apply.yml",
    ".github/workflows/reconciler-drift.yml": "drift.yml",
    ".pre-commit-config.yaml": "pre-commit-config.yaml",
}
_ACTION = re.compile(r"^(?P<repository>[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+)@(?P<ref>[A-Za-z0-9._/-]+)$")
_GITHUB = re.compile(r"^(?:git\+)?(?:https://|ssh://git@|git@)github\.com[/:](?P<repository>[\w.-]+/[\w.-]+?)"
                     r"(?:\.git)?/?$")


def init(root: Path, *, action: str | None = None, force: bool = False, console: Console) -> Outcome:
    """Write the layout under `root` (made if missing); refuses to overwrite unless `force`. With `--action` over a
    layout already there (and no `force`), only the action's reference is put in place of the placeholder in the
    files that hold it, and missing files are written: specs and settings are never touched."""
    given = action
    action = action or installed_from()
    if action is not None and not _ACTION.match(action):
        raise UsageError(f"--action {action}: expected OWNER/REPO@REF, for example acme/reconciler@v{__version__} "
                         "or acme/reconciler@<full commit SHA>")
    clashes = [root / name for name in LAYOUT if (root / name).exists()]
    if clashes and not force:
        if given is not None:
            return _pin(root, given, console)
        shown = ", ".join(str(p) for p in clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
        raise UsageError(f"{shown} already exist(s); pass --force to overwrite them all (your specs and settings too), "
                         "or --action OWNER/REPO@REF to put the action's reference into the existing files only")
    written = []
    for name, template in LAYOUT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_template(template, action), encoding="utf-8")
        written.append(path)
    written += write_schemas(root / SPEC_FOLDER / SCHEMA_FOLDER)
    ignore = root / ".gitignore"
    if _ignore_state(ignore):
        written.append(ignore)
    for path in written:
        print(path, file=console.stdout)
    where = "" if root == Path(".") else f"cd {root} && "
    print(f"\nNext: {where}reconciler validate; then edit {SPEC_FOLDER}/onboarding.yaml to name your courses and "
          "people.", file=console.stdout)
    print("CI: see docs/ci.md: the secrets of a read-only account (plan, drift), an environment `nexudus` "
          "holding the apply account's, and `pre-commit install`.", file=console.stdout)
    if action is None:
        again = "" if root == Path(".") else f" {root}"
        print(f"Edit the workflows and .pre-commit-config.yaml: replace {PLACEHOLDER_REPOSITORY}@{PLACEHOLDER_REF} "
              "with the reconciler repository you install from, pinned to a reviewed tag or commit "
              f"(or run `reconciler init{again} --action OWNER/REPO@REF`: it puts the reference in, and touches "
              "nothing else).", file=console.stdout)
    return Outcome.OK


def _pin(root: Path, action: str, console: Console) -> Outcome:
    """The action's reference put into the layout already under `root`, in place of the placeholder; the files
    missing written; every other file left as it is (a spec, reconciler.yaml, a workflow already pinned)."""
    changed: list[str] = []
    kept: list[str] = []
    for name, template in LAYOUT.items():
        path = root / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_template(template, action), encoding="utf-8")
            changed.append(f"{path} (written)")
            continue
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        pinned = put_action(text, action)
        if pinned != text:
            path.write_text(pinned, encoding="utf-8")
            changed.append(f"{path} (the reference set to {action})")
        else:
            kept.append(str(path))
    if not (root / SPEC_FOLDER / SCHEMA_FOLDER).exists():
        changed += [f"{path} (written)" for path in write_schemas(root / SPEC_FOLDER / SCHEMA_FOLDER)]
    if _ignore_state(root / ".gitignore"):
        changed.append(f"{root / '.gitignore'} (.reconciler/ added)")
    for line in changed:
        print(line, file=console.stdout)
    if kept:
        print(f"left as they are: {', '.join(kept)}", file=console.stdout)
    if not changed:
        console.warn(f"nothing changed: no file holds the placeholder {PLACEHOLDER_REPOSITORY}@{PLACEHOLDER_REF} "
                     "(a reference already set is changed by editing its `uses:` or `rev:` line)")
    return Outcome.OK


def render_template(template: str, action: str | None) -> str:
    """A scaffold file, with the reconciler repository and ref put in when they are known."""
    text = resources.files("reconciler").joinpath("scaffold").joinpath(template).read_text(encoding="utf-8")
    return put_action(text, action) if action else text


def put_action(text: str, action: str) -> str:
    """`text` with the placeholder's repository and ref (a workflow's `uses:`, pre-commit's `repo:` and `rev:`)
    replaced by those of `action` (OWNER/REPO@REF)."""
    found = _ACTION.match(action)
    if found is None:
        return text
    repository, ref = found["repository"], found["ref"]
    text = text.replace(f"{PLACEHOLDER_REPOSITORY}@{PLACEHOLDER_REF}", f"{repository}@{ref}")
    return text.replace(f"https://github.com/{PLACEHOLDER_REPOSITORY}\n    rev: {PLACEHOLDER_REF}\n",
                        f"https://github.com/{repository}\n    rev: {ref}\n")


def installed_from() -> str | None:
    """OWNER/REPO@COMMIT when this copy was pip-installed from a GitHub repository (PEP 610's direct_url.json)."""
    try:
        raw = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    try:
        data = json.loads(raw or "")
    except (ValueError, RecursionError):
        return None
    vcs = data.get("vcs_info") if isinstance(data, dict) else None
    found = _GITHUB.match(str(data.get("url", ""))) if isinstance(data, dict) else None
    if not (isinstance(vcs, dict) and vcs.get("vcs") == "git" and vcs.get("commit_id") and found):
        return None
    return f"{found['repository']}@{vcs['commit_id']}"


def _ignore_state(path: Path) -> bool:
    """Keep `.reconciler/` (the local store, locks, journals) out of git; True if .gitignore changed."""
    line = ".reconciler/"
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    if line in existing.splitlines():
        return False
    prefix = "" if not existing or existing.endswith("\n") else "\n"
    path.write_text(f"{existing}{prefix}# reconciler's local state: the emulator store, locks, journals\n{line}\n",
                    encoding="utf-8")
    return True
