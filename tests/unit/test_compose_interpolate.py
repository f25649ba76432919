"""Compose interpolation (`${VAR}` …) and `.env` files, table-driven."""

from __future__ import annotations

import pytest

from dockyard.compose.envfile import parse_env_file
from dockyard.compose.interpolate import interpolate_tree, substitute
from dockyard.errors import InvalidRequest

ENV = {"SET": "value", "EMPTY": "", "TAG": "1.36", "N": "3"}


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"),
    ("${SET}", "value"),
    ("$SET", "value"),
    ("a-$SET-b", "a-value-b"),
    ("$SET.x", "value.x"),
    ("busybox:${TAG}", "busybox:1.36"),
    ("${UNSET:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""),
    ("${UNSET-dflt}", "dflt"),
    ("${SET:-dflt}", "value"),
    ("${SET-dflt}", "value"),
    ("${UNSET:-}", ""),
    ("${UNSET:-a b c}", "a b c"),
    ("${UNSET:-${SET}}", "value"),
    ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
    ("${UNSET:-$SET}", "value"),
    ("${SET:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${SET:?never}", "value"),
    ("${EMPTY?allowed}", ""),
    ("$$", "$"),
    ("$$SET", "$SET"),
    ("$${SET}", "${SET}"),
    ("cost: $$5", "cost: $5"),
    ("$$$SET", "$value"),
    ("${UNSET:-$$literal}", "$literal"),
    ("${UNSET:-a}b}", "ab}"),
])
def test_substitute(text: str, expected: str) -> None:
    warnings: list[str] = []
    assert substitute(text, ENV.get, "services.web.image", warnings) == expected
    assert warnings == []


@pytest.mark.parametrize(("text", "message"), [
    ("${UNSET:?the tag is needed}", "required variable UNSET is missing a value: the tag is "
                                    "needed"),
    ("${EMPTY:?empty too}", "required variable EMPTY is missing a value: empty too"),
    ("${UNSET?}", "required variable UNSET is missing a value"),
    ("${UNSET?need $SET}", "missing a value: need value"),
    ("${SET", "is never closed"),
    ("${}", "a variable name must match"),
    ("${1ABC}", "a variable name must match"),
    ("${SET/a/b}", "after the name comes"),
    ("cost $5", "'$' must be followed by a name"),
    ("trailing $", "'$' must be followed by a name"),
])
def test_substitute_errors_name_the_path(text: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        substitute(text, ENV.get, "services.web.image", [])
    assert info.value.message.startswith("services.web.image: ")
    assert message in info.value.message


def test_unset_variable_becomes_empty_with_a_warning() -> None:
    warnings: list[str] = []
    assert substitute("a${UNSET}b$UNSET2", ENV.get, "services.web.command", warnings) == "ab"
    assert warnings == [
        "services.web.command: variable UNSET is not set; using an empty string",
        "services.web.command: variable UNSET2 is not set; using an empty string",
    ]


def test_tree_interpolates_values_not_keys_and_casts_typed_fields() -> None:
    tree = {"services": {"${SET}": {
        "image": "busybox:${TAG}",
        "command": ["echo", "$$HOME", "${SET}"],
        "deploy": {"replicas": "${N}", "labels": {"n": "${N}"}},
        "healthcheck": {"disable": "${UNSET:-false}"},
        "x-dockyard": {"cores": "${N}"},
    }}}
    out = interpolate_tree(tree, ENV.get, [])
    svc = out["services"]["${SET}"]
    assert svc["image"] == "busybox:1.36"
    assert svc["command"] == ["echo", "$HOME", "value"]
    assert svc["deploy"] == {"replicas": 3, "labels": {"n": "3"}}  # only replicas is typed
    assert svc["healthcheck"] == {"disable": False}
    assert svc["x-dockyard"] == {"cores": 3}
    assert tree["services"]["${SET}"]["image"] == "busybox:${TAG}"  # input not changed


def test_tree_error_names_the_list_index() -> None:
    with pytest.raises(InvalidRequest, match=r"^services\.web\.command\[1\]: required "):
        interpolate_tree({"services": {"web": {"command": ["a", "${X:?}"]}}}, ENV.get, [])


def test_literal_dollars_are_not_cast() -> None:
    out = interpolate_tree({"services": {"w": {"deploy": {"replicas": "$$3"}}}}, ENV.get, [])
    assert out["services"]["w"]["deploy"]["replicas"] == "$3"


ENV_FILE = '''\
# a comment
PLAIN=hello
export EXPORTED=yes
SPACED = padded value
INLINE=abc # a comment
HASH=abc#not-a-comment
EMPTY=
SINGLE='literal ${PLAIN} $$ # kept'
DOUBLE="tab\\tnew\\nline ${PLAIN} \\$PLAIN"
MULTI="first
second"
REF=${PLAIN}-${FROM_ENV}
DEFAULTED=${NOPE:-dflt}
FROM_ENV
MISSING_FROM_ENV

  # indented comment
'''


def test_env_file_syntax() -> None:
    parsed = parse_env_file(ENV_FILE, {"FROM_ENV": "env", "PLAIN": "ignored"}, "app.env")
    assert parsed == {
        "PLAIN": "hello",
        "EXPORTED": "yes",
        "SPACED": "padded value",
        "INLINE": "abc",
        "HASH": "abc#not-a-comment",
        "EMPTY": "",
        "SINGLE": "literal ${PLAIN} $$ # kept",
        "DOUBLE": "tab\tnew\nline hello $PLAIN",
        "MULTI": "first\nsecond",
        "REF": "hello-env",
        "DEFAULTED": "dflt",
        "FROM_ENV": "env",
    }


@pytest.mark.parametrize(("text", "message"), [
    ("GOOD=1\n1BAD=2\n", "app.env:2: expected KEY=VALUE"),
    ("A=1\nB='open\nC=3\n", "app.env:2: the quoted value is never closed"),
    ('A="x" trailing\n', "app.env:1: unexpected text after the closing quote"),
    ("A=${REQ:?must be set}\n", "app.env:1: required variable REQ"),
    ("JUST WORDS\n", "app.env:1: expected KEY=VALUE"),
])
def test_env_file_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_env_file(text, {}, "app.env")
    assert message in info.value.message
