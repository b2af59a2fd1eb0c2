"""`reconciler validate`: schema and meaning checks, and (unless offline) every name resolved against the target."""

from __future__ import annotations

from pathlib import Path

from reconciler.commands import Console, Outcome
from reconciler.config import load_config
from reconciler.errors import ConfigError, SpecError, TransportError
from reconciler.foreign_yaml import load_spec_set


def validate(paths: list[Path], *, offline: bool, config_file: Path | None, api: str | None,
             console: Console) -> Outcome:
    config = load_config(config_flag=config_file, api_flag=api, paths=paths)
    # Files named one by one (the pre-commit hook names every changed YAML) may hold no spec at all.
    # Every problem at once: the names of the specs without problems are resolved too, and said with the rest.
    specs = load_spec_set(paths or [Path(".")], [config.seed] if config.seed else [],
                          require_any=not paths or any(p.is_dir() for p in paths), keep_going=True)
    count = len(specs.completions) + len(specs.migrations)
    files = len(specs.files)
    summary = f"{count} spec{'s' if count != 1 else ''} in {files} file{'s' if files != 1 else ''}"
    if offline:
        if specs.problems:
            raise SpecError(list(specs.problems))
        print(f"valid: {summary} (offline: names not resolved)", file=console.stdout)
        return Outcome.OK
    # The target's side is imported only now: offline validation never loads the HTTP client.
    from reconciler.planning import check_migrations
    from reconciler.resolve import resolve
    from reconciler.state import StateReader
    from reconciler.target import connect

    unchecked = ""
    try:
        with connect(config) as target:
            reader = StateReader(target.client)
            catalog = reader.catalog(specs)
            try:
                resolution = resolve(specs, catalog)
            except SpecError as e:  # a place the specs' own checks found a problem at is said once, by them
                placed = {(p.path, p.line, p.column) for p in specs.problems}
                raise SpecError([*specs.problems, *(p for p in e.problems
                                                    if (p.path, p.line, p.column) not in placed)]) from None
            try:  # what plan finds only against the live completions: a migration's members and lessons
                migrated = check_migrations(reader, resolution, catalog) if resolution.migrations else None
            except TransportError as e:
                migrated, unchecked = None, str(e)
    except (ConfigError, TransportError) as e:
        if specs.problems:
            raise SpecError(list(specs.problems)) from None
        console.note(f"note: names not resolved: {e}")
        print(f"valid: {summary} (offline: names not resolved)", file=console.stdout)
        return Outcome.OK
    for warning in resolution.warnings:
        console.warn(str(warning))
    if migrated is not None:
        for text in migrated.warnings:
            console.warn(text)
        if migrated.partial:
            console.warn("the migrations were checked against an incomplete read: " + "; ".join(migrated.partial))
    problems = [*specs.problems, *(migrated.errors if migrated is not None else [])]
    if problems:
        raise SpecError(problems)
    if unchecked:
        console.note(f"note: migrations not checked against the live completions: {unchecked}")
    print(f"valid: {summary}; every name resolved against {target.description}", file=console.stdout)
    return Outcome.OK
