"""The spec loader and resolver: exact resolution, discovery rules, config precedence, and fuzzing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.client import NexudusClient
from reconciler.config import DOCUMENTED_LIMITS, ClientLimits, Credentials, load_config
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import Store
from reconciler.errors import ConfigError, ConfigFileError, Problem, SpecError, UsageError
from reconciler.model import CompletionsSpec, LessonSet, Origin
from reconciler.resolve import resolve
from reconciler.spec import discover, load_specs
from reconciler.state import StateReader
from reconciler.yamlfile import Document, LoadError, load_text

from .conftest import API_SEED, EXAMPLES, run_cli

HEAD = "apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: s1}\n"


def catalog_client() -> tuple[NexudusClient, httpx.Client]:
    store = Store()
    load_seed(API_SEED, store)
    http = httpx.Client(transport=InProcessTransport(EmulatorApp(store, Settings(limits=Limits.off(),
                                                                                 require_auth=False))))
    return NexudusClient("http://local", http), http


def test_titles_resolve_exactly_never_by_substring(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(HEAD + "course: Onboarding\nmembers:\n"
                                     "  - {email: AL@example.com, completed: [Safety]}\n"
                                     "  - {email: sal@example.com, completed: {through: Safety briefing}}\n")
    specs = load_specs([tmp_path])
    client, http = catalog_client()
    with http:
        result = resolve(specs, StateReader(client).catalog(specs))
    (resolved,) = result.completions
    assert resolved.course.id == 101  # not 102, "Onboarding 2026"
    assert sorted(resolved.desired) == [(50001, 2001), (50002, 2001), (50002, 2002)]
    origins = resolved.desired[(50002, 2002)]
    assert [(o.path.endswith("s.yaml"), o.line) for o in origins] == [(True, 7)]


def test_team_rules_union_with_personal_rules_and_keep_every_origin(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(HEAD + "course: Onboarding\nmembers:\n"
                                     "  - {team: Sales, completed: [Welcome]}\n"
                                     "  - {email: sal@example.com, completed: [Welcome, Safety]}\n")
    specs = load_specs([tmp_path])
    client, http = catalog_client()
    with http:
        (resolved,) = resolve(specs, StateReader(client).catalog(specs)).completions
    assert sorted(resolved.desired) == [(50001, 2003), (50002, 2001), (50002, 2003)]
    assert [o.line for o in resolved.desired[(50002, 2003)]] == [6, 7]
    assert resolved.named_members == frozenset({50001, 50002})


def test_a_team_with_no_enrolled_member_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reconciler.yaml").write_text(f"seed: {API_SEED}\n")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "s.yaml").write_text(HEAD + "course: Onboarding\nmembers:\n"
                                               "  - {team: Salse, completed: all}\n")
    assert main(["validate", "specs"]) == 0
    captured = capsys.readouterr()
    assert "warning: specs/s.yaml:6:12: no member of 'Onboarding' is in team 'Salse'; did you mean 'Sales'?" \
        in captured.err
    assert "every name resolved against local emulator" in captured.out


def test_validate_exit_codes_and_every_problem_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text(HEAD + "course: X\nmode: owner\n")
    (tmp_path / "b.yaml").write_text("apiVersion: reconciler/v1\nkind: Nope\n")
    assert main(["validate", "--offline"]) == 1
    err = capsys.readouterr().err
    assert "a.yaml:5:7: mode must be one of" in err and "b.yaml:2:7: unknown kind 'Nope'" in err
    assert "Traceback" not in err


def test_validate_passes_on_the_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(EXAMPLES)]) == 0
    assert "every name resolved" in capsys.readouterr().out


def test_discovery_skips_config_seed_and_hidden_folders(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yml", "reconciler.yaml", "seed.yaml", ".hidden/c.yaml", "sub/d.yaml", "e.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x: 1\n")
    found = discover([tmp_path], exclude=[tmp_path / "seed.yaml"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in found) == ["a.yaml", "b.yml", "sub/d.yaml"]


def test_a_missing_path_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file or folder"):
        load_specs([tmp_path / "nope"])


def test_a_link_to_no_file_is_a_spec_error_not_a_spec_that_vanishes(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In authoritative mode a spec that silently drops out of the set changes what is deleted: a dangling or
    looping *.yaml link in a spec folder is said, at its place, and nothing is planned."""
    shared = demo.parent / "shared"  # outside the spec folder, as a shared checkout would be
    shared.mkdir()
    (demo / "later.yaml").symlink_to("../shared/later.yaml")
    (demo / "loop.yaml").symlink_to("loop.yaml")
    code, out, err = run_cli(capsys, "plan")
    assert code == 1 and out == ""
    assert "later.yaml:1:1: cannot read file: a symbolic link to ../shared/later.yaml, which does not exist" in err
    assert "loop.yaml:1:1: cannot read file: a symbolic link that loops" in err
    code, _, err = run_cli(capsys, "validate", "later.yaml")
    assert code == 1 and "later.yaml:1:1: a symbolic link to ../shared/later.yaml, which does not exist" in err
    (demo / "loop.yaml").unlink()
    (shared / "later.yaml").write_text(
        (demo / "onboarding.yaml").read_text().replace("name: onboarding-101", "name: later"))
    code, out, err = run_cli(capsys, "validate")  # a link to a file is a spec like any other
    assert code == 0 and err == "" and "valid: 5 specs" in out


def test_a_spec_set_with_no_spec_is_a_usage_error_naming_every_path(tmp_path: Path) -> None:
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "workflow.yml").write_text("name: CI\non: [push]\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as caught:
        load_specs([tmp_path / "ci", tmp_path / "empty"])
    assert str(caught.value) == (f"no spec found under {str(tmp_path / 'ci')!r}, {str(tmp_path / 'empty')!r}: "
                                 "a spec is a YAML document with apiVersion: reconciler/v1 and kind: Completions "
                                 "or Migration")
    tolerated = load_specs([tmp_path / "ci", tmp_path / "empty"], require_any=False)
    assert (tolerated.completions, tolerated.migrations) == ((), ())


def test_problems_come_before_emptiness(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(HEAD + "mode: owned\n")  # a spec, but a broken one: say what is wrong
    with pytest.raises(SpecError, match="missing required key 'course'"):
        load_specs([tmp_path])


def test_validate_with_no_spec_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "completions").mkdir()
    assert main(["validate", "--offline", "completions"]) == 1
    err = capsys.readouterr().err
    assert "no spec found under 'completions'" in err and "Traceback" not in err


def test_oversized_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reconciler.yamlfile as yamlfile

    monkeypatch.setattr(yamlfile, "MAX_FILE_BYTES", 100)
    (tmp_path / "big.yaml").write_text(HEAD + "course: X\n" + "# padding\n" * 20)
    with pytest.raises(SpecError, match=r"big.yaml:1:1: file is \d+ bytes; the limit is 100"):
        load_specs([tmp_path])


# --- configuration -------------------------------------------------------------------------------

def test_config_precedence(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "reconciler.yaml").write_text("target: https://from-path.example\n")
    config = load_config(paths=[tmp_path / "specs"], env={}, cwd=tmp_path)
    assert config.target == "https://from-path.example" and config.limits == DOCUMENTED_LIMITS
    (tmp_path / "reconciler.yaml").write_text("target: https://from-cwd.example/\nlimits: {writes_per_minute: 10}\n")
    config = load_config(paths=[tmp_path / "specs"], env={}, cwd=tmp_path)
    assert config.target == "https://from-cwd.example" and config.limits.writes_per_minute == 10
    config = load_config(paths=[], env={"NEXUDUS_API_URL": "https://env.example"}, cwd=tmp_path)
    assert (config.target, config.target_origin) == ("https://env.example", "NEXUDUS_API_URL")
    config = load_config(api_flag="local", env={"NEXUDUS_API_URL": "https://env.example"}, cwd=tmp_path)
    assert config.is_local and config.limits == ClientLimits(writes_per_minute=10)  # local: only what is set
    other = tmp_path / "other.yaml"
    other.write_text("target: https://flag.example\n")
    assert load_config(config_flag=other, env={}, cwd=tmp_path).target == "https://flag.example"
    assert load_config(env={}, cwd=tmp_path / "specs").target == "https://from-path.example"  # cwd's own file


def test_an_empty_api_flag_is_an_error_not_the_next_target(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`--api "$URL"` with URL unset would otherwise plan (or apply) against the file's target or the local one."""
    (tmp_path / "reconciler.yaml").write_text("target: https://from-file.example\n")
    for empty in ("", "  "):
        with pytest.raises(ConfigError, match="--api is empty"):
            load_config(api_flag=empty, env={"NEXUDUS_API_URL": "https://env.example"}, cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "--api", "", "plan")
    assert (code, out) == (1, "") and err.startswith("error: --api is empty")


def test_default_target_is_local(tmp_path: Path) -> None:
    config = load_config(env={}, cwd=tmp_path)
    assert config.is_local and config.target_origin == "the default" and config.seed is None


SECRET = "pw-s3cret-71"


@pytest.mark.parametrize(("target", "problem"), [
    ("ftp://x", "must be 'local' or an http(s) URL, not 'ftp://x'"),
    (f"https://ops:{SECRET}@x.example", "must not carry credentials; use NEXUDUS_USERNAME/PASSWORD"),
], ids=["not-http", "credentials"])
@pytest.mark.parametrize("source", ["file", "env", "flag"])
def test_a_bad_target_is_refused_naming_where_it_came_from(tmp_path: Path, target: str, problem: str,
                                                          source: str) -> None:
    env: dict[str, str] = {}
    flag: str | None = None
    if source == "file":
        (tmp_path / "reconciler.yaml").write_text(f"target: {target}\n")
        origin = str(tmp_path / "reconciler.yaml")
    elif source == "env":
        env["NEXUDUS_API_URL"] = target
        origin = "NEXUDUS_API_URL"
    else:
        flag, origin = target, "--api"
    with pytest.raises(ConfigError) as caught:
        load_config(api_flag=flag, env=env, cwd=tmp_path)
    assert str(caught.value) == f"the target from {origin} {problem}"
    assert SECRET not in str(caught.value)


def test_a_target_with_a_password_is_refused_by_the_cli_without_echoing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEXUDUS_API_URL", f"https://ops:{SECRET}@x.example")
    (tmp_path / "s.yaml").write_text(HEAD + "course: Onboarding\nmembers: []\n")
    code, out, err = run_cli(capsys, "plan", "s.yaml")
    assert code == 1 and out == ""
    assert err == "error: the target from NEXUDUS_API_URL must not carry credentials; use NEXUDUS_USERNAME/PASSWORD\n"


def test_config_schema_errors_name_the_place(tmp_path: Path) -> None:
    (tmp_path / "reconciler.yaml").write_text("target: local\nsafety: {max_delete_fraction: 2}\ntoken: abc\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config(env={}, cwd=tmp_path)
    text = str(caught.value)
    assert "reconciler.yaml:2:31: safety.max_delete_fraction" in text
    assert "reconciler.yaml:3:1: unknown key 'token'" in text


def test_nan_and_infinity_are_refused_where_a_bound_would_let_them_pass(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`max_delete_fraction: .nan` passed the schema's maximum (every comparison with NaN is false) and turned the
    delete budget off: a plan deleting every completion in scope applied. NaN and infinity are refused, at their
    place, in the configuration and in specs; the plan they would have made is never made."""
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nsafety: {max_delete_fraction: .nan}\n")
    (demo / "onboarding.yaml").unlink()  # its course, wiped by the spec below instead
    (demo / "wipe.yaml").write_text(HEAD.replace("{name: s1}", "{name: wipe}") + "course: Onboarding 101\n"
                                    "mode: authoritative\nmembers:\n  - {team: Sales, completed: []}\n"
                                    "  - {team: Design, completed: []}\n")
    code, out, err = run_cli(capsys, "apply", "--yes")
    assert code == 1 and out == ""
    assert "reconciler.yaml:3:31: '.nan' is not a value these files take" in err
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\n")
    (demo / "wipe.yaml").unlink()
    (demo / "odd.yaml").write_text(HEAD.replace("{name: s1}", "{name: odd}") + "course: Onboarding 101\nmembers:\n"
                                   "  - {email: alice@example.com, completed: [-.Inf]}\n")
    code, out, err = run_cli(capsys, "validate")
    assert code == 1 and "odd.yaml:6:44: '-.Inf' is not a value these files take" in err
    assert err.count("odd.yaml:6:44") == 1  # said once, not again as a type error


def test_credentials_come_from_the_environment_and_never_show_in_repr() -> None:
    creds = Credentials.from_env({"NEXUDUS_USERNAME": "ops@example.com", "NEXUDUS_PASSWORD": "hunter2-secret",
                                  "NEXUDUS_TOKEN": "tok-secret-123"})
    assert creds.present and "hunter2-secret" not in repr(creds) and "tok-secret-123" not in repr(creds)
    assert sorted(creds.secrets()) == ["hunter2-secret", "tok-secret-123"]


# --- fuzzing: nothing but SpecError, and always with a place ---------------------------------------

yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["apiVersion: reconciler/v1", "kind: Completions", "kind: Migration",
                              "metadata: {name: x}", "course: A", "members:", "  - email: a@b.co",
                              "    completed: all", "  - {team: T, completed: [A, {id: 1}]}", "revoke:",
                              "lessons: {A: B}", "from: {course: A}", "to: {course: B}", "mode: owned",
                              "&a [1, *a]", "- *x", "\t- tab", "key: [unclosed", "? complex", "!!binary QUJD",
                              "{a: 1, a: 2}", "'", "%YAML 1.1", "---", "..."]), max_size=12).map("\n".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=yaml_text)
def test_the_loader_only_ever_raises_spec_errors_with_places(tmp_path: Path, content: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content.encode("utf-8", errors="replace"))
    try:
        load_specs([path], require_any=False)
    except SpecError as e:
        assert e.problems
        for problem in e.problems:
            assert isinstance(problem, Problem) and problem.line >= 1 and problem.column >= 1
            assert problem.path.endswith("fuzz.yaml") and problem.message


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=200))
def test_raw_bytes_never_escape_as_anything_but_load_errors(raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        load_text(text, "bytes.yaml")
    except LoadError as e:
        assert e.problem.line >= 1


def test_a_large_honest_file_is_not_mistaken_for_an_alias_bomb(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The alias budget lowered to 2,000 nodes (it is 500,000): 1,000 members are about 4,000 nodes, twice the
    # budget, and no alias at all, so nothing is refused; the same number of nodes reached through aliases is.
    import reconciler.yamlfile as yamlfile

    monkeypatch.setattr(yamlfile, "MAX_ALIASED_NODES", 2_000)
    members = "".join(f"  - {{email: m{n}@example.com, completed: {{through: Welcome}}}}\n" for n in range(1_000))
    (tmp_path / "big.yaml").write_text(HEAD + "course: X\nmembers:\n" + members)
    specs = load_specs([tmp_path])
    (spec,) = specs.completions
    assert len(spec.members) == 1_000
    last = spec.members[-1]
    assert last.member.value == "m999@example.com" and last.member.origin.line == HEAD.count("\n") + 2 + 1_000
    (tmp_path / "big.yaml").write_text(HEAD + "course: X\nmembers: &m\n" + members + "revoke: [*m, *m, *m]\n")
    with pytest.raises(SpecError, match=r"big.yaml:\d+:\d+: aliases expand to more than 2,000 nodes; refused"):
        load_specs([tmp_path])


def test_plain_member_shapes_are_ones_the_schema_accepts() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from reconciler.schemas import validator
    from reconciler.spec import plain_member, plain_revocation

    lesson = st.one_of(st.text(max_size=3), st.fixed_dictionaries({"id": st.integers(-2, 3)}),
                       st.integers(0, 2), st.none())
    selector = st.sampled_from(["email", "coworker_id", "course_member_id", "team", "other"])
    value = st.one_of(st.text(max_size=3), st.integers(-1, 2), st.booleans(), st.floats(0, 2))
    completed = st.one_of(st.just("all"), st.text(max_size=3), st.lists(lesson, max_size=3),
                          st.fixed_dictionaries({"through": lesson}), st.dictionaries(st.text(max_size=2), lesson))
    entry = st.dictionaries(selector, value, max_size=2).flatmap(
        lambda chosen: st.fixed_dictionaries({**{k: st.just(v) for k, v in chosen.items()}, "completed": completed}))
    revocation = st.dictionaries(selector, value, max_size=2).flatmap(
        lambda chosen: st.fixed_dictionaries({**{k: st.just(v) for k, v in chosen.items()},
                                              "lessons": st.one_of(st.just("all"), st.lists(lesson, max_size=2))},
                                             optional={"reason": st.one_of(st.text(max_size=2), st.integers())}))
    schema = validator("completions")

    def accepted(field: str, item: object) -> bool:
        document = {"apiVersion": "reconciler/v1", "kind": "Completions", "metadata": {"name": "x"},
                    "course": "C", field: [item]}
        return schema.is_valid(document)

    @settings(max_examples=400, deadline=None)
    @given(entry, revocation)
    def check(member: dict[str, object], revoke: dict[str, object]) -> None:
        if plain_member(member):
            assert accepted("members", member), member
        if plain_revocation(revoke):
            assert accepted("revoke", revoke), revoke

    check()


def loaded(tmp_path: Path, text: str) -> tuple[Path, CompletionsSpec, Document]:
    """A spec file of `text`: its path, the one spec it loads to, and its document (the places it gives)."""
    from reconciler.yamlfile import load_file

    path = tmp_path / "s.yaml"
    path.write_text(text)
    (spec,) = load_specs([path]).completions
    (doc,), _ = load_file(path, str(path))
    return path, spec, doc


def test_every_origin_is_the_place_the_document_gives(tmp_path: Path) -> None:
    """The model's origins are found by stepping through the member list; each is the place the document itself
    gives for that path, for every shape of member and lesson set (merged and aliased entries included)."""
    text = (HEAD + "course: {id: 4}\nmode: additive\n"
            "members:\n  - {email: a@b.co, completed: all}\n  - {team: ' Ops ', completed: &l [' A ', {id: 2}]}\n"
            "  - coworker_id: 7\n    completed: &t {through: '  Lesson 3'}\n  - {course_member_id: 9, completed: *l}\n"
            "  - {email: ' Shared@Example.com ', completed: {<<: *t}}\n"
            "  - {email: c@d.co, completed: {through: {id: 5}}}\n"
            "revoke:\n  - {email: e@f.co, lessons: [C], reason: left}\n  - {team: Sales, lessons: all}\n")
    path, spec, doc = loaded(tmp_path, text)

    def origin(at: tuple[Any, ...]) -> Origin:
        return Origin(str(path), *doc.place(at))

    def lessons(lesson_set: LessonSet, at: tuple[Any, ...]) -> None:
        assert lesson_set.origin == origin(at)
        parts = [("through",)] if lesson_set.kind == "through" else [(i,) for i in range(len(lesson_set.lessons))]
        assert [ref.origin for ref in lesson_set.lessons] == [origin((*at, *part)) for part in parts]

    assert len(spec.members) == 6 and len(spec.revocations) == 2
    for i, rule in enumerate(spec.members):
        assert rule.member.origin == origin(("members", i, rule.member.by))
        lessons(rule.completed, ("members", i, "completed"))
    for i, revocation in enumerate(spec.revocations):
        assert revocation.member.origin == origin(("revoke", i, revocation.member.by))
        lessons(revocation.lessons, ("revoke", i, "lessons"))
    assert [rule.member.value for rule in spec.members] == ["a@b.co", "Ops", 7, 9, "Shared@Example.com", "c@d.co"]
    assert [[ref.title or ref.id for ref in rule.completed.lessons] for rule in spec.members] == \
        [[], ["A", 2], ["Lesson 3"], ["A", 2], ["Lesson 3"], [5]]
    assert spec.origin == origin(("metadata", "name")) and spec.mode_origin == origin(("mode",))


def test_a_list_of_titles_gives_each_title_the_place_the_document_gives(tmp_path: Path) -> None:
    """A list of titles only holds their places, not a Ref each (`TitleRefs`): each Ref it gives has the very
    place, title and equality a Ref made at load has, in flow and block lists, through an alias, a merge and
    a line past 65,535."""
    from reconciler.model import Ref, TitleRefs

    text = (HEAD + "course: C\nmembers:\n  - {email: a@b.co, completed: &l [' Lesson 1 ', Lesson 2,   Lesson 3]}\n"
            "  - email: b@b.co\n    completed:\n      - Lesson 2\n      -   'Lesson 3'\n"
            "  - {email: c@b.co, completed: *l}\n  - {email: d@b.co, completed: [Lesson 4]}\n"
            "  - {email: e@b.co, <<: {completed: [Lesson 4]}}\n" + "  - {email: f@b.co, completed: []}\n" * 70_000 +
            "  - {email: g@b.co, completed: [Lesson 9, Lesson 1]}\n"
            "revoke:\n  - {email: f@b.co, lessons: [Lesson 2], reason: left}\n")
    path, spec, doc = loaded(tmp_path, text)
    sets = [*(r.completed for r in spec.members if r.completed.lessons), spec.revocations[0].lessons]
    at = [*(("members", i, "completed") for i, r in enumerate(spec.members) if r.completed.lessons),
          ("revoke", 0, "lessons")]
    assert [[ref.title for ref in s.lessons] for s in sets] == [
        ["Lesson 1", "Lesson 2", "Lesson 3"], ["Lesson 2", "Lesson 3"], ["Lesson 1", "Lesson 2", "Lesson 3"],
        ["Lesson 4"], ["Lesson 4"], ["Lesson 9", "Lesson 1"], ["Lesson 2"]]
    for lesson_set, where in zip(sets, at, strict=True):
        refs = lesson_set.lessons
        assert isinstance(refs, TitleRefs)
        made = tuple(Ref(Origin(str(path), *doc.place((*where, i))), title=ref.title) for i, ref in enumerate(refs))
        assert tuple(refs) == made and refs == made and made == refs and hash(refs) == hash(made)
        assert refs[-1] == made[-1] and refs[:1] == made[:1] and list(reversed(refs)) == list(reversed(made))
    assert sets[-2].lessons[0].origin.line > 70_000  # a line past 16 bits
    assert LessonSet("list", sets[0].origin, tuple(sets[0].lessons)) == sets[0]


def test_a_title_not_found_in_a_list_is_reported_at_its_place_for_each_member(tmp_path: Path) -> None:
    from reconciler.model import Catalog, Course, Lesson

    (tmp_path / "s.yaml").write_text(HEAD + "course: C\nmembers:\n"
                                     "  - {email: a@b.co, completed: [Lesson 1, Lesson 7]}\n"
                                     "  - {email: b@b.co, completed: [Lesson 1,    Lesson 7]}\n")
    specs = load_specs([tmp_path / "s.yaml"])
    catalog = Catalog()
    catalog.courses[1] = Course(1, "C")
    catalog.lessons[11] = Lesson(11, 1, "Lesson 1", 1)
    with pytest.raises(SpecError) as raised:
        resolve(specs, catalog)
    places = [(p.line, p.column) for p in raised.value.problems if "no lesson 'Lesson 7'" in p.message]
    assert places == [(6, 43), (7, 46)]


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, enabled: bool) -> None:
    import gc

    (tmp_path / "s.yaml").write_text(HEAD + "course: X\nmembers: [{email: a@b.co, completed: all}]\n")
    (tmp_path / "bad.yaml").write_text(HEAD + "course: X\nmembers: [{email: a@b.co}]\n")
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert len(load_specs([tmp_path / "s.yaml"]).completions) == 1
        assert gc.isenabled() is enabled
        with pytest.raises(SpecError):
            load_specs([tmp_path])
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_a_file_of_another_tool_is_told_by_an_api_version_that_starts_a_line(tmp_path: Path) -> None:
    from reconciler.foreign_yaml import is_foreign

    manifest = tmp_path / "deploy.yaml"
    manifest.write_text("apiVersion: apps/v1\nkind: Deployment\nnote: 'apiVersion: reconciler/v1'\n")
    assert is_foreign(manifest)  # ours, but inside a line: not this file's apiVersion
    manifest.write_text("kind: Deployment\napiVersion: apps/v1 # apiVersion: reconciler/v1\n")
    assert is_foreign(manifest)
    manifest.write_text("apiVersion: apps/v1\nkind: Deployment\n---\napiVersion: 'reconciler/v2'\n")
    assert not is_foreign(manifest)  # a near miss of ours that starts a line is a spec with a problem
    manifest.write_text("x: 1\n  apiVersion: apps/v1\n")
    assert not is_foreign(manifest)  # no apiVersion starts a line
