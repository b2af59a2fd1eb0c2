"""Export writes names and addresses as plain YAML when they read back unchanged, decided without a parse
for the common shapes; every scalar it writes reads back as exactly the text it stands for."""

from __future__ import annotations

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconciler.export import yaml_scalar

COMMON = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.@+\-]{0,12}( [A-Za-z0-9_.@+\-]{1,6}){0,2}\Z")


@settings(max_examples=800, deadline=None)
@given(st.one_of(COMMON, st.text(max_size=12)))
@example("member1@example.com")
@example("no")
@example("Off")
@example("False")
@example("Yes please")
@example("null")
@example("Nora")
@example("e5")
@example("~")
def test_every_scalar_reads_back_as_the_text(value: str) -> None:
    written = yaml_scalar(value)
    assert yaml.safe_load(f"key: {written}\n") == {"key": value}


def test_addresses_and_names_stay_plain() -> None:
    assert yaml_scalar("member1@example.com") == "member1@example.com"
    assert yaml_scalar("Ann Lee") == "Ann Lee"
    assert yaml_scalar("no") == '"no"' and yaml_scalar("False") == '"False"' and yaml_scalar("on") == '"on"'
